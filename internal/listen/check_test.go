package listen

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCheckKeys: every problem Check finds is located at the setting it
// is about, in the config file's spelling, so the config compiler can give
// its line; and Check finds all of them at once.
func TestCheckKeys(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	_, otherKey := tlsFiles(t, ca, 2)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a certificate"))
	acme := func(a ACME) *ACME { return &a }
	tests := []struct {
		name string
		cfg  Config
		want []string // keys of the problems, in order
	}{
		{"valid files", Config{HTTPS: ":0", CertFile: certFile, KeyFile: keyFile}, nil},
		{"valid acme", Config{HTTPS: ":0", ACME: acme(ACME{Domains: []string{"a.example"}, CacheDir: dir, Email: "ops@example.com", DirectoryURL: "https://ca.example/dir"})}, nil},
		{"no listener", Config{}, []string{""}},
		{"bad addresses", Config{HTTP: "8080", HTTPS: "localhost", CertFile: certFile, KeyFile: keyFile}, []string{"http", "https"}},
		{"cert missing", Config{HTTPS: ":0", CertFile: certFile + ".nope", KeyFile: keyFile}, []string{"tls.cert_file"}},
		{"cert garbage", Config{HTTPS: ":0", CertFile: garbage, KeyFile: keyFile}, []string{"tls.cert_file"}},
		{"key missing", Config{HTTPS: ":0", CertFile: certFile, KeyFile: keyFile + ".nope"}, []string{"tls.key_file"}},
		{"key mismatched", Config{HTTPS: ":0", CertFile: certFile, KeyFile: otherKey}, []string{"tls.key_file"}},
		{"every limit wrong", Config{HTTP: ":0", ReadHeaderTimeout: -1, ReadTimeout: -1, WriteTimeout: -1, IdleTimeout: -1, MaxHeaderBytes: -1, RedirectPort: 65536},
			[]string{"read_header_timeout", "read_timeout", "write_timeout", "idle_timeout", "max_header_bytes", "redirect_port"}},
		{"acme all wrong", Config{HTTPS: ":0", ACME: acme(ACME{Domains: []string{"ok.example", "Bad.example"}, Email: "not mail", DirectoryURL: "/dir", CacheDir: garbage})},
			[]string{"tls.acme.domains[1]", "tls.acme.email", "tls.acme.directory_url", "tls.acme.cache_dir"}},
		{"acme nothing", Config{HTTPS: ":0", ACME: &ACME{}}, []string{"tls.acme.domains", "tls.acme.cache_dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := Check(&tt.cfg)
			var keys []string
			for _, p := range ps {
				keys = append(keys, p.Key)
				if strings.Contains(p.Msg, "BEGIN") || strings.Contains(p.Msg, "not a certificate") {
					t.Errorf("problem quotes a file: %s", p)
				}
			}
			if !slices.Equal(keys, tt.want) {
				t.Fatalf("problem keys %q, want %q: %v", keys, tt.want, ps)
			}
		})
	}
}

func TestLoadCAPool(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	writeFile(t, good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	_, key := tlsFiles(t, ca, 1)
	for _, tt := range []struct {
		name, file, want string
	}{
		{"ca", good, ""},
		{"missing", filepath.Join(dir, "nope.pem"), "no such file"},
		{"only a key", key, "no PEM certificate in it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := LoadCAPool(tt.file)
			if tt.want == "" {
				if err != nil || pool == nil {
					t.Fatalf("LoadCAPool = %v, %v", pool, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.file) {
				t.Fatalf("LoadCAPool = %v, want an error naming %s and saying %q", err, tt.file, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE") {
				t.Errorf("error quotes the file: %v", err)
			}
		})
	}
}

// TestLoadKeyPairBlamesOneFile: the error says which setting names the
// file at fault, and FileProblem puts it under the section.
func TestLoadKeyPairBlamesOneFile(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	if _, err := LoadKeyPair(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, err := LoadKeyPair(certFile, keyFile)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Key != "key_file" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadKeyPair without the key = %v, want a key_file FileError wrapping ErrNotExist", err)
	}
	if p := FileProblem("tls", err); p.Key != "tls.key_file" || !strings.Contains(p.Msg, keyFile) {
		t.Errorf("FileProblem = %+v", p)
	}
	if p := FileProblem("", err); p.Key != "key_file" {
		t.Errorf("FileProblem without a section = %+v", p)
	}
	if p := FileProblem("tls", errors.New("other")); p.Key != "tls" {
		t.Errorf("FileProblem of a plain error = %+v", p)
	}
}
