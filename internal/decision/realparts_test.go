package decision

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

// findBinary looks a Debian-packaged server up on PATH and in the sbin
// directories that are not on every PATH, or skips the test.
func findBinary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Skipf("%s is not installed (Debian package %q); this test drives the real server", name, map[string]string{"nginx": "nginx-light", "caddy": "caddy"}[name])
	return ""
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs a server process until the test ends and waits until
// addr accepts connections (polling, with a deadline: it is an external
// process with no other readiness signal). The process runs in its own
// process group, and the whole group is stopped at the end: nginx's workers
// are children of its master and outlive a master killed on its own.
func startServer(t *testing.T, addr, logFile string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	p, err := testutil.StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM first: nginx's master then stops its workers and exits.
		if err := p.Stop(10 * time.Second); err != nil {
			t.Error(err)
		}
		out.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.Exited():
			log, _ := os.ReadFile(logFile)
			t.Fatalf("%s exited before listening (%v):\n%s", filepath.Base(name), p.Err(), log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("%s did not listen on %s within 15s:\n%s", filepath.Base(name), addr, log)
		}
		time.Sleep(20 * time.Millisecond) // readiness poll of an external process
	}
}

// example reads a file of examples/integrations and swaps its addresses
// for the test's; every placeholder must occur, so the example cannot drift
// away from what the test runs.
func example(t *testing.T, name string, swap ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "integrations", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(swap); i += 2 {
		if !strings.Contains(s, swap[i]) {
			t.Fatalf("examples/integrations/%s no longer contains %q", name, swap[i])
		}
		s = strings.ReplaceAll(s, swap[i], swap[i+1])
	}
	return s
}

// seenRequest is what the upstream app received.
type seenRequest struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Headers http.Header `json:"headers"`
}

// recordingApp is the upstream behind the proxy: it answers with what it
// received and counts the requests that reached it.
type recordingApp struct {
	srv  *httptest.Server
	hits atomic.Int32
}

func newRecordingApp(t *testing.T) *recordingApp {
	t.Helper()
	a := &recordingApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seenRequest{Method: r.Method, URI: r.RequestURI, Headers: r.Header})
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *recordingApp) addr() string { return a.srv.Listener.Addr().String() }

// proxyCase is one request through a real proxy and what must come of it.
type proxyCase struct {
	name   string
	method string // GET when empty
	target string
	hdr    []string
	status int
	// For 200: the request-target and identity the app must see.
	appURI   string
	appUser  string
	appEmail string // "" means the app must see no email header at all
	// location is the redirect a browser must get.
	location string
	// cleared: no value the client sent (c.hdr after the token) may reach
	// the app in any header; appCheck checks more of what the app saw.
	cleared  bool
	appCheck func(t *testing.T, seen seenRequest)
}

// runProxyCases drives each case through the proxy at addr and checks the
// status, what reached the app, and that denials never reached it.
func runProxyCases(t *testing.T, addr string, app *recordingApp, cases []proxyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := app.hits.Load()
			method := c.method
			if method == "" {
				method = "GET"
			}
			resp, body := raw(t, addr, method, c.target, append([]string{"Host", "gw.test"}, c.hdr...)...)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, c.status, body)
			}
			if c.status != 200 {
				if n := app.hits.Load() - before; n != 0 {
					t.Errorf("a denied request reached the app (%d times)", n)
				}
				if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
					t.Errorf("401 without the Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
				}
				if c.location != "" && resp.Header.Get("Location") != c.location {
					t.Errorf("Location %q, want %q", resp.Header.Get("Location"), c.location)
				}
				return
			}
			var seen seenRequest
			if err := json.Unmarshal([]byte(body), &seen); err != nil {
				t.Fatalf("not the app's answer: %v\n%s", err, body)
			}
			if seen.URI != c.appURI {
				t.Errorf("the app saw %q, want %q", seen.URI, c.appURI)
			}
			if got := seen.Headers.Values("X-Forwarded-User"); fmt.Sprint(got) != fmt.Sprint([]string{c.appUser}) {
				t.Errorf("the app saw X-Forwarded-User %q, want only %q", got, c.appUser)
			}
			// An empty value says "nothing" as well as no header does.
			if got := seen.Headers.Values("X-Forwarded-Email"); fmt.Sprint(got) != fmt.Sprint([]string{c.appEmail}) && !(c.appEmail == "" && len(got) == 0) {
				t.Errorf("the app saw X-Forwarded-Email %q, want %q", got, c.appEmail)
			}
			if c.cleared {
				for i := 0; i+1 < len(c.hdr); i += 2 {
					if strings.EqualFold(c.hdr[i], "Authorization") {
						continue
					}
					for name, vs := range seen.Headers {
						if strings.Contains(strings.Join(vs, "\n"), c.hdr[i+1]) {
							t.Errorf("the client's %s reached the app: %s: %q", c.hdr[i], name, vs)
						}
					}
				}
			}
			if c.appCheck != nil {
				c.appCheck(t, seen)
			}
			for name, vs := range seen.Headers {
				n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
				spoofable := n != strings.ToLower(name) || strings.HasPrefix(n, "x-auth-request-") || n == "x-sekisho-assertion"
				if spoofable && strings.Join(vs, "") != "" {
					t.Errorf("a spoofed identity header reached the app: %s: %q", name, vs)
				}
			}
		})
	}
}

