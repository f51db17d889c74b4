package secretexec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPrepareRemovesFilesOnFailure: when one destination cannot be
// written, the files already written are removed and the variables are
// listed; no secret is left on disk for a program that never starts.
func TestPrepareRemovesFilesOnFailure(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "s")
	if err := os.WriteFile(src, []byte("v"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	environ := []string{
		"A=sekisho+file://" + src + "?destination=" + out,
		"B=sekisho+file://" + src + "?destination=/nonexistent/dir/f",
		"C=plain",
	}
	_, err := Prepare(t.Context(), Options{Environ: environ})
	var fe *FailedError
	if !errors.As(err, &fe) || len(fe.Failures) != 1 || fe.Failures[0].Var != "B" {
		t.Fatalf("error %v; want B's destination to fail", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("A's file left behind: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left in %s: %v", dir, entries)
	}
}

// TestPrepareLeavesOrdinaryValues: an environment without references,
// entries without '=' and duplicates come back unchanged.
func TestPrepareLeavesOrdinaryValues(t *testing.T) {
	environ := []string{"A=1", "weird", "A=2", "URL=file:///etc/app.conf", "E="}
	p, err := Prepare(t.Context(), Options{Environ: environ})
	if err != nil || !slices.Equal(p.Env, environ) {
		t.Fatalf("%v %v", p, err)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "prog")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, want string }{
		{"prog", "/nonexistent:" + dir, exe},
		{"data", dir, ""},      // not executable
		{"prog", "", ""},       // default PATH does not hold dir
		{"./x/y", "", "./x/y"}, // a slash: as is
	}
	for _, tt := range tests {
		got, err := lookPath(tt.name, tt.path)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q", tt.name, tt.path, got, err, tt.want)
		}
	}
}
