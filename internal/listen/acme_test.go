package listen

import (
	"crypto/tls"
	"crypto/x509"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/sekisho/sekisho/internal/testutil"
)

func TestACMEChallengeRouting(t *testing.T) {
	// The manager talks to the CA only during a TLS handshake, so an
	// unreachable directory is fine here.
	s := start(t, Config{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", ACME: &ACME{
		Domains: []string{"app.example"}, CacheDir: t.TempDir(), DirectoryURL: "https://127.0.0.1:1/dir",
	}}, http.HandlerFunc(ok))
	_, port, _ := net.SplitHostPort(s.HTTPSAddr())

	tests := []struct {
		name, req    string
		wantStatus   int
		wantLocation string
	}{
		{"challenge goes to autocert (unknown token)", "GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: app.example\r\n\r\n", 404, ""},
		{"challenge for a name not in domains", "GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: other.example\r\n\r\n", 403, ""},
		{"everything else redirected", "GET /x?y=1 HTTP/1.1\r\nHost: app.example\r\n\r\n", 301, "https://app.example:" + port + "/x?y=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawRequest(t, s.HTTPAddr(), tt.req)
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
				t.Fatalf("got %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
			}
		})
	}
}

// TestACMEIssues runs Pebble (Let's Encrypt's test CA) in process and lets
// sekisho obtain a certificate from it on the first handshake. The CA
// resolves the domain through a loopback DNS server to 127.0.0.1 and
// validates either HTTP-01 on the plain listener or TLS-ALPN-01 on the TLS
// listener, whichever the test makes reachable.
func TestACMEIssues(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process ACME CA")
	}
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random validation delay
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no deliberate bad nonces
	tests := []struct {
		name string
		// alpnOnHTTPS aims TLS-ALPN-01 at the TLS listener; otherwise at the
		// plain port, where it fails and autocert falls back to HTTP-01.
		alpnOnHTTPS bool
	}{
		{"http-01 on the plain listener", false},
		{"tls-alpn-01 on the TLS listener", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testACMEIssue(t, tt.alpnOnHTTPS)
		})
	}
}

func testACMEIssue(t *testing.T, alpnOnHTTPS bool) {
	t.Helper()
	const domain = "gate.sekisho.test"
	dnsAddr := startDNS(t)

	// The CA's HTTPS front end must exist before sekisho starts (sekisho needs
	// its URL), but the validator needs sekisho's ports: fill it in after.
	var frontEnd atomic.Pointer[http.Handler]
	acmeSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*frontEnd.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(acmeSrv.Close)
	acmeRoots := x509.NewCertPool()
	acmeRoots.AddCert(acmeSrv.Certificate())

	cacheDir := t.TempDir()
	s := start(t, Config{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", ACME: &ACME{
		Domains: []string{domain}, CacheDir: cacheDir, DirectoryURL: acmeSrv.URL + "/dir", RootCAs: acmeRoots,
	}}, http.HandlerFunc(ok))
	_, p, _ := net.SplitHostPort(s.HTTPAddr())
	httpPort, _ := strconv.Atoi(p)
	tlsPort := httpPort
	if alpnOnHTTPS {
		_, tp, _ := net.SplitHostPort(s.HTTPSAddr())
		tlsPort, _ = strconv.Atoi(tp)
	}

	pebbleLog := &testutil.SyncBuffer{}
	logger := log.New(pebbleLog, "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test"}})
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	frontEnd.Store(&h)

	issuedRoots := x509.NewCertPool()
	issuedRoots.AddCert(authority.GetRootCert(0).Cert)
	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: issuedRoots, ServerName: domain},
			ForceAttemptHTTP2: true,
		},
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + s.HTTPSAddr() + "/")
	if err != nil {
		t.Fatalf("first request (issuance): %v\npebble log:\n%s", err, pebbleLog)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("status %d proto %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if names := resp.TLS.PeerCertificates[0].DNSNames; len(names) != 1 || names[0] != domain {
		t.Fatalf("certificate names %v, want [%s]", names, domain)
	}
	httpTried := strings.Contains(pebbleLog.String(), "Attempting to validate w/ HTTP: http://"+domain+":"+p+"/.well-known/acme-challenge/")
	if httpTried == alpnOnHTTPS {
		t.Fatalf("HTTP-01 attempted = %v, want %v", httpTried, !alpnOnHTTPS)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, domain)); err != nil {
		t.Fatalf("certificate not cached: %v", err)
	}
}

// startDNS serves DNS over TCP on loopback, answering every A query with
// 127.0.0.1, and returns its address.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		Listener:          ln,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			for _, question := range q.Question {
				if question.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
						A:   net.IPv4(127, 0, 0, 1),
					})
				}
			}
			_ = w.WriteMsg(m)
		}),
	}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}