// spoofed is what a client sends to pass itself off as someone else.
var spoofed = []string{
	"X-Forwarded-User", "mallory",
	"X-Forwarded-Email", "mallory@evil.example",
	"X-Forwarded_Email", "mallory@evil.example",
	"X-Forwarded-Groups", "admin",
	"X-Sekisho-Assertion", "forged",
	"X-Auth-Request-User", "mallory",
	// '_' for '-': WSGI and CGI apps read these as the names above.
	"X_Forwarded_User", "mallory",
	"X_Forwarded_Groups", "admin",
	"x_forwarded_email", "mallory@evil.example",
	"X_Forwarded-Preferred-Username", "mallory",
	"X_Sekisho_Assertion", "forged",
	"X_SEKISHO-ASSERTION", "forged",
	"X_Auth_Request_User", "mallory",
	"X-Auth_Request-Groups", "admin",
}

// forgedForwarding is every header a client could send to describe the
// request, its origin or its path to the app differently from what the
// proxy decided on and forwards. Each value is unique, so that any of them
// reaching the app in any header is seen.
var forgedForwarding = []string{
	"X-Original-URL", "http://gw.test/forged-original-url",
	"X-Original-URI", "/forged-original-uri",
	"X-Original-Method", "FORGEDORIGINALMETHOD",
	"X-Original-Host", "forged-original-host.example",
	"X-Rewrite-URL", "/forged-rewrite-url",
	"X-Forwarded-Uri", "/forged-forwarded-uri",
	"X-Forwarded-Method", "FORGEDFORWARDEDMETHOD",
	"X-Forwarded-Prefix", "/forged-forwarded-prefix",
	"X-Forwarded-Port", "6661",
	"X-Forwarded-Host", "forged-forwarded-host.example",
	"X-Forwarded-Proto", "forgedproto",
	"X-Forwarded-Server", "forged-forwarded-server.example",
	"X-Forwarded-Scheme", "forgedscheme",
	"X-Forwarded-Ssl", "forgedssl",
	"X-Forwarded-For", "203.0.113.66",
	"X-Real-IP", "203.0.113.67",
	"X-Client-IP", "203.0.113.68",
	"True-Client-IP", "203.0.113.69",
	"Forwarded", "for=203.0.113.70;host=forged-forwarded.example",
	"X-Sekisho-Path", "/forged-sekisho-path",
	"X-Auth-Request-Access-Token", "forged-access-token",
	"X-Auth-Request-Redirect", "/forged-auth-request-redirect",
	"X-Request-Id", "forged-client-request-id",
}

// forgedDescription is every request-description header of every dialect,
// as a client would forge them to describe the public route /open/x.
var forgedDescription = []string{
	"X-Original-URL", "http://gw.test/open/x",
	"X-Original-URI", "/open/x",
	"X-Original-Method", "GET",
	"X-Forwarded-Uri", "/open/x",
	"X-Forwarded-Method", "GET",
	"X-Forwarded-Host", "gw.test",
	"X-Forwarded-Proto", "https",
}

// proxyStatus is how one real proxy answers what its example configures.
type proxyStatus struct {
	// canonical: the app sees the canonical path (the proxy forwards the
	// path sekisho decided on), else the path as sent.
	canonical bool
	// badPath answers a path sekisho refuses, noRoute a request no route
	// matches.
	badPath, noRoute int
	// hopIdentity answers a request whose Connection header names
	// sekisho's identity headers: 200 when the proxy never removes what
	// Connection names, else the example's refusal.
	hopIdentity int
}

