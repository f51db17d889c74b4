package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/session/redistest"
)

// loginGateway is a gateway with browser login served on a fixed loopback
// port (the built-in provider's issuer names it).
type loginGateway struct {
	*fixture
	url  string
	port string
	dir  string
}

const loginRoutes = `
providers:
  - name: dev
    builtin:
      users:
        - {email: alice@example.com, password: alice, groups: [admin]}
        - {email: bob@example.com, password: bob, groups: [staff]}
routes:
  - {name: public, match: {path_prefix: /public}, to: builtin:echo, public: true}
  - {name: admin, match: {path_prefix: /admin}, to: builtin:echo, allow: [{groups: [admin]}]}
  - {name: api, match: {path_prefix: /api}, to: builtin:echo, api: true, allow: [{groups: [admin]}]}
  - {name: app, match: {path_prefix: /}, to: builtin:echo, allow: [{domains: [example.com]}]}
`

func newLoginGateway(t *testing.T, extra string) *loginGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	lg := &loginGateway{port: port, url: "http://127.0.0.1:" + port, dir: t.TempDir()}
	src := fmt.Sprintf("listen: {http: \"127.0.0.1:%s\"}\n%s%s", port, extra, loginRoutes)
	lg.fixture = newFixtureOn(t, ln, src, lg.dir)
	return lg
}

// newFixtureOn is newFixture with a given listener and config directory.
func newFixtureOn(t *testing.T, ln net.Listener, src, dir string) *fixture {
	t.Helper()
	env := configtest.New(t)
	env.Dir = dir
	snap := env.Snapshot(src) // waits for the built-in provider's discovery
	gw := New(env.Log, env.Metrics, true)
	gw.Swap(snap)
	srv := httptest.NewUnstartedServer(gw)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { srv.Close(); gw.Snapshot().Close() })
	return &fixture{gw: gw, srv: srv, logs: env.Logs, metrics: env.Metrics, reuse: env.Reuse}
}

// browser is an HTTP client that follows redirects, keeps cookies and asks
// for HTML, like a browser navigating.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Transport: acceptHTML{}}
}

type acceptHTML struct{}

func (acceptHTML) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if r.Header.Get("Accept") == "" {
		r.Header.Set("Accept", "text/html,application/xhtml+xml")
	}
	return http.DefaultTransport.RoundTrip(r)
}

