package login

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/session/redistest"
)

// refreshOP counts (and can hold or fail) the OP's refresh-token grants,
// and reports every refresh attempt of the service.
type refreshOP struct {
	calls   atomic.Int32
	gate    chan struct{} // when set, refresh grants wait for it to close
	release sync.Once
	fail    atomic.Bool // answer refresh grants with 500
	done    chan error  // one value per refresh attempt of the service
}

func newRefreshOP(gated bool) *refreshOP {
	o := &refreshOP{done: make(chan error, 16)}
	if gated {
		o.gate = make(chan struct{})
	}
	return o
}

func (o *refreshOP) open() {
	if o.gate != nil {
		o.release.Do(func() { close(o.gate) })
	}
}

func (o *refreshOP) setup(su setup) setup {
	su.opMiddleware = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/oauth/token" && r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" {
				o.calls.Add(1)
				if o.gate != nil {
					<-o.gate
				}
				if o.fail.Load() {
					http.Error(w, "down for maintenance", http.StatusInternalServerError)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	su.opts = func(opt *Options) { opt.onRefresh = func(_ string, err error) { o.done <- err } }
	return su
}

// wait returns the result of the next refresh attempt.
func (o *refreshOP) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-o.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh attempt finished")
		return nil
	}
}

func sessionCookieSet(resp *http.Response) (set, cleared bool) {
	for _, c := range resp.Cookies() {
		if c.Name == "_sekisho" {
			if c.MaxAge < 0 {
				cleared = true
			} else {
				set = true
			}
		}
	}
	return set, cleared
}

func TestRefreshAheadDoesNotDelayRequests(t *testing.T) {
	rop := newRefreshOP(true)
	h := newHarness(t, rop.setup(setup{}))
	t.Cleanup(rop.open) // never leave an OP handler blocked
	b := newBrowser(t)
	h.login(b, "/")
	old := h.session(b)
	oldCookie := b.cookie(h.gw.URL, "_sekisho").Value

	// Four of the token's five minutes have passed: within the default
	// refresh-ahead window (a quarter of the lifetime).
	h.clock.Advance(4 * time.Minute)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The OP holds the refresh; these requests must not wait for it.
			resp, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello alice@example.com") {
				t.Errorf("request during refresh: %d %q", resp.StatusCode, body)
			}
			if set, _ := sessionCookieSet(resp); set {
				t.Error("a request during the refresh got a new session cookie")
			}
		}()
	}
	wg.Wait()
	rop.open()
	if err := rop.wait(t); err != nil {
		t.Fatalf("background refresh: %v\nlogs:\n%s", err, h.logs)
	}

	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if set, _ := sessionCookieSet(resp); resp.StatusCode != http.StatusOK || !set {
		t.Fatalf("next request: status %d, new cookie %v; want the refreshed session", resp.StatusCode, set)
	}
	now := h.session(b)
	if now.ID != old.ID || now.AccessToken == old.AccessToken || now.RefreshToken == old.RefreshToken || !now.TokenExpiry.After(old.TokenExpiry) {
		t.Errorf("refreshed session: same ID %v, new access token %v, rotated refresh token %v, later expiry %v",
			now.ID == old.ID, now.AccessToken != old.AccessToken, now.RefreshToken != old.RefreshToken, now.TokenExpiry.After(old.TokenExpiry))
	}
	if n := rop.calls.Load(); n != 1 {
		t.Errorf("refresh grants = %d, want 1 (one flight per session)", n)
	}

	// Another tab still sending the old cookie gets the refreshed session
	// instead of redeeming the rotated refresh token again.
	jar, _ := cookiejar.New(nil)
	straggler := &browser{Client: &http.Client{Jar: jar}, jar: jar}
	gw := mustParse(t, h.gw.URL)
	jar.SetCookies(gw, []*http.Cookie{{Name: "_sekisho", Value: oldCookie, Path: "/"}})
	resp, _ = do(t, straggler.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if set, _ := sessionCookieSet(resp); resp.StatusCode != http.StatusOK || !set {
		t.Errorf("old-cookie request: status %d, new cookie %v", resp.StatusCode, set)
	}
	if n := rop.calls.Load(); n != 1 {
		t.Errorf("refresh grants after the old-cookie request = %d, want still 1", n)
	}
	h.assertNotLogged(old.AccessToken, old.RefreshToken, now.AccessToken, now.RefreshToken, now.IDToken, oldCookie)
}

