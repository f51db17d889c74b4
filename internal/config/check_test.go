package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestListenerAndDecisionProblems: certificate files that exist and match
// are accepted, relative to the config's directory. The configs that the
// listeners and the decision service refuse (certificate files included)
// are goldens in testdata: listen-*, decision-*, acme-*, *-tls-*.
func TestListenerAndDecisionProblems(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "localhost")
	testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	testutil.WriteFile(t, dir, "ca.pem", ca.PEM)

	const routes = "routes:\n  - {name: a, match: {path_prefix: /}, to: builtin:echo, public: true}\n"
	for _, tt := range []struct{ name, src string }{
		{"valid listen tls", "listen: {https: ':0', tls: {cert_file: tls.crt, key_file: tls.key}}\n"},
		{"valid decision mtls", "listen: {http: ':0'}\ndecision: {listen: ':0', tls: {cert_file: tls.crt, key_file: tls.key, client_ca_file: ca.pem}}\n"},
		{"valid acme", "listen: {https: ':0', tls: {acme: {email: ops@example.com, domains: [a.example.com], directory_url: 'https://acme.example/dir'}}}\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.src+routes), "test.yaml", dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		})
	}
}

// assertNoKeyMaterial fails when msg quotes PEM armour or a line of any of
// the files' contents.
func assertNoKeyMaterial(t *testing.T, msg string, files ...[]byte) {
	t.Helper()
	if strings.Contains(msg, "BEGIN") || strings.Contains(msg, "hello, not") {
		t.Errorf("file contents in the error:\n%s", msg)
	}
	for _, f := range files {
		for line := range strings.SplitSeq(string(f), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
				t.Errorf("file contents in the error:\n%s", msg)
			}
		}
	}
}

// TestCertificateFilesResolveAgainstConfigDir: Load reads the certificate
// files from the config's directory, which is also where serve reads them.
func TestCertificateFilesResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "localhost")
	testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	path := testutil.WriteFile(t, dir, "sekisho.yaml", []byte("listen: {https: ':0', tls: {cert_file: tls.crt, key_file: tls.key}}\n"+
		"routes:\n  - {name: a, match: {path_prefix: /}, to: builtin:echo, public: true}\n"))
	s, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Options{}); err == nil || !strings.Contains(err.Error(), path+":1: listen.tls.key_file: open "+filepath.Join(dir, "tls.key")) {
		t.Fatalf("Load without the key = %v, want the key file located", err)
	}
}