func fetch(t *testing.T, c *http.Client, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", req.URL.Scheme+"://"+req.URL.Host)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn opens target, fills the built-in provider's form and returns the
// final response after all redirects.
func signIn(t *testing.T, c *http.Client, target, email, password string) (*http.Response, string) {
	t.Helper()
	resp, page := fetch(t, c, "GET", target, nil)
	if !strings.Contains(page, "Development identity provider") {
		t.Fatalf("GET %s did not lead to the login form (%d): %.300s", target, resp.StatusCode, page)
	}
	action, id, csrf := formAction.FindStringSubmatch(page), hiddenID.FindStringSubmatch(page), hiddenCSRF.FindStringSubmatch(page)
	if action == nil || id == nil || csrf == nil {
		t.Fatalf("login form without action/id/csrf: %s", page)
	}
	formURL := resp.Request.URL.ResolveReference(&url.URL{Path: htmlUnescape(action[1])})
	return fetch(t, c, "POST", formURL.String(), url.Values{"id": {htmlUnescape(id[1])}, "csrf": {htmlUnescape(csrf[1])}, "email": {email}, "password": {password}})
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#x2F;", "/", "&#34;", `"`, "&#39;", "'").Replace(s)
}

func TestBrowserLogin(t *testing.T) {
	lg := newLoginGateway(t, "")
	b := browser(t)

	// API clients get 401, never a redirect.
	api := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _ := fetch(t, api, "GET", lg.url+"/admin/x", nil)
	if resp.StatusCode != 401 {
		t.Fatalf("API client without a session: %d, want 401", resp.StatusCode)
	}

	resp, body := signIn(t, b, lg.url+"/admin/hello?x=1", "alice@example.com", "alice")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/hello" || resp.Request.URL.RawQuery != "x=1" {
		t.Fatalf("after sign-in: %d at %s: %.300s", resp.StatusCode, resp.Request.URL, body)
	}
	got := seen(t, []byte(body))
	if u := got.Headers.Get("X-Forwarded-User"); u != "alice@example.com" {
		t.Errorf("X-Forwarded-User = %q", u)
	}
	if c := got.Headers.Get("Cookie"); strings.Contains(c, "_sekisho") {
		t.Errorf("the session cookie reached the upstream: %q", c)
	}

	// The session works for other routes; api routes accept it too.
	if resp, _ := fetch(t, b, "GET", lg.url+"/anything", nil); resp.StatusCode != 200 {
		t.Errorf("/anything with a session: %d", resp.StatusCode)
	}
	// Own endpoints are found on the canonical path, whatever the spelling.
	for _, p := range []string{"//.sekisho/userinfo", "/x/../.sekisho/userinfo", "/%2esekisho/userinfo"} {
		if resp, body := fetch(t, b, "GET", lg.url+p, nil); resp.StatusCode != 200 || !strings.Contains(body, "alice@example.com") {
			t.Errorf("GET %s: %d %.100s", p, resp.StatusCode, body)
		}
	}
	// userinfo shows the identity, never tokens.
	resp, body = fetch(t, b, "GET", lg.url+"/.sekisho/userinfo", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
	for _, tok := range []string{"id_token", "access_token", "refresh_token", "eyJ"} {
		if strings.Contains(body, tok) {
			t.Errorf("userinfo leaks %q: %s", tok, body)
		}
	}

	// Sign out: the form posts; afterwards the protected URL redirects again.
	resp, body = fetch(t, b, "POST", lg.url+"/.sekisho/sign_out", url.Values{})
	if resp.StatusCode != 200 || !strings.Contains(resp.Request.URL.Path, "signed_out") {
		t.Fatalf("sign-out ended at %d %s: %.200s", resp.StatusCode, resp.Request.URL, body)
	}
	_, page := fetch(t, b, "GET", lg.url+"/admin/hello", nil)
	if !strings.Contains(page, "Development identity provider") {
		t.Fatalf("after sign-out the protected URL did not lead to sign-in: %.300s", page)
	}
}

func TestBrowserForbiddenOffersSignOut(t *testing.T) {
	lg := newLoginGateway(t, "")
	b := browser(t)
	resp, body := signIn(t, b, lg.url+"/admin/", "bob@example.com", "bob")
	if resp.StatusCode != 403 {
		t.Fatalf("bob at /admin/: %d, want 403", resp.StatusCode)
	}
	for _, want := range []string{"admin", "Request id", `action="/.sekisho/sign_out"`, "Sign out or switch account", "signed in as bob@example.com"} {
		if !strings.Contains(body, want) {
			t.Errorf("403 page lacks %q: %s", want, body)
		}
	}
	// An api route never redirects, even for a browser.
	b2 := browser(t)
	b2.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resp, _ := fetch(t, b2, "GET", lg.url+"/api/x", nil); resp.StatusCode != 401 {
		t.Errorf("api route for a browser: %d, want 401", resp.StatusCode)
	}
}

func TestLoginReplacesPlantedSession(t *testing.T) {
	lg := newLoginGateway(t, "")
	b := browser(t)
	u, _ := url.Parse(lg.url)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: "_sekisho", Value: "planted-by-an-attacker", Path: "/"}})
	if resp, _ := signIn(t, b, lg.url+"/admin/", "alice@example.com", "alice"); resp.StatusCode != 200 {
		t.Fatalf("sign-in with a planted cookie: %d", resp.StatusCode)
	}
	for _, c := range b.Jar.Cookies(u) {
		if c.Value == "planted-by-an-attacker" {
			t.Fatal("the planted session cookie survived the login")
		}
	}
}

