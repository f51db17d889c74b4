package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/http2"
	//lint:ignore SA1019 net/http has no server for the h2c Upgrade mechanism, which this test's upstream must accept
	"golang.org/x/net/http2/h2c"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/testutil"
)

// upstream is a real HTTP upstream that records the headers of every request
// it receives and answers with them as echo JSON.
type upstream struct {
	srv  *httptest.Server
	seen chan http.Header
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{seen: make(chan http.Header, 16)}
	ws := websocket.Upgrader{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.seen <- r.Header.Clone()
		if websocket.IsWebSocketUpgrade(r) {
			c, err := ws.Upgrade(w, r, nil)
			if err == nil {
				_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
				_ = c.Close()
			}
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo.Request{Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Headers: r.Header})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// received returns the headers of the next request the upstream saw, failing
// the test if none arrives within a few seconds.
func (u *upstream) received(t *testing.T) http.Header {
	t.Helper()
	select {
	case h := <-u.seen:
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream received no request")
		return nil
	}
}

// identityConfig is a gateway with a real JWT issuer, the signed assertion
// on, and one route to a real upstream.
func identityConfig(iss *jwttest.Issuer, upstreamURL string) string {
	return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - issuer: %s
    audiences: [api]
    claims: {username: email}
upstream_identity:
  assertion: {ttl: 30s}
routes:
  - name: app
    match: {path_prefix: /}
    to: %s
    allow: [{groups: [admin]}]
`, iss.URL, upstreamURL)
}

// sekishoHeaders are the headers sekisho sets on a forwarded request; a
// client names them all in Connection to try to have them removed.
var sekishoHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Sekisho-Assertion",
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id",
}

// TestConnectionCannotRemoveIdentityHeaders: a client that lists sekisho's
// headers in Connection (a hop-by-hop declaration every proxy honours) does
// not make them vanish: the upstream still learns who called, with the
// assertion, on plain requests and on WebSocket upgrades.
func TestConnectionCannotRemoveIdentityHeaders(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	up := newUpstream(t)
	f := newFixture(t, identityConfig(iss, up.srv.URL))
	waitJWTReady(t, f)
	tok := iss.Token(t)
	hop := strings.Join(sekishoHeaders, ", ")

	check := func(t *testing.T, got http.Header) {
		t.Helper()
		want := map[string]string{
			"X-Forwarded-User":   "alice@example.com",
			"X-Forwarded-Email":  "alice@example.com",
			"X-Forwarded-Groups": "admin,dev",
			"X-Forwarded-Proto":  "http",
			"X-Forwarded-Host":   "gw.test",
			"X-Forwarded-For":    "127.0.0.1",
		}
		for k, v := range want {
			if g := got.Values(k); len(g) != 1 || g[0] != v {
				t.Errorf("upstream received %s = %q, want %q", k, g, v)
			}
		}
		for _, k := range []string{"X-Sekisho-Assertion", "X-Request-Id"} {
			if g := got.Get(k); g == "" || g == "forged" {
				t.Errorf("upstream received %s = %q", k, g)
			}
		}
		if c := got.Get("Connection"); strings.Contains(strings.ToLower(c), "x-forwarded") {
			t.Errorf("the client's Connection tokens reached the upstream: %q", c)
		}
	}

	t.Run("plain request", func(t *testing.T) {
		resp, body := f.do(t, "GET", "/x", map[string]string{
			"Authorization": "Bearer " + tok, "Connection": hop, "X-Sekisho-Assertion": "forged",
		})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		check(t, up.received(t))
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		conn := dialRaw(t, f)
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer %s\r\n"+
			"Connection: Upgrade, %s\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", tok, hop)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		check(t, up.received(t))
	})
}

// dialRaw opens a TCP connection to the gateway, closed with the test.
func dialRaw(t *testing.T, f *fixture) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// h2cUpstream is an upstream that accepts an HTTP/2 cleartext upgrade
// (golang.org/x/net/http2/h2c). The shim adds the HTTP2-Settings token to
// Connection, which a proxy rewrites to "Upgrade": many servers accept the
// upgrade without it, and the test must not depend on that detail.
func h2cUpstream(t *testing.T) (*httptest.Server, chan string) {
	t.Helper()
	seen := make(chan string, 16)
	//lint:ignore SA1019 see the h2c import
	h2srv := &http2.Server{}
	tunnel := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tunnel "+r.URL.Path)
	})
	//lint:ignore SA1019 see the h2c import
	h2 := h2c.NewHandler(tunnel, h2srv)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Upgrade")
		if r.Header.Get("Upgrade") != "" {
			r.Header.Add("Connection", "HTTP2-Settings")
		}
		h2.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

// TestUpgrades: an h2c upgrade is refused before any upstream contact (a
// tunnel to an h2c upstream would carry requests sekisho never authorizes);
// other protocols pass only where a route lists them; WebSocket passes by
// default.
func TestUpgrades(t *testing.T) {
	h2cSrv, h2cSeen := h2cUpstream(t)
	f := newFixture(t, fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: open
    match: {path_prefix: /}
    to: %[1]s
    public: true
  - name: custom
    match: {path_prefix: /custom}
    to: %[1]s
    public: true
    upgrades: [websocket, x-custom]
  - name: none
    match: {path_prefix: /none}
    to: %[1]s
    public: true
    upgrades: []
`, h2cSrv.URL))

	t.Run("h2c refused, nothing reaches the upstream", func(t *testing.T) {
		for _, upgrade := range []string{"h2c", "H2C", "x-custom, h2c"} {
			for _, target := range []string{"/x", "/custom/x"} {
				conn := dialRaw(t, f)
				fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\n"+
					"Upgrade: %s\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", target, upgrade)
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				if resp.StatusCode != http.StatusBadRequest {
					if resp.StatusCode == http.StatusSwitchingProtocols {
						fr := http2.NewFramer(io.Discard, br)
						if frame, err := fr.ReadFrame(); err == nil {
							t.Errorf("the upstream spoke HTTP/2 through the tunnel: first frame %v", frame.Header())
						}
					}
					t.Fatalf("Upgrade: %s to %s: status %d, want 400", upgrade, target, resp.StatusCode)
				}
				if !strings.Contains(string(body), "h2c") {
					t.Errorf("the refusal does not say why: %s", body)
				}
			}
		}
		select {
		case u := <-h2cSeen:
			t.Fatalf("the upstream received a request (Upgrade %q)", u)
		default:
		}
	})

	for _, tt := range []struct {
		name, target, upgrade string
		want                  int
	}{
		{"unlisted protocol", "/x", "x-custom", http.StatusBadRequest},
		{"unlisted among listed", "/custom/x", "websocket, x-other", http.StatusBadRequest},
		{"listed protocol", "/custom/x", "x-custom/2", http.StatusOK},
		{"no upgrades at all", "/none/x", "websocket", http.StatusBadRequest},
		{"no upgrade header", "/none/x", "", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.upgrade != "" {
				hdr["Upgrade"] = tt.upgrade
			}
			resp, body := f.do(t, "GET", tt.target, hdr)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			select {
			case u := <-h2cSeen:
				if tt.want != http.StatusOK {
					t.Fatalf("a refused upgrade reached the upstream (Upgrade %q)", u)
				}
			default:
				if tt.want == http.StatusOK {
					t.Fatal("an accepted request did not reach the upstream")
				}
			}
		})
	}

	t.Run("websocket by default", func(t *testing.T) {
		up := newUpstream(t)
		g := newFixture(t, publicRouteTo(up.srv.URL))
		c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(g.srv.URL, "http")+"/ws", nil)
		if err != nil {
			t.Fatalf("WebSocket through the gateway: %v (response %v)", err, resp)
		}
		defer c.Close()
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hello" {
			t.Fatalf("read %q, %v", msg, err)
		}
	})
}

