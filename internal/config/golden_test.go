package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/sekisho/sekisho/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/*.txtar with what sekisho check reports now")

// Each testdata/*.txtar file is one config a user might write and what
// `sekisho check` answers to it. Its comment says what the case is about;
// the sekisho.yaml section is the config (other sections are files next to
// it that the config names); the want section is exactly what check
// prints: the problems as file:line: key: message and their count, or
// "sekisho.yaml: ok (N routes)".
//
// Certificate files cannot be written into a golden (they expire), so every
// case also finds these, generated when the test runs:
//
//	tls.crt, tls.key   a server certificate for localhost and its key
//	other.key          the key of another certificate from the same CA
//	ca.pem             the CA that issued them
//	client.pem, client.key   a client certificate from that CA and its key
//
// Run `go test ./internal/config -run Golden -update` to rewrite the want
// sections after changing a message, then read the diff.

// generatedFiles makes the certificate files described above.
func generatedFiles(t *testing.T) map[string][]byte {
	t.Helper()
	ca := testutil.NewCA(t)
	leaf, other, client := ca.Server(t, "localhost"), ca.Server(t, "localhost"), ca.Client(t, "client")
	return map[string][]byte{
		"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "other.key": other.KeyPEM,
		"ca.pem": ca.PEM, "client.pem": client.CertPEM, "client.key": client.KeyPEM,
	}
}

func goldenFiles(t *testing.T) []string {
	t.Helper()
	// Absolute, as each case runs in its own directory.
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.txtar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in testdata: %v", err)
	}
	return files
}

// TestGolden loads each golden config the way `sekisho check` does and
// compares the report with the want section.
func TestGolden(t *testing.T) {
	for _, file := range goldenFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSpace(ar.Comment)) == 0 {
				t.Error("the golden has no comment saying what the case is about")
			}
			got := checkReport(t, ar)
			want := section(ar, "want")
			if want == nil {
				t.Fatal("no want section")
			}
			if *update {
				setSection(ar, "want", []byte(got))
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(want) {
				t.Errorf("sekisho check reports:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// checkReport writes the archive's files and the generated certificates to
// a temporary directory, loads sekisho.yaml from there and returns what
// `sekisho check --config sekisho.yaml` prints.
func checkReport(t *testing.T, ar *txtar.Archive) string {
	t.Helper()
	dir := t.TempDir()
	gen := generatedFiles(t)
	for name, data := range gen {
		testutil.WriteFile(t, dir, name, data)
	}
	hasConfig := false
	for _, f := range ar.Files {
		if f.Name == "want" {
			continue
		}
		if _, ok := gen[f.Name]; ok {
			t.Fatalf("%s is generated; the golden must not contain it", f.Name)
		}
		hasConfig = hasConfig || f.Name == "sekisho.yaml"
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f.Name)), 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, dir, f.Name, f.Data)
	}
	if !hasConfig {
		t.Fatal("no sekisho.yaml section")
	}
	t.Chdir(dir)
	s, err := Load("sekisho.yaml", Options{})
	var b strings.Builder
	var cerr *Error
	switch {
	case err == nil:
		fmt.Fprintf(&b, "sekisho.yaml: ok (%d routes)\n", s.Routes.Len())
		s.Close()
	case errors.As(err, &cerr):
		for _, p := range cerr.Problems {
			b.WriteString(p.String() + "\n")
		}
		fmt.Fprintf(&b, "%d problem(s) found\n", len(cerr.Problems))
	default:
		fmt.Fprintf(&b, "sekisho: %v\n", err)
	}
	out := b.String()
	assertNoKeyMaterial(t, out, gen["tls.key"], gen["other.key"], gen["client.key"], gen["tls.crt"])
	return out
}

func section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

func setSection(ar *txtar.Archive, name string, data []byte) {
	for i := range ar.Files {
		if ar.Files[i].Name == name {
			ar.Files[i].Data = data
			return
		}
	}
	ar.Files = append(ar.Files, txtar.File{Name: name, Data: data})
}
