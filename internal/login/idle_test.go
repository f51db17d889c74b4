package login

import (
	"net/http"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/session"
)

// TestIdleTimeout: an active session is kept alive by coarse activity
// writes; one left idle longer than the timeout ends.
func TestIdleTimeout(t *testing.T) {
	const idle = 2 * time.Minute
	h := newHarness(t, setup{
		store: func(t *testing.T, c *session.Codec, now func() time.Time) session.Store {
			return session.NewCookieStore(c, session.StoreOptions{IdleTimeout: idle, Now: now})
		},
		opts: func(o *Options) { o.IdleTimeout = idle },
	})
	b := newBrowser(t)
	h.login(b, "/app")
	seen := h.session(b).LastSeen

	// Requests every 90s keep it alive past the idle timeout (and within
	// the test provider's token lifetime, so no refresh is involved).
	for range 3 {
		h.clock.Advance(90 * time.Second)
		if resp, body := do(t, b.Client, http.MethodGet, h.gw.URL+"/app", nil); resp.StatusCode != http.StatusOK || body != "hello alice@example.com at /app" {
			t.Fatalf("active session: %d %q\n%s", resp.StatusCode, body, h.logs)
		}
	}
	if !h.session(b).LastSeen.After(seen) {
		t.Fatal("activity was not recorded")
	}

	// Idle past the timeout: signed out.
	h.clock.Advance(idle + time.Minute)
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("idle session: %d, want a redirect to sign in", resp.StatusCode)
	}
}