// TestMalformedRequestBody: a chunked body the client framed badly, or cut
// short, is the client's fault: 400, an info log line, no upstream error
// logged or counted. A well-framed body still goes through.
func TestMalformedRequestBody(t *testing.T) {
	up := newUpstream(t)
	f := newFixture(t, publicRouteTo(up.srv.URL))
	for _, tt := range []struct {
		name, body string
		half       bool // close the write side after sending: the body ends early
		want       int
	}{
		{"well framed", "5\r\nhello\r\n0\r\n\r\n", false, http.StatusOK},
		{"bad chunk size", "zz\r\nhello\r\n0\r\n\r\n", false, http.StatusBadRequest},
		{"chunk longer than announced", "2\r\nhello\r\n0\r\n\r\n", false, http.StatusBadRequest},
		{"ends early", "10\r\nhello", true, http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.logs.String())
			conn := dialRaw(t, f)
			fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n%s", tt.body)
			if tt.half {
				if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == http.StatusOK {
				return
			}
			logs := f.logs.String()[before:]
			if strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, "upstream request failed") {
				t.Errorf("a client's broken body was logged as an upstream failure:\n%s", logs)
			}
			if !strings.Contains(logs, `"level":"INFO","msg":"request body could not be read"`) {
				t.Errorf("no info line for the broken body:\n%s", logs)
			}
		})
	}
	if n := counterSum(t, f.metrics, "sekisho_upstream_errors_total"); n != 0 {
		t.Errorf("sekisho_upstream_errors_total = %v, want 0", n)
	}
}

