package login

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sekisho/sekisho/internal/devidp"
	"github.com/sekisho/sekisho/internal/identity"
)

var (
	devFormID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	devFormCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// builtinProvider starts the built-in provider on its own loopback server,
// on the harness clock, for the harness gateway's callback; the provider
// config asks for scopes the way the configuration does.
func builtinProvider(h *harness, scopes []string) ProviderConfig {
	h.t.Helper()
	srv := httptest.NewServer(nil)
	h.t.Cleanup(srv.Close)
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		h.t.Fatal(err)
	}
	issuer := srv.URL + "/.sekisho/dev/dev"
	dev, err := devidp.New(h.t.Context(), issuer,
		devidp.Config{Users: []devidp.User{{Email: "dana@example.com", PasswordHash: string(hash)}}},
		[]devidp.Client{{ID: "sekisho", Secret: "dev-secret", RedirectURIs: []string{"http://" + h.gw.Listener.Addr().String() + "/.sekisho/callback"}}},
		// ID tokens are stamped by the real clock; keep them valid while
		// the test moves the shared clock on by hours.
		devidp.Options{Now: h.clock.Now, AccessTokenTTL: 5 * time.Minute, IDTokenTTL: 24 * time.Hour})
	if err != nil {
		h.t.Fatal(err)
	}
	srv.Config.Handler = dev.Handler()
	return ProviderConfig{
		Name: "dev", Issuer: dev.Issuer(), ClientID: "sekisho", ClientSecret: "dev-secret",
		Scopes: devidp.WithOfflineAccess(scopes),
		Claims: identity.ClaimsConfig{Username: "email"},
	}
}

// loginBuiltin signs b in at the built-in provider and returns the page
// the login lands on.
func loginBuiltin(h *harness, b *browser, path string) (*http.Response, string) {
	h.t.Helper()
	gwHost := h.gw.Listener.Addr().String()
	resp, body := do(h.t, b.stopAt(gwHost), http.MethodGet, h.gw.URL+path, nil)
	id, csrf := devFormID.FindStringSubmatch(body), devFormCSRF.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || id == nil || csrf == nil {
		h.t.Fatalf("built-in login form: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	form := url.Values{"id": {id[1]}, "csrf": {csrf[1]}, "email": {"dana@example.com"}, "password": {"pw"}}
	return do(h.t, b.Client, http.MethodPost, resp.Request.URL.String(), form)
}

// TestBuiltinProviderSessionOutlivesAccessToken: a session signed in
// through the built-in provider has a refresh token, so it keeps working
// long past the provider's 5-minute access tokens, up to the session
// lifetime.
func TestBuiltinProviderSessionOutlivesAccessToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scopes []string
	}{
		{"default scopes", nil},
		{"configured scopes without offline_access", []string{"openid", "email"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{
				providers: func(h *harness) []ProviderConfig { return []ProviderConfig{builtinProvider(h, tc.scopes)} },
				opts:      func(o *Options) { o.SessionTTL = 8 * time.Hour },
			})
			h.waitDiscovered("dev")
			b := newBrowser(t)
			resp, body := loginBuiltin(h, b, "/app")
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello dana@example.com") {
				t.Fatalf("after login: %d %q\nlogs:\n%s", resp.StatusCode, body, h.logs)
			}
			first := h.session(b)
			if first.RefreshToken == "" {
				t.Fatal("the built-in provider issued no refresh token")
			}
			// Well past the access token's lifetime, again and again.
			for step := range 6 {
				h.clock.Advance(time.Hour)
				resp, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%d h after login: %d %q, want still signed in\nlogs:\n%s", step+1, resp.StatusCode, body, h.logs)
				}
			}
			if now := h.session(b); now.AccessToken == first.AccessToken || !now.TokenExpiry.After(h.clock.Now()) {
				t.Errorf("the session's tokens were not refreshed (expiry %s, now %s)", now.TokenExpiry, h.clock.Now())
			}
			// The session lifetime still ends it.
			h.clock.Advance(3 * time.Hour)
			if resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil); resp.StatusCode != http.StatusFound {
				t.Errorf("after the session lifetime: %d, want a new login", resp.StatusCode)
			}
		})
	}
}
