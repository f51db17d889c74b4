package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestListenerAndDecisionProblems: everything the listeners and the
// decision service would refuse at start, certificate files included, is a
// problem of the compiled config with the line and key that name it, so
// that `sekisho check` sees what `serve` sees. Relative paths resolve
// against the config's directory.
func TestListenerAndDecisionProblems(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf, other := ca.Server(t, "localhost"), ca.Server(t, "localhost")
	testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	testutil.WriteFile(t, dir, "other.key", other.KeyPEM)
	testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	testutil.WriteFile(t, dir, "garbage.pem", []byte("hello, not a certificate"))
	testutil.WriteFile(t, dir, "a-file", []byte("x"))
	missing := filepath.Join(dir, "missing.crt")

	const routes = "routes:\n  - {name: a, match: {path_prefix: /}, to: builtin:echo, public: true}\n"
	for _, tt := range []struct {
		name, src string
		want      []string // substrings of the error; nil: valid
	}{
		{"valid listen tls", "listen: {https: ':0', tls: {cert_file: tls.crt, key_file: tls.key}}\n", nil},
		{"valid decision mtls", "listen: {http: ':0'}\ndecision: {listen: ':0', tls: {cert_file: tls.crt, key_file: tls.key, client_ca_file: ca.pem}}\n", nil},
		{"valid acme", "listen: {https: ':0', tls: {acme: {email: ops@example.com, domains: [a.example.com], directory_url: 'https://acme.example/dir'}}}\n", nil},

		{"listen cert missing", "listen:\n  https: ':0'\n  tls:\n    cert_file: missing.crt\n    key_file: tls.key\n",
			[]string{"test.yaml:4:", "listen.tls.cert_file", missing, "no such file"}},
		{"listen key missing", "listen:\n  https: ':0'\n  tls:\n    cert_file: tls.crt\n    key_file: missing.key\n",
			[]string{"test.yaml:5:", "listen.tls.key_file", "missing.key", "no such file"}},
		{"listen cert not PEM", "listen:\n  https: ':0'\n  tls: {cert_file: garbage.pem, key_file: tls.key}\n",
			[]string{"test.yaml:3:", "listen.tls.cert_file", "garbage.pem", "failed to find any PEM data"}},
		{"listen cert is a key", "listen:\n  https: ':0'\n  tls: {cert_file: tls.key, key_file: tls.key}\n",
			[]string{"test.yaml:3:", "listen.tls.cert_file", "no CERTIFICATE block in it, only PRIVATE KEY"}},
		{"listen key of another certificate", "listen:\n  https: ':0'\n  tls:\n    cert_file: tls.crt\n    key_file: other.key\n",
			[]string{"test.yaml:5:", "listen.tls.key_file", "other.key", "private key does not match"}},
		{"listen cert without key", "listen: {https: ':0', tls: {cert_file: tls.crt}}\n",
			[]string{"test.yaml:1:", "listen.tls:", "cert_file and key_file must be set together"}},
		{"tls without https", "listen: {http: ':0', tls: {cert_file: tls.crt, key_file: tls.key}}\n",
			[]string{"listen.tls:", "no https listener"}},
		{"acme bad domain", "listen:\n  https: ':0'\n  tls:\n    acme:\n      domains:\n        - a.example.com\n        - B.example.com:443\n",
			[]string{"test.yaml:7:", "listen.tls.acme.domains[1]", `"B.example.com:443" is not a lower-case host name`}},
		{"acme bad email", "listen: {https: ':0', tls: {acme: {email: 'ops at example', domains: [a.example.com]}}}\n",
			[]string{"listen.tls.acme.email", "is not an e-mail address"}},
		{"acme bad directory", "listen: {https: ':0', tls: {acme: {directory_url: 'ftp://x', domains: [a.example.com]}}}\n",
			[]string{"listen.tls.acme.directory_url", `"ftp://x" is not an http(s) URL`}},
		{"acme cache is a file", "listen: {https: ':0', tls: {acme: {cache_dir: a-file, domains: [a.example.com]}}}\n",
			[]string{"listen.tls.acme.cache_dir", "a-file is not a directory"}},
		{"redirect port", "listen:\n  http: ':0'\n  redirect_port: 70000\n",
			[]string{"test.yaml:3:", "listen.redirect_port", "70000 is not a port number"}},
		{"negative timeout", "listen:\n  http: ':0'\n  idle_timeout: -1s\n",
			[]string{"test.yaml:3:", "listen.idle_timeout", "must not be negative"}},
		{"admin address", "listen: {http: ':0'}\nadmin: {listen: '9090'}\n",
			[]string{"test.yaml:2:", "admin.listen", `"9090" is not host:port`}},

		{"decision cert missing", "listen: {http: ':0'}\ndecision:\n  listen: ':0'\n  tls:\n    cert_file: missing.crt\n    key_file: tls.key\n",
			[]string{"test.yaml:5:", "decision.tls.cert_file", missing, "no such file"}},
		{"decision key of another certificate", "listen: {http: ':0'}\ndecision:\n  listen: ':0'\n  tls:\n    cert_file: tls.crt\n    key_file: other.key\n",
			[]string{"test.yaml:6:", "decision.tls.key_file", "private key does not match"}},
		{"decision key without cert", "listen: {http: ':0'}\ndecision: {listen: ':0', tls: {key_file: tls.key}}\n",
			[]string{"test.yaml:2:", "decision.tls:", "cert_file and key_file are both required"}},
		{"decision client CA missing", "listen: {http: ':0'}\ndecision:\n  listen: ':0'\n  tls:\n    cert_file: tls.crt\n    key_file: tls.key\n    client_ca_file: nope.pem\n",
			[]string{"test.yaml:7:", "decision.tls.client_ca_file", "nope.pem", "no such file"}},
		{"decision client CA not PEM", "listen: {http: ':0'}\ndecision:\n  listen: ':0'\n  tls:\n    cert_file: tls.crt\n    key_file: tls.key\n    client_ca_file: garbage.pem\n",
			[]string{"test.yaml:7:", "decision.tls.client_ca_file", "garbage.pem: no PEM certificate in it"}},
		{"decision no listener", "listen: {http: ':0'}\ndecision: {trusted_proxies: [10.0.0.0/8]}\n",
			[]string{"test.yaml:2:", "decision: set listen (HTTP) and/or grpc"}},
		{"decision grpc address", "listen: {http: ':0'}\ndecision:\n  grpc: localhost\n",
			[]string{"test.yaml:3:", "decision.grpc", `"localhost" is not host:port`}},
		{"decision trusted proxy", "listen: {http: ':0'}\ndecision:\n  listen: ':0'\n  trusted_proxies: [10.0.0.0/33]\n",
			[]string{"test.yaml:4:", "decision.trusted_proxies", "10.0.0.0/33"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.src+routes), "test.yaml", dir, Options{})
			if s != nil {
				t.Cleanup(s.Close)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("config accepted, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			assertNoKeyMaterial(t, err.Error(), leaf.KeyPEM, other.KeyPEM, leaf.CertPEM)
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
