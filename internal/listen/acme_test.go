package listen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
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
	e := startPebbleACME(t, alpnOnHTTPS, 0)
	resp, err := e.client.Get("https://" + e.s.HTTPSAddr() + "/")
	if err != nil {
		t.Fatalf("first request (issuance): %v\npebble log:\n%s", err, e.pebbleLog)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("status %d proto %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if names := resp.TLS.PeerCertificates[0].DNSNames; len(names) != 1 || names[0] != pebbleDomain {
		t.Fatalf("certificate names %v, want [%s]", names, pebbleDomain)
	}
	_, p, _ := net.SplitHostPort(e.s.HTTPAddr())
	httpTried := strings.Contains(e.pebbleLog.String(), "Attempting to validate w/ HTTP: http://"+pebbleDomain+":"+p+"/.well-known/acme-challenge/")
	if httpTried == alpnOnHTTPS {
		t.Fatalf("HTTP-01 attempted = %v, want %v", httpTried, !alpnOnHTTPS)
	}
	if _, err := os.Stat(filepath.Join(e.cacheDir, pebbleDomain)); err != nil {
		t.Fatalf("certificate not cached: %v", err)
	}
}

const pebbleDomain = "gate.sekisho.test"

// pebbleACME is a sekisho listener getting certificates from an in-process
// Pebble.
type pebbleACME struct {
	s         *Server
	client    *http.Client // trusts Pebble's roots, names pebbleDomain
	pebbleLog *testutil.SyncBuffer
	cacheDir  string
	orders    atomic.Int64 // new-order requests the CA received
}

// startPebbleACME starts Pebble and a listener using it. validity is the
// lifetime of issued certificates in seconds (0: Pebble's default).
func startPebbleACME(t *testing.T, alpnOnHTTPS bool, validity uint64) *pebbleACME {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random validation delay
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no deliberate bad nonces
	dnsAddr := startDNS(t)
	e := &pebbleACME{pebbleLog: &testutil.SyncBuffer{}, cacheDir: t.TempDir()}

	// The CA's HTTPS front end must exist before sekisho starts (sekisho needs
	// its URL), but the validator needs sekisho's ports: fill it in after.
	var frontEnd atomic.Pointer[http.Handler]
	acmeSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/order-plz") {
			e.orders.Add(1)
		}
		(*frontEnd.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(acmeSrv.Close)
	acmeRoots := x509.NewCertPool()
	acmeRoots.AddCert(acmeSrv.Certificate())

	e.s = start(t, Config{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", ACME: &ACME{
		Domains: []string{pebbleDomain}, CacheDir: e.cacheDir, DirectoryURL: acmeSrv.URL + "/dir", RootCAs: acmeRoots,
	}}, http.HandlerFunc(ok))
	_, p, _ := net.SplitHostPort(e.s.HTTPAddr())
	httpPort, _ := strconv.Atoi(p)
	tlsPort := httpPort
	if alpnOnHTTPS {
		_, tp, _ := net.SplitHostPort(e.s.HTTPSAddr())
		tlsPort, _ = strconv.Atoi(tp)
	}

	logger := log.New(e.pebbleLog, "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: validity}})
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	frontEnd.Store(&h)

	issuedRoots := x509.NewCertPool()
	issuedRoots.AddCert(authority.GetRootCert(0).Cert)
	e.client = &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: issuedRoots, ServerName: pebbleDomain},
			ForceAttemptHTTP2: true,
		},
	}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
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

// TestACMERenewalStopsOnShutdown: with certificates short-lived enough that
// autocert renews them every couple of seconds, Shutdown stops the renewal
// timers and waits out a renewal in flight: afterwards autocert tracks no
// renewal, no renewal goroutine runs and the CA gets no further order.
func TestACMERenewalStopsOnShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process ACME CA")
	}
	e := startPebbleACME(t, false, 4) // renewed about 1 s before the end of 4 s
	resp, err := e.client.Get("https://" + e.s.HTTPSAddr() + "/")
	if err != nil {
		t.Fatalf("first request (issuance): %v\npebble log:\n%s", err, e.pebbleLog)
	}
	resp.Body.Close()

	// A renewal has happened: the timers the shutdown must stop are live.
	deadline := time.Now().Add(30 * time.Second)
	for e.orders.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no renewal within 30s (%d orders)\npebble log:\n%s", e.orders.Load(), e.pebbleLog)
		}
		time.Sleep(20 * time.Millisecond) // polling the CA's order count
	}

	if err := e.s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := reflect.ValueOf(e.s.acme.Manager).Elem().FieldByName("renewal").Len(); n != 0 {
		t.Errorf("autocert still tracks %d renewal timer(s) after Shutdown", n)
	}
	if stacks := renewalGoroutines(); stacks != "" {
		t.Errorf("autocert renewal running after Shutdown:\n%s", stacks)
	}
	// The manager's ACME client can no longer reach the CA, whoever asks.
	if resp, err := e.s.acme.Client.HTTPClient.Get(e.s.acme.Client.DirectoryURL); !errors.Is(err, errACMEStopped) {
		if err == nil {
			resp.Body.Close()
		}
		t.Errorf("CA request after Shutdown: %v, want %v", err, errACMEStopped)
	}
}

// renewalGoroutines returns the stacks of goroutines inside autocert's
// renewal, "" when there are none.
func renewalGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "autocert.(*domainRenewal)") {
			found = append(found, g)
		}
	}
	return strings.Join(found, "\n\n")
}

// TestStoppableTransport: once stopped, the ACME client's transport
// refuses requests and cancels the one in flight.
func TestStoppableTransport(t *testing.T) {
	entered := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			close(entered)
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	stopped, stop := context.WithCancel(context.Background())
	client := &http.Client{Transport: &stoppableTransport{next: srv.Client().Transport, stopped: stopped}}

	resp, err := client.Get(srv.URL + "/")
	if err != nil {
		t.Fatalf("before stop: %v", err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
		t.Errorf("body %q", b)
	}
	resp.Body.Close()

	inFlight := make(chan error, 1)
	go func() {
		resp, err := client.Get(srv.URL + "/hang")
		if err == nil {
			resp.Body.Close()
		}
		inFlight <- err
	}()
	<-entered
	stop()
	select {
	case err := <-inFlight:
		if err == nil {
			t.Error("request in flight at stop succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request in flight not cancelled by stop")
	}
	if _, err := client.Get(srv.URL + "/"); !errors.Is(err, errACMEStopped) {
		t.Errorf("after stop: %v, want %v", err, errACMEStopped)
	}
}
