package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sekisho/sekisho/internal/authn/jwt/jwttest"
	"github.com/sekisho/sekisho/internal/echo"
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

// nothingReceived fails the test if the upstream saw a request.
func (u *upstream) nothingReceived(t *testing.T) {
	t.Helper()
	select {
	case h := <-u.seen:
		t.Fatalf("the upstream received a request: %v", h)
	default:
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
