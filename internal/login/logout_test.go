package login

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/time/rate"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/session/redistest"
)

func TestSignOut(t *testing.T) {
	h := newHarness(t, setup{})
	b := newBrowser(t)
	h.login(b, "/")

	// GET only asks: a link or image elsewhere cannot sign the user out.
	resp, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/sign_out", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `method="post"`) {
		t.Fatalf("GET sign_out: %d %q, want a confirmation form", resp.StatusCode, body)
	}
	if _, cleared := sessionCookieSet(resp); cleared {
		t.Fatal("GET sign_out cleared the session")
	}
	confirmPage := resp
	// A cross-site POST is refused. Without Origin, a Referer must be
	// this origin (scheme, host and port); with none of the three headers
	// (a non-browser client) the POST is accepted.
	gwu := mustParse(t, h.gw.URL)
	for _, tc := range []struct {
		hdr  []string
		want int
	}{
		{[]string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{[]string{"Origin", "null"}, http.StatusForbidden},
		{[]string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{[]string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{[]string{"Referer", "http://evil.example/page"}, http.StatusForbidden},
		{[]string{"Referer", "https://" + gwu.Host + "/.sekisho/sign_out"}, http.StatusForbidden},
		{[]string{"Referer", "http://" + gwu.Hostname() + ":1/.sekisho/sign_out"}, http.StatusForbidden},
		{[]string{"Referer", "not a url"}, http.StatusForbidden},
		{[]string{"Origin", "http://evil.example", "Referer", h.gw.URL + "/.sekisho/sign_out"}, http.StatusForbidden},
		{[]string{"Referer", h.gw.URL + "/.sekisho/sign_out"}, http.StatusSeeOther},
		{[]string{"Referer", h.gw.URL + "/app?x=1"}, http.StatusSeeOther},
		{nil, http.StatusSeeOther},
	} {
		resp, body = do(t, b.noFollow(), http.MethodPost, h.gw.URL+"/.sekisho/sign_out", url.Values{}, tc.hdr...)
		if resp.StatusCode != tc.want {
			t.Errorf("POST sign_out with %q = %d, want %d", tc.hdr, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusForbidden && !strings.Contains(body, "Sign-out must be confirmed on this site.") {
			t.Errorf("POST sign_out with %q: body lacks the confirm message", tc.hdr)
		}
		if _, cleared := sessionCookieSet(resp); cleared != (tc.want == http.StatusSeeOther) {
			t.Errorf("POST sign_out with %q: session cookie cleared %v", tc.hdr, cleared)
		}
		if tc.want == http.StatusSeeOther {
			h.login(b, "/")
		}
	}
	sess := h.session(b)
	if resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/userinfo", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("still signed in after refused sign-outs? userinfo %d", resp.StatusCode)
	}

	// The confirmation page must not make browsers send "Origin: null" on
	// its own form (Referrer-Policy: no-referrer does).
	if rp := confirmPage.Header.Get("Referrer-Policy"); rp == "no-referrer" {
		t.Errorf("sign-out page Referrer-Policy %q makes the browser's own POST look cross-origin", rp)
	}
	resp, _ = do(t, b.noFollow(), http.MethodPost, h.gw.URL+"/.sekisho/sign_out", url.Values{}, "Origin", h.gw.URL)
	if _, cleared := sessionCookieSet(resp); resp.StatusCode != http.StatusSeeOther || !cleared {
		t.Fatalf("POST sign_out: %d, cookie cleared %v", resp.StatusCode, cleared)
	}
	end := mustParse(t, resp.Header.Get("Location"))
	q := end.Query()
	if !strings.HasPrefix(end.String(), h.issuer+"/end_session?") || q.Get("id_token_hint") != sess.IDToken ||
		q.Get("post_logout_redirect_uri") != h.gw.URL+"/.sekisho/signed_out" || q.Get("client_id") != testClientID {
		t.Fatalf("sign-out redirects to %q, want the provider's end_session with id_token_hint and post_logout_redirect_uri", end)
	}
	// The real OP accepts the hint and the registered post-logout URI.
	resp, body = do(t, b.Client, http.MethodGet, end.String(), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You have been signed out") {
		t.Fatalf("after end_session: %d at %s: %q", resp.StatusCode, resp.Request.URL, body)
	}
	if resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/userinfo", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo after sign-out: %d, want 401", resp.StatusCode)
	}
	h.assertNotLogged(sess.IDToken)
}

func TestSignOutWithoutEndSession(t *testing.T) {
	noEndSession := rewriteJSON("/.well-known/openid-configuration", func(_ *http.Request, m map[string]any) {
		delete(m, "end_session_endpoint")
	})
	for _, tc := range []struct {
		name, postLogout, want string
	}{
		{"default", "", "/.sekisho/signed_out"},
		{"allowed domain", "https://www.partner.org/bye", "https://www.partner.org/bye"},
		{"path", "/goodbye", "/goodbye"},
		{"disallowed domain falls back", "https://evil.example/bye", "/.sekisho/signed_out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{opMiddleware: noEndSession, opts: func(o *Options) {
				o.PostLogoutRedirect = tc.postLogout
				o.AllowedRedirectDomains = []string{"partner.org"}
			}})
			b := newBrowser(t)
			h.login(b, "/")
			resp, _ := do(t, b.noFollow(), http.MethodPost, h.gw.URL+"/.sekisho/sign_out", url.Values{})
			want := tc.want
			if strings.HasPrefix(want, "/") {
				want = h.gw.URL + want
			}
			if _, cleared := sessionCookieSet(resp); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want || !cleared {
				t.Errorf("sign-out: %d to %q (cleared %v), want 303 to %q", resp.StatusCode, resp.Header.Get("Location"), cleared, want)
			}
		})
	}
}

