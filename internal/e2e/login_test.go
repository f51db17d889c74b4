package e2e

import (
	"bytes"
	"context"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// screenshotDir is where SEKISHO_SCREENSHOTS=1 puts the screenshots, for
// the documentation; otherwise they go to a temporary directory.
var screenshotDir = filepath.Join("..", "..", "docs", "screenshots")

// A browser without a session is sent to the sign-in form, lands on the
// address it asked for with the upstream's answer, and after signing out
// is sent to the sign-in form again.
func TestBrowserSignInAndOut(t *testing.T) {
	g := startGateway(t)
	ctx := newTab(t, newBrowser(t))
	target := g.url("/admin/hello?x=1")

	open(t, ctx, target)
	wantLoginForm(t, ctx, g)
	saveScreenshot(t, ctx, "sign-in.png")

	resp := signIn(t, ctx, "alice@example.com", "alice", "")
	wantLanded(t, ctx, resp, http.StatusOK, target)
	got := readEcho(t, ctx)
	if got.Path != "/admin/hello" || got.Query != "x=1" {
		t.Errorf("upstream saw path %q query %q, want /admin/hello and x=1", got.Path, got.Query)
	}
	for name, want := range map[string]string{
		"X-Forwarded-User":   "alice@example.com",
		"X-Forwarded-Email":  "alice@example.com",
		"X-Forwarded-Groups": "admin",
	} {
		if vs := got.Headers[name]; !slices.Contains(vs, want) {
			t.Errorf("upstream saw %s = %q, want %q", name, vs, want)
		}
	}

	signOut(t, ctx, g)

	open(t, ctx, g.url("/admin/hello"))
	wantLoginForm(t, ctx, g)
}

// A signed-in user the route refuses gets a 403 page naming the route and
// the request, with a button that signs out so another account can be used.
func TestBrowserForbiddenOffersSwitchAccount(t *testing.T) {
	g := startGateway(t)
	ctx := newTab(t, newBrowser(t))
	target := g.url("/admin/")

	open(t, ctx, target)
	resp := signIn(t, ctx, "bob@example.com", "bob", "")
	wantLanded(t, ctx, resp, http.StatusForbidden, target)
	if got := text(t, ctx, "h1"); got != "403 Forbidden" {
		t.Errorf("heading = %q, want 403 Forbidden", got)
	}
	if got := text(t, ctx, "dd code"); got != "admin" {
		t.Errorf("route shown = %q, want admin", got)
	}
	id := text(t, ctx, "dd:nth-of-type(2) code")
	if want, _ := resp.Headers["X-Request-Id"].(string); id == "" || id != want {
		t.Errorf("request id shown = %q, want the response's X-Request-Id %q", id, want)
	}
	button := `form[method="post"] button`
	if got := text(t, ctx, button); got != "Sign out or switch account" {
		t.Fatalf("button = %q, want Sign out or switch account", got)
	}

	resp = follow(t, ctx, "click Sign out or switch account", chromedp.Click(chromedp.CSS(button)))
	wantSignedOut(t, ctx, g, resp)

	// Switch: the next visit asks for an account again, and alice may pass.
	open(t, ctx, target)
	wantLoginForm(t, ctx, g)
	resp = signIn(t, ctx, "alice@example.com", "alice", "")
	wantLanded(t, ctx, resp, http.StatusOK, target)
	if got := readEcho(t, ctx).Headers["X-Forwarded-User"]; !slices.Equal(got, []string{"alice@example.com"}) {
		t.Errorf("after switching, upstream saw X-Forwarded-User %q, want alice@example.com", got)
	}
}

// The MFA route lets in carol, who signs in with a one-time code, and
// refuses alice, who has none; a missing code is refused on the form.
func TestBrowserOneTimeCode(t *testing.T) {
	g := startGateway(t)
	browser := newBrowser(t)
	target := g.url("/mfa/")

	carol := newTab(t, browser)
	open(t, carol, target)
	wantLoginForm(t, carol, g)
	if got := text(t, carol, `label[for="otp"]`); !strings.HasPrefix(got, "One-time code") {
		t.Errorf("code field label = %q, want One-time code", got)
	}
	resp := signIn(t, carol, "carol@example.com", "carol", "")
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("sign-in without the code: status %d, want 401", resp.Status)
	}
	if got := text(t, carol, "#login-error"); got != "Wrong email, password or one-time code." {
		t.Errorf("sign-in without the code: error %q", got)
	}
	code, err := totp.GenerateCode(carolTOTP, time.Now())
	if err != nil {
		t.Fatalf("one-time code: %v", err)
	}
	resp = signIn(t, carol, "carol@example.com", "carol", code)
	wantLanded(t, carol, resp, http.StatusOK, target)
	if got := readEcho(t, carol).Headers["X-Forwarded-User"]; !slices.Equal(got, []string{"carol@example.com"}) {
		t.Errorf("upstream saw X-Forwarded-User %q, want carol@example.com", got)
	}

	alice := newTab(t, browser)
	open(t, alice, target)
	resp = signIn(t, alice, "alice@example.com", "alice", "")
	wantLanded(t, alice, resp, http.StatusForbidden, target)
	if got := text(t, alice, "dd code"); got != "mfa" {
		t.Errorf("route shown = %q, want mfa", got)
	}
}

