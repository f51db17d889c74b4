package file_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/file"
)

func ref(t *testing.T, raw string) secretref.Ref {
	t.Helper()
	r, ok, err := secretref.Parse(raw)
	if err != nil || !ok {
		t.Fatalf("Parse(%q): %v %v", raw, ok, err)
	}
	return r
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db"), []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unreadable"), []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	p, err := file.New(t.Context(), file.Options{MaxSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Resolve(t.Context(), ref(t, "sekisho+file://"+dir+"/db"))
	if err != nil || string(got) != "s3cr3t\n" {
		t.Fatalf("got %q, %v; want the file whole", got, err)
	}
	tests := []struct {
		path, want string
		notFound   bool
	}{
		{"/absent", "secret not found: no file", true},
		{"", "is a directory", false},
		{"/big", "larger than 10 bytes", false},
	}
	if os.Getuid() != 0 { // root reads any file
		tests = append(tests, struct {
			path, want string
			notFound   bool
		}{"/unreadable", "permission denied", false})
	}
	for _, tt := range tests {
		r := ref(t, "sekisho+file://"+dir+tt.path)
		_, err := p.Resolve(t.Context(), r)
		if err == nil || !strings.HasPrefix(err.Error(), r.Raw+": ") || !strings.Contains(err.Error(), tt.want) || errors.Is(err, secrets.ErrNotFound) != tt.notFound {
			t.Errorf("%s: error %v; want one naming the reference and %q (not found: %v)", tt.path, err, tt.want, tt.notFound)
		}
	}
}