// mtlsUpstream is an https upstream with a certificate from ca for
// upstream.test only, that requires a client certificate from clientCA and
// answers with its common name.
func mtlsUpstream(t *testing.T, ca, clientCA *testutil.CA) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "client "+r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t, "upstream.test").TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestUpstreamTLS: https upstreams verified against a private CA, with a
// client certificate when the upstream requires one; a wrong CA, a missing
// client certificate or a wrong name fail closed (502, logged without key
// material).
func TestUpstreamTLS(t *testing.T) {
	ca, otherCA := testutil.NewCA(t), testutil.NewCA(t)
	up := mtlsUpstream(t, ca, ca)
	dir := t.TempDir()
	client := ca.Client(t, "sekisho")
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	otherFile := testutil.WriteFile(t, dir, "other-ca.pem", otherCA.PEM)
	certFile := testutil.WriteFile(t, dir, "client.pem", client.CertPEM)
	keyFile := testutil.WriteFile(t, dir, "client.key", client.KeyPEM)
	f := newFixture(t, fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: mtls
    match: {path_prefix: /mtls}
    to: %[1]s
    public: true
    upstream_tls: {ca_file: %[2]s, cert_file: %[3]s, key_file: %[4]s, server_name: upstream.test}
  - name: no-client-cert
    match: {path_prefix: /nocert}
    to: %[1]s
    public: true
    upstream_tls: {ca_file: %[2]s, server_name: upstream.test}
  - name: wrong-ca
    match: {path_prefix: /wrongca}
    to: %[1]s
    public: true
    upstream_tls: {ca_file: %[5]s, cert_file: %[3]s, key_file: %[4]s, server_name: upstream.test}
  - name: wrong-name
    match: {path_prefix: /wrongname}
    to: %[1]s
    public: true
    upstream_tls: {ca_file: %[2]s, cert_file: %[3]s, key_file: %[4]s}
  - name: system-roots
    match: {path_prefix: /system}
    to: %[1]s
    public: true
`, up.URL, caFile, certFile, keyFile, otherFile))

	for _, tt := range []struct {
		path      string
		want      int
		body, log string
	}{
		{"/mtls/x", http.StatusOK, "client sekisho", ""},
		{"/nocert/x", http.StatusBadGateway, "", `"route":"no-client-cert"`},
		{"/wrongca/x", http.StatusBadGateway, "", "certificate signed by unknown authority"},
		{"/wrongname/x", http.StatusBadGateway, "", "failed to verify certificate"},
		{"/system/x", http.StatusBadGateway, "", "failed to verify certificate"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			before := len(f.logs.String())
			resp, body := f.do(t, "GET", tt.path, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.body != "" && string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			logs := f.logs.String()[before:]
			if tt.log != "" && (!strings.Contains(logs, `"level":"ERROR","msg":"upstream request failed"`) || !strings.Contains(logs, tt.log)) {
				t.Errorf("no upstream error logged with %q:\n%s", tt.log, logs)
			}
		})
	}
	keyBody := strings.Split(string(client.KeyPEM), "\n")[1]
	if logs := f.logs.String(); strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, keyBody) {
		t.Errorf("key material in the logs:\n%s", logs)
	}
}

// TestUpstreamTLSReload: rewriting the client certificate files and
// reloading takes effect without a restart, while a reload with unchanged
// files keeps the pool (and its warm connections).
func TestUpstreamTLSReload(t *testing.T) {
	ca, clientCA := testutil.NewCA(t), testutil.NewCA(t)
	up := mtlsUpstream(t, ca, clientCA)
	dir := t.TempDir()
	old := ca.Client(t, "old") // not from the CA the upstream trusts for clients
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	certFile := testutil.WriteFile(t, dir, "client.pem", old.CertPEM)
	keyFile := testutil.WriteFile(t, dir, "client.key", old.KeyPEM)
	src := fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: mtls
    match: {path_prefix: /}
    to: %s
    public: true
    upstream_tls: {ca_file: %s, cert_file: %s, key_file: %s, server_name: upstream.test}
`, up.URL, caFile, certFile, keyFile)
	f := newFixture(t, src)
	if resp, body := f.do(t, "GET", "/x", nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("with a client certificate the upstream does not trust: %d %s", resp.StatusCode, body)
	}
	reload := func() {
		t.Helper()
		next, err := config.Parse([]byte(src), "test.yaml", ".", config.Options{Reuse: f.reuse})
		if err != nil {
			t.Fatal(err)
		}
		prev, _ := f.gw.Swap(next)
		prev.Close()
		t.Cleanup(next.Close)
	}
	upstreamOf := func() http.Handler {
		rt, _, _ := f.gw.Snapshot().Routes.Match("gw.test", "/x", "GET", nil)
		return rt.Upstream
	}

	before := upstreamOf()
	reload()
	if upstreamOf() != before {
		t.Error("a reload with unchanged files rebuilt the pool")
	}

	renewed := clientCA.Client(t, "renewed")
	testutil.WriteFile(t, dir, "client.pem", renewed.CertPEM)
	testutil.WriteFile(t, dir, "client.key", renewed.KeyPEM)
	reload()
	resp, body := f.do(t, "GET", "/x", nil)
	if resp.StatusCode != http.StatusOK || string(body) != "client renewed" {
		t.Fatalf("after renewing the client certificate: %d %s", resp.StatusCode, body)
	}
	if !slices.Contains(f.gw.Snapshot().WatchFiles, certFile) {
		t.Error("the client certificate file is not watched for changes")
	}
}

// publicRouteTo is a gateway config with one public route for every path,
// to upstream.
func publicRouteTo(upstream string) string {
	return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: open
    match: {path_prefix: /}
    to: %s
    public: true
`, upstream)
}