// The address to return to after signing in cannot send the browser to
// another site: such addresses are refused before the sign-in starts, and
// a protected path that looks like another host ends on this one.
func TestBrowserReturnAddressStaysOnHost(t *testing.T) {
	g := startGateway(t)
	// evil.example resolves, in this browser only, to a listener that
	// counts connections: any visit there, even a failed TLS one, shows.
	var visits atomic.Int32
	trap := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("evil.example"))
	}))
	trap.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			visits.Add(1)
		}
	}
	trap.Start()
	t.Cleanup(trap.Close)
	browser := newBrowser(t, chromedp.Flag("host-resolver-rules", "MAP evil.example "+trap.Listener.Addr().String()))

	for _, tc := range []struct {
		name, path string
	}{
		{"scheme-relative", "/.sekisho/sign_in?rd=" + url.QueryEscape("//evil.example/")},
		{"other host", "/.sekisho/sign_in?rd=" + url.QueryEscape("https://evil.example/")},
		{"backslash", "/.sekisho/sign_in?rd=" + url.QueryEscape(`/\evil.example/`)},
		{"userinfo", "/.sekisho/sign_in?rd=" + url.QueryEscape("http://"+g.host+"@evil.example/")},
		{"start endpoint", "/.sekisho/start?provider=dev&rd=" + url.QueryEscape("//evil.example/")},
		// The trap listens on the gateway's own host name, another port:
		// another origin, so it is refused like another host.
		{"same host, other port", "/.sekisho/sign_in?rd=" + url.QueryEscape("http://"+trap.Listener.Addr().String()+"/")},
		{"same host, other port, start", "/.sekisho/start?provider=dev&rd=" + url.QueryEscape("http://"+trap.Listener.Addr().String()+"/")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newTab(t, browser)
			resp := open(t, ctx, g.url(tc.path))
			if resp.Status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.Status)
			}
			if got := text(t, ctx, "p[role=alert]"); !strings.Contains(got, "not allowed") {
				t.Errorf("page says %q, want the return address refused", got)
			}
			if u := location(t, ctx); u.Host != g.host {
				t.Errorf("browser left for %s", u)
			}
		})
	}

	t.Run("protected path like a host", func(t *testing.T) {
		ctx := newTab(t, browser)
		open(t, ctx, g.url("//evil.example/"))
		resp := signIn(t, ctx, "alice@example.com", "alice", "")
		if u := location(t, ctx); u.Host != g.host || resp.Status != http.StatusOK {
			t.Fatalf("after signing in: status %d at %s, want 200 on %s", resp.Status, u, g.host)
		}
		if got := readEcho(t, ctx).Path; got != "/evil.example/" {
			t.Errorf("upstream saw path %q, want /evil.example/", got)
		}
	})

	// Controls: a safe return address is followed after signing in, and a
	// visit to evil.example would have been seen.
	t.Run("safe address followed", func(t *testing.T) {
		ctx := newTab(t, browser)
		open(t, ctx, g.url("/.sekisho/sign_in?rd="+url.QueryEscape("/public/welcome")))
		follow(t, ctx, "choose the provider", chromedp.Click(chromedp.CSS("a.button")))
		resp := signIn(t, ctx, "alice@example.com", "alice", "")
		wantLanded(t, ctx, resp, http.StatusOK, g.url("/public/welcome"))
	})
	if n := visits.Load(); n != 0 {
		t.Fatalf("the browser went to evil.example %d times", n)
	}
	ctx := newTab(t, browser)
	open(t, ctx, "http://evil.example/")
	if visits.Load() == 0 {
		t.Fatalf("the trap for evil.example saw no visit; the checks above prove nothing")
	}
}

// signOut signs out through the confirmation page, as a person would.
func signOut(t *testing.T, ctx context.Context, g *gateway) {
	t.Helper()
	open(t, ctx, g.url("/.sekisho/sign_out"))
	resp := follow(t, ctx, "confirm sign-out", chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	wantSignedOut(t, ctx, g, resp)
}

// wantSignedOut checks that sign-out ended on sekisho's signed-out page.
func wantSignedOut(t *testing.T, ctx context.Context, g *gateway, resp *network.Response) {
	t.Helper()
	wantLanded(t, ctx, resp, http.StatusOK, g.url("/.sekisho/signed_out"))
	if got := text(t, ctx, "h1"); got != "Signed out" {
		t.Errorf("signed-out page heading = %q", got)
	}
}

// saveScreenshot takes a PNG of the whole page, always, so that the test
// shows it can; it is kept in docs/screenshots with SEKISHO_SCREENSHOTS=1.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf := get(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 300 {
		t.Errorf("screenshot is %dx%d, want a whole page", b.Dx(), b.Dy())
	}
	dir := t.TempDir()
	if os.Getenv("SEKISHO_SCREENSHOTS") == "1" {
		dir = screenshotDir
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("screenshot directory: %v", err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("screenshot: %s", path)
}
