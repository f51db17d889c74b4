package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/testutil"
)

// chromiumPath is Debian's chromium; the tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

// tabTimeout bounds everything one tab does in a test.
const tabTimeout = 20 * time.Second

// newBrowser starts a headless Chromium with a fresh profile for the
// test, closed when the test ends. flags are added to the usual ones.
func newBrowser(t *testing.T, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser tests need Debian's chromium at %s (scripts/test.sh installs it; or: apt-get install -y chromium): %v", chromiumPath, err)
	}
	out := &testutil.SyncBuffer{}
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is small in containers
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(800, 700),
		chromedp.CombinedOutput(out),
	}, flags...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out)
		}
	})
	// The first run starts the browser and ties it to ctx, which has no
	// deadline; the tabs have one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens a tab in its own browser context, so that it shares no
// cookies with other tabs: one tab is one person.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(tab, tabTimeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

// do runs browser steps, stopping the test with where the browser is and
// what it shows when one fails.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, pageState(ctx))
	}
}

// get runs one browser action for its value, like do.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, pageState(ctx))
	}
	return v
}

// follow runs steps that make the tab navigate (a click on a link or a
// submit button) and returns the response of the page it ends on, after
// redirects.
func follow(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, pageState(ctx))
	}
	return resp
}

// open navigates the tab and returns the response it ends on.
func open(t *testing.T, ctx context.Context, address string) *network.Response {
	t.Helper()
	return get(t, ctx, "open "+address, chromedp.NavigateResponse(address))
}

// pageState describes the tab for a failure message. It has its own short
// deadline, as the tab's may be what ran out.
func pageState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(page state unavailable: " + err.Error() + ")"
	}
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if len(text) > 500 {
		text = text[:500] + "…"
	}
	return "browser at " + loc + ", showing:\n" + text
}

// location is the tab's current address.
func location(t *testing.T, ctx context.Context) *url.URL {
	t.Helper()
	loc := get(t, ctx, "read the address", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("browser address %q: %v", loc, err)
	}
	return u
}

// text is the visible text of the first element sel matches, once visible.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(get(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// wantLoginForm checks that the tab shows the built-in provider's sign-in
// form, served by the gateway itself.
func wantLoginForm(t *testing.T, ctx context.Context, g *gateway) {
	t.Helper()
	do(t, ctx, "wait for the sign-in form", chromedp.WaitVisible(chromedp.ID("password")))
	if got := text(t, ctx, "p.warning"); !strings.Contains(got, "Development identity provider") {
		t.Errorf("sign-in page banner = %q, want the development identity provider warning", got)
	}
	if u := location(t, ctx); u.Host != g.host || !strings.HasPrefix(u.Path, "/.sekisho/dev/") {
		t.Errorf("sign-in form at %s, want the built-in provider under http://%s/.sekisho/dev/", u, g.host)
	}
}

// signIn fills the sign-in form the tab shows and submits it; otp is left
// empty when "". It returns the response of the page the browser lands on.
func signIn(t *testing.T, ctx context.Context, email, password, otp string) *network.Response {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.Clear(chromedp.ID("email")), // kept from a failed attempt
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
	}
	if otp != "" {
		steps = append(steps, chromedp.SendKeys(chromedp.ID("otp"), otp))
	}
	do(t, ctx, "fill the sign-in form", steps...)
	return follow(t, ctx, "submit the sign-in form as "+email,
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
}

// readEcho decodes what the built-in echo upstream says it received; the
// browser shows its JSON answer as text.
func readEcho(t *testing.T, ctx context.Context) echo.Request {
	t.Helper()
	raw := get(t, ctx, "read the upstream's answer", chromedp.TextContent(chromedp.CSS("pre")))
	var got echo.Request
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("the page is not the echo upstream's JSON: %v\n%s", err, raw)
	}
	return got
}

// wantLanded checks that a navigation ended on want with status.
func wantLanded(t *testing.T, ctx context.Context, resp *network.Response, status int64, want string) {
	t.Helper()
	if resp.Status != status {
		t.Errorf("landed with status %d, want %d", resp.Status, status)
	}
	if got := location(t, ctx).String(); got != want {
		t.Fatalf("browser landed on %s, want %s\n%s", got, want, pageState(ctx))
	}
}