func TestExpiredTokenRefreshesSynchronously(t *testing.T) {
	rop := newRefreshOP(false)
	h := newHarness(t, rop.setup(setup{}))
	b := newBrowser(t)
	h.login(b, "/")
	old := h.session(b)

	h.clock.Advance(6 * time.Minute)
	resp, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if set, _ := sessionCookieSet(resp); resp.StatusCode != http.StatusOK || !set {
		t.Fatalf("request with an expired token: %d %q, cookie set %v; want the refreshed session", resp.StatusCode, body, set)
	}
	if err := rop.wait(t); err != nil {
		t.Fatal(err)
	}
	if now := h.session(b); !now.TokenExpiry.After(h.clock.Now()) || now.AccessToken == old.AccessToken {
		t.Errorf("session after synchronous refresh expires %s (now %s)", now.TokenExpiry, h.clock.Now())
	}
}

func TestRejectedRefreshTokenEndsSession(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
		// background: the first request still succeeds and the refresh
		// outcome ends the session on the next one.
		background bool
	}{
		{"in the background", 4 * time.Minute, true},
		{"when expired", 6 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rop := newRefreshOP(false)
			h := newHarness(t, rop.setup(setup{}))
			b := newBrowser(t)
			h.login(b, "/")
			sess := h.session(b)
			if oerr := h.opStore.RevokeToken(context.Background(), sess.RefreshToken, sess.Identity.Subject, testClientID); oerr != nil {
				t.Fatal(oerr)
			}
			h.clock.Advance(tc.advance)
			if tc.background {
				resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("first request: %d, want 200 with the still-valid session", resp.StatusCode)
				}
				if err := rop.wait(t); !errors.Is(err, session.ErrExpired) {
					t.Fatalf("refresh error = %v, want ErrExpired", err)
				}
			}
			resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
			if _, cleared := sessionCookieSet(resp); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), h.issuer) || !cleared {
				t.Errorf("after invalid_grant: %d to %q, cookie cleared %v; want a new login", resp.StatusCode, resp.Header.Get("Location"), cleared)
			}
		})
	}
}

func TestTransientRefreshFailure(t *testing.T) {
	rop := newRefreshOP(false)
	rop.fail.Store(true)
	h := newHarness(t, rop.setup(setup{}))
	b := newBrowser(t)
	h.login(b, "/")

	h.clock.Advance(4 * time.Minute)
	if resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if err := rop.wait(t); err == nil || errors.Is(err, session.ErrExpired) {
		t.Fatalf("refresh error = %v, want a transient error", err)
	}
	// The provider is not asked again at once, and the session goes on.
	if resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("second request: %d", resp.StatusCode)
	}
	if n := rop.calls.Load(); n != 1 {
		t.Errorf("refresh grants = %d, want 1 while backing off", n)
	}
	// Once the token has expired, a provider that still fails is a 503,
	// not a login loop and not a pass.
	h.clock.Advance(2 * time.Minute)
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("expired token with the provider failing: %d, want 503", resp.StatusCode)
	}
	if err := rop.wait(t); err == nil {
		t.Error("synchronous refresh reported success")
	}
	// Right after that failure, requests get 503 without asking again.
	resp, _ = do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if n := rop.calls.Load(); resp.StatusCode != http.StatusServiceUnavailable || n != 2 {
		t.Errorf("request during backoff: %d after %d refresh grants, want 503 after 2", resp.StatusCode, n)
	}
}