// proxyCases are the cases every real proxy must pass with its shipped
// example configuration.
func proxyCases(f *fixture, ps proxyStatus) []proxyCase {
	canonical, badPath := ps.canonical, ps.badPath
	tk := f.tokens
	path := func(canon, sent string) string {
		if canonical {
			return canon
		}
		return sent
	}
	alice, dave := "alice@example.com", "dave@example.com"
	return []proxyCase{
		{name: "no token", target: "/api1/x", status: 401},
		{name: "valid token", target: "/api1/x?a=1&b=%2F", hdr: bearer(tk.admin), status: 200, appURI: "/api1/x?a=1&b=%2F", appUser: alice, appEmail: alice},
		{name: "forbidden token", target: "/api1/x", hdr: bearer(tk.ops), status: 403},
		{name: "expired token", target: "/api1/x", hdr: bearer(tk.expired), status: 401},
		{name: "spoofed identity headers are replaced", target: "/api1/x", hdr: append(bearer(tk.admin), spoofed...), status: 200, appURI: "/api1/x", appUser: alice, appEmail: alice},
		{name: "spoofed identity headers are dropped when sekisho has none to set", target: "/api1/x", hdr: append(bearer(ciToken), spoofed...), status: 200, appURI: "/api1/x", appUser: "token:ci-bot"},
		{name: "spoofed identity without a token", target: "/api1/x", hdr: spoofed, status: 401},
		{name: "dot segments are decided on the canonical path", target: "/api1/../api2/x", hdr: bearer(tk.dev), status: 200, appURI: path("/api2/x", "/api1/../api2/x"), appUser: dave, appEmail: dave},
		{name: "dot segments cannot escape into a stricter route", target: "/api2/../api1/x", hdr: bearer(tk.dev), status: 403},
		{name: "encoded dot segments", target: "/api1/%2e%2e/api2/x", hdr: bearer(tk.dev), status: 200, appURI: path("/api2/x", "/api1/%2e%2e/api2/x"), appUser: dave, appEmail: dave},
		{name: "duplicate slashes", target: "//api1//x", hdr: bearer(tk.admin), status: 200, appURI: path("/api1/x", "//api1//x"), appUser: alice, appEmail: alice},
		{name: "encoded slash refused", target: "/api1/a%2Fb", hdr: bearer(tk.admin), status: badPath},
		{name: "encoded slash where the route allows it", target: "/files/a%2Fb", hdr: bearer(tk.admin), status: 200, appURI: "/files/a%2Fb", appUser: alice, appEmail: alice},
		{name: "a browser without a session goes to sign in", target: "/api1/x", hdr: []string{"Accept", "text/html"}, status: 302, location: "https://login.example.com/start?rd=http://gw.test/api1/x"},

		// A client describing a public request while sending a protected one.
		{name: "forged X-Original-URL", target: "/api1/x", hdr: []string{"X-Original-URL", "http://gw.test/open/x"}, status: 401},
		{name: "forged X-Original-URI", target: "/api1/x", hdr: []string{"X-Original-URI", "/open/x"}, status: 401},
		{name: "forged X-Forwarded-Uri", target: "/api1/x", hdr: []string{"X-Forwarded-Uri", "/open/x", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test"}, status: 401},
		{name: "every forged description header", target: "/api1/x", hdr: forgedDescription, status: 401},
		{name: "forged X-Original-Method", method: "DELETE", target: "/ro/x", hdr: append(bearer(tk.dev), "X-Original-Method", "GET"), status: ps.noRoute},
		{name: "forged X-Forwarded-Method", method: "DELETE", target: "/ro/x", hdr: append(bearer(tk.dev), "X-Forwarded-Method", "GET"), status: ps.noRoute},
		{name: "forged X-Forwarded-Host", target: "/x", hdr: append(bearer(tk.admin), "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https"), status: ps.noRoute},
		{name: "the method as sent is decided on", method: "DELETE", target: "/ro/x", hdr: bearer(tk.dev), status: ps.noRoute},

		// Connection must not remove the identity after sekisho set it.
		{name: "Connection names the identity headers", target: "/api1/x", hdr: append(bearer(tk.admin), "Connection", "X-Forwarded-User, X-Forwarded-Email, X-Forwarded-Groups, X-Sekisho-Assertion"),
			status: ps.hopIdentity, appURI: "/api1/x", appUser: alice, appEmail: alice},
		{name: "an ordinary Connection header", target: "/api1/x", hdr: append(bearer(tk.admin), "Connection", "keep-alive, X-Trace"),
			status: 200, appURI: "/api1/x", appUser: alice, appEmail: alice},

		// What the client says about the request stays out of the app.
		{name: "forged forwarding headers do not reach the app", target: "/api1/x", hdr: append(bearer(tk.admin), forgedForwarding...),
			status: 200, appURI: "/api1/x", appUser: alice, appEmail: alice, cleared: true,
			appCheck: func(t *testing.T, seen seenRequest) {
				t.Helper()
				ids := seen.Headers.Values("X-Request-Id")
				if len(ids) != 1 || ids[0] == "" || strings.ContainsAny(ids[0], "{}$") {
					t.Fatalf("the app saw X-Request-Id %q, want the proxy's own", ids)
				}
				// sekisho logged the proxy's id for this request, so the
				// app's logs and sekisho's meet.
				if !strings.Contains(f.logs.String(), `"request_id":"`+ids[0]+`"`) {
					t.Errorf("sekisho did not log the request id %q the app saw", ids[0])
				}
			}},
	}
}

// noClientRequestID checks that no id a client sent was logged as the id of
// a request sekisho decided.
func noClientRequestID(t *testing.T, f *fixture) {
	t.Helper()
	if strings.Contains(f.logs.String(), "forged-client-request-id") {
		t.Error("sekisho logged the client's X-Request-Id as its own")
	}
}
