package listen

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	acme := func(a ACME) *ACME { return &a }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listener", Config{}, "no listener address"},
		{"cert without key", Config{HTTPS: ":0", CertFile: "c"}, "must be set together"},
		{"key without cert", Config{HTTPS: ":0", KeyFile: "k"}, "must be set together"},
		{"files and acme", Config{HTTPS: ":0", CertFile: "c", KeyFile: "k", ACME: acme(ACME{Domains: []string{"a.example"}, CacheDir: "d"})}, "mutually exclusive"},
		{"https without tls", Config{HTTPS: ":8443"}, "https listener :8443 needs"},
		{"tls without https", Config{HTTP: ":0", CertFile: "c", KeyFile: "k"}, "no https listener"},
		{"negative timeout", Config{HTTP: ":0", ReadHeaderTimeout: -1}, "must not be negative"},
		{"negative header limit", Config{HTTP: ":0", MaxHeaderBytes: -1}, "must not be negative"},
		{"acme without domains", Config{HTTPS: ":0", ACME: acme(ACME{CacheDir: "d"})}, "at least one domain"},
		{"acme domain with port", Config{HTTPS: ":0", ACME: acme(ACME{Domains: []string{"a.example:443"}, CacheDir: "d"})}, `"a.example:443" is not`},
		{"acme upper-case domain", Config{HTTPS: ":0", ACME: acme(ACME{Domains: []string{"A.example"}, CacheDir: "d"})}, "is not a lower-case"},
		{"acme without cache", Config{HTTPS: ":0", ACME: acme(ACME{Domains: []string{"a.example"}})}, "cache_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(context.Background(), tt.cfg, http.HandlerFunc(ok))
			if err == nil {
				_ = s.Shutdown(context.Background())
				t.Fatal("Start succeeded, want error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestStartBadCertificateFiles(t *testing.T) {
	ca := newTestCA(t)
	certFile, _ := tlsFiles(t, ca, 1)
	_, otherKey := tlsFiles(t, ca, 2)
	tests := []struct {
		name, cert, key, want string
	}{
		{"missing", certFile, certFile + ".nope", "no such file"},
		{"mismatched key", certFile, otherKey, "private key does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(context.Background(), Config{HTTPS: "127.0.0.1:0", CertFile: tt.cert, KeyFile: tt.key}, http.HandlerFunc(ok))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.cert) {
				t.Fatalf("err = %v, want it to name %s and say %q", err, tt.cert, tt.want)
			}
		})
	}
}

func TestBindErrorNamesAddressAndReleasesOthers(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	cfg := Config{HTTPS: freeAddr, HTTP: busy.Addr().String(), CertFile: certFile, KeyFile: keyFile}
	_, err = Start(context.Background(), cfg, http.HandlerFunc(ok))
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("err = %v, want it to name %s", err, busy.Addr())
	}
	// The HTTPS listener bound before the failure must have been released.
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("HTTPS address still held after failed Start: %v", err)
	}
	ln.Close()
}

func TestServerTimeoutDefaults(t *testing.T) {
	type limits struct {
		header, read, write, idle time.Duration
		maxHeader                 int
	}
	tests := []struct {
		name string
		cfg  Config
		want limits
	}{
		{"zero gets safe defaults", Config{}, limits{10 * time.Second, 0, 0, 120 * time.Second, 64 << 10}},
		{"explicit values kept", Config{ReadHeaderTimeout: 1, ReadTimeout: 2, WriteTimeout: 3, IdleTimeout: 4, MaxHeaderBytes: 5}, limits{1, 2, 3, 4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newHTTPServer(context.Background(), &tt.cfg, nil, discardLogger())
			got := limits{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHTTPSServesHTTP2(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	s := start(t, Config{HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}, http.HandlerFunc(ok))

	resp, err := httpsClient(ca.pool).Get("https://" + s.HTTPSAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("status %d proto %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}

	// HTTP/1.1 clients still work.
	conn, err := tls.Dial("tcp", s.HTTPSAddr(), &tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("negotiated %q, want http/1.1", p)
	}

	// TLS 1.1 and older are refused.
	old, err := tls.Dial("tcp", s.HTTPSAddr(), &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
	if err == nil {
		old.Close()
		t.Fatal("TLS 1.1 handshake succeeded, want refusal")
	}
}

func TestPlainH2C(t *testing.T) {
	tests := []struct {
		name    string
		disable bool
		wantH2  bool
	}{
		{"on by default without TLS", false, true},
		{"disabled", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{HTTP: "127.0.0.1:0", DisableH2C: tt.disable}, http.HandlerFunc(ok))
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, as gRPC clients do
			resp, err := (&http.Client{Transport: tr}).Get("http://" + s.HTTPAddr() + "/")
			if tt.wantH2 {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d proto %s, want 200 over h2c", resp.StatusCode, resp.Proto)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("h2c request succeeded with %s, want it refused", resp.Proto)
			}
		})
	}
}

// rawRequest sends req verbatim on a new connection and reads the response,
// so that the request-target and Host reach the server exactly as written.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestPlainListenerRedirectsWhenTLSOn(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	var reached atomic.Bool
	s := start(t, Config{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Store(true) }))
	_, port, _ := net.SplitHostPort(s.HTTPSAddr())

	tests := []struct {
		name, req    string
		wantStatus   int
		wantLocation string
	}{
		{"path and query verbatim", "GET /a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
			301, "https://example.com:" + port + "/a%2Fb?x=1&y=%20"},
		{"challenge path redirected without ACME", "GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
			301, "https://example.com:" + port + "/.well-known/acme-challenge/x"},
		{"POST keeps its method (308)", "POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
			308, "https://example.com:" + port + "/form"},
		{"invalid host", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", 400, ""},
		{"no host", "GET / HTTP/1.0\r\n\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawRequest(t, s.HTTPAddr(), tt.req)
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
				t.Fatalf("got %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
			}
		})
	}
	if reached.Load() {
		t.Fatal("a plain request reached the gateway handler")
	}
}

func TestRedirectPortOverridesBoundPort(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	s := start(t, Config{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, RedirectPort: 443},
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	resp := rawRequest(t, s.HTTPAddr(), "GET /x?y=1 HTTP/1.1\r\nHost: example.com:80\r\n\r\n")
	if got := resp.Header.Get("Location"); resp.StatusCode != 301 || got != "https://example.com/x?y=1" {
		t.Fatalf("got %d %q, want 301 to https://example.com/x?y=1 (public port 443 is left out)", resp.StatusCode, got)
	}
}