// redisStore is the real Redis session store on a private redis-server
// (the test is skipped when redis-server is not installed).
func redisStore(srv **redistest.Server) func(*testing.T, *session.Codec, func() time.Time) session.Store {
	return func(t *testing.T, c *session.Codec, now func() time.Time) session.Store {
		*srv = redistest.Start(t)
		st, err := session.NewRedisStore(t.Context(), (*srv).URL(), c, session.StoreOptions{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
}

func TestStoreUnavailable(t *testing.T) {
	var srv *redistest.Server
	h := newHarness(t, setup{store: redisStore(&srv)})
	b := newBrowser(t)
	h.login(b, "/")
	srv.Stop()
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/app"},
		{http.MethodGet, "/.sekisho/userinfo"},
		{http.MethodPost, "/.sekisho/sign_out"},
	} {
		resp, body := do(t, b.noFollow(), tc.method, h.gw.URL+tc.path, url.Values{})
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s with Redis down: %d %q, want 503", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// logoutClaims is a valid logout token's claims for the test OP.
func (h *harness) logoutClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":    h.issuer,
		"aud":    []string{testClientID},
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    rand.Text(),
		"sub":    "alice-id",
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
}

// signLogout signs claims with the test OP's own signing key (what the OP
// would send), or with key when it is not nil.
func (h *harness) signLogout(claims map[string]any, key *rsa.PrivateKey) string {
	h.t.Helper()
	sk, err := h.opStore.SigningKey(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	var k any = sk.Key()
	if key != nil {
		k = key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: sk.SignatureAlgorithm(), Key: k},
		(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", sk.ID()))
	if err != nil {
		h.t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func postLogout(t *testing.T, h *harness, form url.Values) (*http.Response, string) {
	t.Helper()
	return do(t, http.DefaultClient, http.MethodPost, h.gw.URL+"/.sekisho/backchannel_logout", form)
}

// sessionWithSID saves a session carrying an OIDC sid (the example OP
// does not put one in its ID tokens) and returns a browser holding it.
func (h *harness) sessionWithSID(sub, sid string) *browser {
	h.t.Helper()
	now := h.clock.Now()
	cookies, err := h.store.Save(context.Background(), httptest.NewRequest(http.MethodGet, h.gw.URL, nil), &session.Session{
		ID: rand.Text(), Provider: "corp", SID: sid, CreatedAt: now, LastSeen: now,
		Identity: &identity.Identity{Subject: sub, Username: sub, Issuer: h.issuer, Method: identity.MethodSession},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	b := newBrowser(h.t)
	b.jar.SetCookies(mustParse(h.t, h.gw.URL), cookies)
	return b
}

func signedIn(t *testing.T, h *harness, b *browser) bool {
	t.Helper()
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	return resp.StatusCode == http.StatusOK
}

func TestBackchannelLogout(t *testing.T) {
	var srv *redistest.Server
	h := newHarness(t, setup{store: redisStore(&srv)})
	alice := newBrowser(t)
	h.login(alice, "/")
	bob := h.sessionWithSID("bob-id", "op-session-7")
	if !signedIn(t, h, alice) || !signedIn(t, h, bob) {
		t.Fatal("sessions do not work before the logout")
	}

	claims := h.logoutClaims()
	delete(claims, "sub")
	claims["sid"] = "op-session-7"
	resp, body := postLogout(t, h, url.Values{"logout_token": {h.signLogout(claims, nil)}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout token with sid: %d %q (Cache-Control %q), want 200 no-store\nlogs:\n%s", resp.StatusCode, body, resp.Header.Get("Cache-Control"), h.logs)
	}
	if signedIn(t, h, bob) || !signedIn(t, h, alice) {
		t.Fatal("a sid logout must end that OP session only")
	}

	if resp, body := postLogout(t, h, url.Values{"logout_token": {h.signLogout(h.logoutClaims(), nil)}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout token with sub: %d %q", resp.StatusCode, body)
	}
	if signedIn(t, h, alice) {
		t.Error("the subject's session survived the back-channel logout")
	}
}

func TestBackchannelLogoutRejects(t *testing.T) {
	var srv *redistest.Server
	h := newHarness(t, setup{store: redisStore(&srv)})
	alice := newBrowser(t)
	h.login(alice, "/")
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	token := func(edit func(m map[string]any)) string {
		c := h.logoutClaims()
		edit(c)
		return h.signLogout(c, nil)
	}
	tests := []struct {
		name string
		form url.Values
	}{
		{"no logout_token", url.Values{}},
		{"not a JWT", url.Values{"logout_token": {"not.a.jwt"}}},
		{"nonce present", url.Values{"logout_token": {token(func(m map[string]any) { m["nonce"] = "n" })}}},
		{"wrong aud", url.Values{"logout_token": {token(func(m map[string]any) { m["aud"] = []string{"another-client"} })}}},
		{"no events", url.Values{"logout_token": {token(func(m map[string]any) { delete(m, "events") })}}},
		{"other event", url.Values{"logout_token": {token(func(m map[string]any) {
			m["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
		})}}},
		{"neither sid nor sub", url.Values{"logout_token": {token(func(m map[string]any) { delete(m, "sub") })}}},
		{"no iat", url.Values{"logout_token": {token(func(m map[string]any) { delete(m, "iat") })}}},
		{"iat in the future", url.Values{"logout_token": {token(func(m map[string]any) { m["iat"] = time.Now().Add(time.Hour).Unix() })}}},
		{"expired", url.Values{"logout_token": {token(func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() })}}},
		{"no jti", url.Values{"logout_token": {token(func(m map[string]any) { delete(m, "jti") })}}},
		{"unknown issuer", url.Values{"logout_token": {token(func(m map[string]any) { m["iss"] = "https://other.example" })}}},
		{"signed with another key", url.Values{"logout_token": {h.signLogout(h.logoutClaims(), otherKey)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := postLogout(t, h, tt.form)
			var e struct {
				Error string `json:"error"`
			}
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" ||
				resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("got %d %q (%s), want 400 with a JSON error, no-store", resp.StatusCode, body, resp.Header.Get("Content-Type"))
			}
			if !signedIn(t, h, alice) {
				t.Fatal("a bad logout token ended the session")
			}
		})
	}
}

func TestBackchannelLogoutWithCookieStore(t *testing.T) {
	h := newHarness(t, setup{})
	resp, body := postLogout(t, h, url.Values{"logout_token": {h.signLogout(h.logoutClaims(), nil)}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "logout_failed") {
		t.Errorf("logout with a store that cannot revoke: %d %q, want 400 logout_failed", resp.StatusCode, body)
	}
	if !strings.Contains(h.logs.String(), "cannot revoke") {
		t.Error("the log does not say the store cannot revoke")
	}
}

// TestCopiedCookieRefusedAfterSignOut: a session cookie copied before
// sign-out (to another browser) no longer signs anyone in afterwards, with
// either store; the copy was used once before, so a cached decode of it
// exists.
func TestCopiedCookieRefusedAfterSignOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(*testing.T, *session.Codec, func() time.Time) session.Store
	}{
		{"cookie", nil},
		{"redis", redisStore(new(*redistest.Server))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{store: tc.store})
			b := newBrowser(t)
			h.login(b, "/")
			thief := newBrowser(t)
			gw := mustParse(t, h.gw.URL)
			thief.jar.SetCookies(gw, b.jar.Cookies(gw))
			if resp, body := do(t, thief.noFollow(), http.MethodGet, h.gw.URL+"/app", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("copied cookie before sign-out: %d %q", resp.StatusCode, body)
			}
			resp, _ := do(t, b.noFollow(), http.MethodPost, h.gw.URL+"/.sekisho/sign_out", url.Values{}, "Origin", h.gw.URL)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-out: %d", resp.StatusCode)
			}
			if resp, _ := do(t, thief.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/userinfo", nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("copied cookie after sign-out: userinfo %d, want 401", resp.StatusCode)
			}
			resp, _ = do(t, thief.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, h.issuer) {
				t.Errorf("copied cookie after sign-out: /app %d to %q, want a new login", resp.StatusCode, loc)
			}
		})
	}
}

// TestBackchannelLogoutReplay: the same logout token twice — the second is
// refused (400) and does not end a session signed in since; a token the
// store could not act on is not remembered, so the provider may retry it.
func TestBackchannelLogoutReplay(t *testing.T) {
	var srv *redistest.Server
	h := newHarness(t, setup{store: redisStore(&srv)})
	alice := newBrowser(t)
	h.login(alice, "/")
	token := h.signLogout(h.logoutClaims(), nil)
	if resp, body := postLogout(t, h, url.Values{"logout_token": {token}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use: %d %q", resp.StatusCode, body)
	}
	if signedIn(t, h, alice) {
		t.Fatal("the logout did not end the session")
	}
	again := newBrowser(t)
	h.login(again, "/")
	resp, body := postLogout(t, h, url.Values{"logout_token": {token}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Fatalf("replayed token: %d %q, want 400 already used", resp.StatusCode, body)
	}
	if !signedIn(t, h, again) {
		t.Error("a replayed logout token ended a session signed in after it was used")
	}
	// A fresh token (new jti) for the same subject still works.
	if resp, body := postLogout(t, h, url.Values{"logout_token": {h.signLogout(h.logoutClaims(), nil)}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("a new token: %d %q", resp.StatusCode, body)
	}

	// Redis down: the logout fails and is not remembered; once Redis is
	// back the provider's retry of the same token is honoured.
	third := newBrowser(t)
	h.login(third, "/")
	retry := h.signLogout(h.logoutClaims(), nil)
	srv.Stop()
	if resp, body := postLogout(t, h, url.Values{"logout_token": {retry}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "logout_failed") {
		t.Fatalf("with Redis down: %d %q, want 400 logout_failed", resp.StatusCode, body)
	}
	if h.svc.logoutSeen.Len() != 2 {
		t.Errorf("replay cache holds %d tokens, want the 2 that were acted on", h.svc.logoutSeen.Len())
	}
}

func TestBackchannelLogoutTooOld(t *testing.T) {
	var srv *redistest.Server
	h := newHarness(t, setup{store: redisStore(&srv)})
	c := h.logoutClaims()
	c["iat"] = h.clock.Now().Add(-maxLogoutTokenAge - time.Minute).Unix()
	c["exp"] = h.clock.Now().Add(time.Hour).Unix()
	if resp, body := postLogout(t, h, url.Values{"logout_token": {h.signLogout(c, nil)}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a token issued 11 minutes ago: %d %q, want 400", resp.StatusCode, body)
	}
}

// TestBackchannelLogoutRateLimited: past the limit, requests are refused
// with 429 and Retry-After before the token is even parsed; the default
// limit is in place.
func TestBackchannelLogoutRateLimited(t *testing.T) {
	var srv *redistest.Server
	h := newHarness(t, setup{store: redisStore(&srv), opts: func(o *Options) { o.logoutLimit = rate.NewLimiter(0, 3) }})
	for i := range 3 {
		if resp, _ := postLogout(t, h, url.Values{"logout_token": {"garbage"}}); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("request %d within the limit: %d, want 400 (bad token)", i, resp.StatusCode)
		}
	}
	logged := strings.Count(h.logs.String(), "back-channel logout")
	resp, body := postLogout(t, h, url.Values{"logout_token": {h.signLogout(h.logoutClaims(), nil)}})
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		t.Fatalf("past the limit: %d %q (Retry-After %q), want 429 with a JSON error", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if strings.Count(h.logs.String(), "back-channel logout") != logged {
		t.Error("a request past the limit was parsed and acted on")
	}

	d := newHarness(t, setup{})
	if l := d.svc.logoutLimit; l.Limit() != logoutRate || l.Burst() != logoutBurst {
		t.Errorf("default limit %v/s burst %d, want %d/s burst %d", l.Limit(), l.Burst(), logoutRate, logoutBurst)
	}
}

// TestSignOutAcrossGateways: two gateways share one Redis (and the session
// key); a cookie copied from one to the other works there until the user
// signs out on the first, then it does not.
func TestSignOutAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	shared := func(t *testing.T, c *session.Codec, now func() time.Time) session.Store {
		st, err := session.NewRedisStore(t.Context(), srv.URL(), c, session.StoreOptions{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	a := newHarness(t, setup{store: shared})
	b := newHarness(t, setup{store: shared})
	user := newBrowser(t)
	a.login(user, "/")
	thief := newBrowser(t)
	thief.jar.SetCookies(mustParse(t, b.gw.URL), user.jar.Cookies(mustParse(t, a.gw.URL)))
	if resp, body := do(t, thief.noFollow(), http.MethodGet, b.gw.URL+"/.sekisho/userinfo", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the copied cookie on the second gateway before sign-out: %d %q", resp.StatusCode, body)
	}
	resp, _ := do(t, user.noFollow(), http.MethodPost, a.gw.URL+"/.sekisho/sign_out", url.Values{}, "Origin", a.gw.URL)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if resp, _ := do(t, thief.noFollow(), http.MethodGet, b.gw.URL+"/.sekisho/userinfo", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the copied cookie on the second gateway after sign-out: %d, want 401", resp.StatusCode)
	}
}
