package listen

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertificateReloadOnChange(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	s := start(t, Config{HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}, http.HandlerFunc(ok))
	if got := servedSerial(t, s.HTTPSAddr(), ca.pool); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	// Plain in-place writes, one file after the other: the reloader sees a
	// mismatched pair in between and must settle on the final one.
	c, k := ca.leaf(t, 2)
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, s.HTTPSAddr(), ca.pool, 2)
}

// TestCertificateReloadSymlinkSwap follows the layout of a Kubernetes Secret
// volume: tls.crt -> ..data/tls.crt, and ..data is a symlink replaced
// atomically on update, so the files themselves are never written.
func TestCertificateReloadSymlinkSwap(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	version := func(name string, serial int64) {
		t.Helper()
		vdir := filepath.Join(dir, name)
		if err := os.Mkdir(vdir, 0o700); err != nil {
			t.Fatal(err)
		}
		c, k := ca.leaf(t, serial)
		writeFile(t, filepath.Join(vdir, "tls.crt"), c)
		writeFile(t, filepath.Join(vdir, "tls.key"), k)
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", 1)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	s := start(t, Config{HTTPS: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}, http.HandlerFunc(ok))
	if got := servedSerial(t, s.HTTPSAddr(), ca.pool); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	version("..v2", 2)
	waitSerial(t, s.HTTPSAddr(), ca.pool, 2)
}

func TestBadNewCertificateKeepsOld(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name    string
		change  func(t *testing.T, certFile, keyFile string)
		wantLog string
	}{
		{"mismatched key", func(t *testing.T, certFile, _ string) {
			c, _ := ca.leaf(t, 2)
			writeFile(t, certFile, c)
		}, "private key does not match"},
		{"garbage certificate", func(t *testing.T, certFile, _ string) {
			writeFile(t, certFile, []byte("not a certificate"))
		}, "failed to find any PEM data"},
		{"key removed", func(t *testing.T, _, keyFile string) {
			if err := os.Remove(keyFile); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := tlsFiles(t, ca, 1)
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			logs := make(logLines, 256)
			log := slog.New(slog.NewTextHandler(logs, nil))
			s := start(t, Config{HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Logger: log}, http.HandlerFunc(ok))

			tt.change(t, certFile, keyFile)
			line := logs.waitLog(t, "certificate reload failed")
			if !strings.Contains(line, tt.wantLog) {
				t.Fatalf("log %q does not say %q", line, tt.wantLog)
			}
			if keyBody := string(keyPEM[40:80]); strings.Contains(line, keyBody) || strings.Contains(line, "PRIVATE KEY") {
				t.Fatalf("log line leaks key material: %q", line)
			}
			if got := servedSerial(t, s.HTTPSAddr(), ca.pool); got != 1 {
				t.Fatalf("serial %d after a bad update, want the old 1", got)
			}
			if err := s.ReloadCertificate(); err == nil || !strings.Contains(err.Error(), tt.wantLog) {
				t.Fatalf("ReloadCertificate() = %v, want error saying %q", err, tt.wantLog)
			}
		})
	}
}

func TestReloadCertificateForced(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	s := start(t, Config{HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}, http.HandlerFunc(ok))
	// Stop the watcher so only the explicit call can pick the change up.
	s.certs.Close()

	c, k := ca.leaf(t, 7)
	writeFile(t, certFile, c)
	writeFile(t, keyFile, k)
	if got := servedSerial(t, s.HTTPSAddr(), ca.pool); got != 1 {
		t.Fatalf("serial %d before reload, want 1", got)
	}
	if err := s.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, s.HTTPSAddr(), ca.pool); got != 7 {
		t.Fatalf("serial %d after reload, want 7", got)
	}

	plain := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(ok))
	if err := plain.ReloadCertificate(); err != nil {
		t.Fatalf("ReloadCertificate without file TLS = %v, want nil", err)
	}
}