func TestRefreshRunsClaimRulesAgain(t *testing.T) {
	rop := newRefreshOP(false)
	h := newHarness(t, rop.setup(setup{providers: func(h *harness) []ProviderConfig {
		p := h.provider("corp")
		p.Rules = []identity.Rule{{Expr: `claims.email.endsWith("example.com")`, Message: "example.com accounts only"}}
		return []ProviderConfig{p}
	}}))
	b := newBrowser(t)
	h.login(b, "/")

	h.users.setEmail("alice-id", "alice@new.example.com")
	h.clock.Advance(6 * time.Minute)
	_, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if body != "hello alice@new.example.com at /app" {
		t.Errorf("after refresh: %q, want the refreshed email as username", body)
	}
	if err := rop.wait(t); err != nil {
		t.Fatal(err)
	}

	h.users.setEmail("alice-id", "alice@elsewhere.test")
	h.clock.Advance(6 * time.Minute)
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if _, cleared := sessionCookieSet(resp); resp.StatusCode != http.StatusFound || !cleared {
		t.Errorf("refresh with claims the rules reject: %d, cookie cleared %v; want the session ended", resp.StatusCode, cleared)
	}
	if err := rop.wait(t); !errors.Is(err, session.ErrExpired) || !strings.Contains(err.Error(), "example.com accounts only") {
		t.Errorf("refresh error = %v, want ErrExpired naming the rule", err)
	}
}

func TestRefreshCacheIsBounded(t *testing.T) {
	c := newRefreshCache(2)
	for _, id := range []string{"a", "b", "c"} {
		c.record(&session.Session{ID: id}, &session.Session{ID: id}, nil, time.Now())
	}
	if _, ok := c.get("c"); len(c.m) != 2 || !ok {
		t.Errorf("cache holds %d entries (c present: %v), want 2 with the newest", len(c.m), ok)
	}
}

// revokedOnSave is a store whose session gets revoked between a request's
// Load and its Save, once revoke is set.
type revokedOnSave struct {
	session.Store
	revoke atomic.Bool
}

func (s *revokedOnSave) Save(ctx context.Context, r *http.Request, sess *session.Session) ([]*http.Cookie, error) {
	if s.revoke.Load() {
		return nil, session.ErrRevoked
	}
	return s.Store.Save(ctx, r, sess)
}

func TestRefreshedSessionRevokedMeanwhile(t *testing.T) {
	rop := newRefreshOP(false)
	var st *revokedOnSave
	su := rop.setup(setup{})
	su.store = func(_ *testing.T, c *session.Codec, now func() time.Time) session.Store {
		st = &revokedOnSave{Store: session.NewCookieStore(c, session.StoreOptions{Now: now})}
		return st
	}
	h := newHarness(t, su)
	b := newBrowser(t)
	h.login(b, "/")
	h.clock.Advance(4 * time.Minute)
	do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if err := rop.wait(t); err != nil {
		t.Fatal(err)
	}
	st.revoke.Store(true)
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if resp.StatusCode != http.StatusFound {
		t.Errorf("applying a refresh to a revoked session: %d, want a new login", resp.StatusCode)
	}
}

// TestRefreshedSessionSharedAtOnce: with Redis, a background refresh is
// stored right away, so another replica (here: the store itself) sees the
// new tokens before this browser's next request — and never redeems the
// rotated refresh token again.
func TestRefreshedSessionSharedAtOnce(t *testing.T) {
	var srv *redistest.Server
	rop := newRefreshOP(false)
	h := newHarness(t, rop.setup(setup{store: redisStore(&srv)}))
	b := newBrowser(t)
	h.login(b, "/")
	old := h.session(b)

	h.clock.Advance(4 * time.Minute) // inside the refresh-ahead window
	if resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("request that starts the refresh: %d", resp.StatusCode)
	}
	if err := rop.wait(t); err != nil {
		t.Fatalf("background refresh: %v", err)
	}
	// onRefresh fires after the refresh (and the store write) returned.
	now := h.session(b)
	if !now.TokenExpiry.After(old.TokenExpiry) || now.RefreshToken == old.RefreshToken {
		t.Fatalf("the shared store still holds the old tokens after a background refresh")
	}
}