func TestSessionSurvivesReload(t *testing.T) {
	lg := newLoginGateway(t, "")
	b := browser(t)
	if resp, _ := signIn(t, b, lg.url+"/admin/", "alice@example.com", "alice"); resp.StatusCode != 200 {
		t.Fatal("sign-in failed")
	}
	// Same providers and session settings, one more route: the login
	// service (and its key) is carried over.
	prev := lg.gw.Snapshot()
	src := fmt.Sprintf("listen: {http: \"127.0.0.1:%s\"}\n%s  - {name: extra, match: {path: /extra}, to: builtin:echo, public: true}\n", lg.port, loginRoutes)
	next, err := config.Parse([]byte(src), "test.yaml", lg.dir, config.Options{Reuse: lg.reuse})
	if err != nil {
		t.Fatal(err)
	}
	lg.gw.Swap(next)
	prev.Close()
	if resp, body := fetch(t, b, "GET", lg.url+"/admin/", nil); resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/" {
		t.Fatalf("after a reload the session was lost: %d at %s %.200s", resp.StatusCode, resp.Request.URL, body)
	}
}

func TestRedisSessions(t *testing.T) {
	if _, err := os.Stat("/usr/bin/redis-server"); err != nil {
		t.Skip("redis-server is not installed (scripts/test.sh installs it)")
	}
	srv := redistest.Start(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "session.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("session: {secret_file: %s, store: %q}\n", key, srv.URL())
	lg := newLoginGateway(t, extra)
	b := browser(t)
	if resp, _ := signIn(t, b, lg.url+"/admin/", "alice@example.com", "alice"); resp.StatusCode != 200 {
		t.Fatal("sign-in failed")
	}
	u, _ := url.Parse(lg.url)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == "_sekisho" && len(c.Value) > 400 {
			t.Errorf("with Redis the cookie should be a small ticket, got %d bytes", len(c.Value))
		}
	}

	// Redis hung: protected routes fail closed with 503, public ones work.
	srv.Pause()
	resp, body := fetch(t, b, "GET", lg.url+"/admin/", nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "Sessions cannot be checked") {
		t.Fatalf("protected route with Redis down: %d %.200s", resp.StatusCode, body)
	}
	if resp, _ := fetch(t, b, "GET", lg.url+"/public/x", nil); resp.StatusCode != 200 {
		t.Errorf("public route with Redis down: %d", resp.StatusCode)
	}
	srv.Resume()
	if resp, _ := fetch(t, b, "GET", lg.url+"/admin/", nil); resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/" {
		t.Fatalf("after Redis came back: %d at %s", resp.StatusCode, resp.Request.URL)
	}

	// Redis stopped (connection refused) fails closed the same way.
	srv.Stop()
	if resp, _ := fetch(t, b, "GET", lg.url+"/admin/", nil); resp.StatusCode != 503 {
		t.Fatalf("protected route with Redis stopped: %d, want 503", resp.StatusCode)
	}
	srv.Restart() // an empty Redis: the session is gone, so sign in again
	if resp, _ := signIn(t, b, lg.url+"/admin/", "alice@example.com", "alice"); resp.StatusCode != 200 {
		t.Fatalf("sign-in after Redis restarted: %d", resp.StatusCode)
	}

	// A new gateway (a restart) with the same key and Redis still knows the session.
	lg2 := newLoginGatewayOnPort(t, lg.port, extra, lg)
	_ = lg2
	resp, body = fetch(t, b, "GET", lg.url+"/admin/", nil)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/" {
		t.Fatalf("session after restart: %d at %s %.200s", resp.StatusCode, resp.Request.URL, body)
	}
	var e struct {
		Headers http.Header `json:"headers"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.Headers.Get("X-Forwarded-User") != "alice@example.com" {
		t.Errorf("identity after restart: %s", body)
	}
}

// newLoginGatewayOnPort replaces old (closing it) with a new gateway on the
// same port, as a restart would.
func newLoginGatewayOnPort(t *testing.T, port, extra string, old *loginGateway) *loginGateway {
	t.Helper()
	old.srv.Close()
	old.gw.Snapshot().Close()
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf("listen: {http: \"127.0.0.1:%s\"}\n%s%s", port, extra, loginRoutes)
	return &loginGateway{fixture: newFixtureOn(t, ln, src, old.dir), url: old.url, port: port, dir: old.dir}
}
