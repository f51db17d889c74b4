package login

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

func TestLoginFlow(t *testing.T) {
	h := newHarness(t, setup{providers: func(h *harness) []ProviderConfig {
		p := h.provider("corp")
		p.AuthParams = map[string]string{"login_hint": "alice"}
		p.Prefix = identity.PrefixConfig{Groups: "corp:"}
		return []ProviderConfig{p}
	}})
	b := newBrowser(t)

	auth := h.start(b, "/app/page?x=1&y=two")
	q := auth.Query()
	for param, want := range map[string]string{
		"client_id":             testClientID,
		"response_type":         "code",
		"code_challenge_method": "S256",
		"redirect_uri":          h.gw.URL + "/.sekisho/callback",
		"scope":                 "openid email profile offline_access",
		"login_hint":            "alice",
	} {
		if got := q.Get(param); got != want {
			t.Errorf("authorization request %s = %q, want %q", param, got, want)
		}
	}
	for _, param := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(param)) < 22 {
			t.Errorf("authorization request %s = %q, want a random value", param, q.Get(param))
		}
	}
	if q.Get("state") == q.Get("nonce") {
		t.Error("state and nonce are the same value")
	}

	// The state cookie: sealed, HttpOnly, Lax, scoped to the callback, 10 minutes.
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app/other", nil)
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, stateCookiePrefix) {
			sc = c
		}
	}
	if sc == nil {
		t.Fatal("no login state cookie set")
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/.sekisho/callback" || sc.MaxAge != 600 {
		t.Errorf("state cookie = %+v, want HttpOnly, SameSite=Lax, Path=/.sekisho/callback, Max-Age=600", sc)
	}
	if strings.Contains(sc.Value, q.Get("state")) {
		t.Error("the state cookie shows the state in clear")
	}

	cb := h.authorize(b, auth.String())
	resp, body := do(t, b.Client, http.MethodGet, cb.String(), nil)
	if resp.StatusCode != http.StatusOK || body != "hello alice@example.com at /app/page?x=1&y=two" {
		t.Fatalf("after login: %d %q, want the original page\nlogs:\n%s", resp.StatusCode, body, h.logs)
	}
	// The callback cleared its state cookie; the second tab's login is still pending.
	var left []string
	for _, c := range b.jar.Cookies(cb) {
		if strings.HasPrefix(c.Name, stateCookiePrefix) {
			left = append(left, c.Name)
		}
	}
	if len(left) != 1 || left[0] != sc.Name {
		t.Errorf("state cookies after the callback = %v, want only the other tab's %s", left, sc.Name)
	}

	sess := h.session(b)
	id := sess.Identity
	if id.Username != "alice@example.com" || id.Subject != "alice-id" || id.Issuer != h.issuer ||
		id.Method != identity.MethodSession || !id.EmailVerified || id.Claims["given_name"] != "Alice" {
		t.Errorf("identity = %+v", id)
	}
	if sess.Provider != "corp" || sess.IDToken == "" || sess.AccessToken == "" || sess.RefreshToken == "" {
		t.Errorf("session is missing provider or tokens: provider %q", sess.Provider)
	}
	if d := sess.TokenExpiry.Sub(h.clock.Now()); d < 4*time.Minute || d > 5*time.Minute {
		t.Errorf("token expiry in %s, want the OP's 5 minute access token lifetime", d)
	}

	// userinfo shows the identity the gateway sees, never a token.
	resp, body = do(t, b.Client, http.MethodGet, h.gw.URL+"/.sekisho/userinfo", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
	var got identity.Identity
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Username != "alice@example.com" || got.Method != identity.MethodSession {
		t.Errorf("userinfo = %s (%v)", body, err)
	}
	for _, secret := range []string{sess.IDToken, sess.AccessToken, sess.RefreshToken, cb.Query().Get("code")} {
		if secret == "" {
			t.Error("the login left a token or the code empty")
		} else if strings.Contains(body, secret) {
			t.Errorf("userinfo leaks a token: %s", body)
		}
	}
	h.assertNotLogged(sess.IDToken, sess.AccessToken, sess.RefreshToken, cb.Query().Get("code"), q.Get("state"),
		b.cookie(h.gw.URL, "_sekisho").Value)
}

func TestLoginReplacesSession(t *testing.T) {
	h := newHarness(t, setup{})
	b := newBrowser(t)
	// A cookie planted before login (fixation) is replaced, not adopted.
	gw, _ := url.Parse(h.gw.URL)
	b.jar.SetCookies(gw, []*http.Cookie{{Name: "_sekisho", Value: "planted", Path: "/"}})
	h.login(b, "/")
	first := h.session(b)

	h.login(b, "/.sekisho/start?rd=/again")
	second := h.session(b)
	if first.ID == second.ID || first.ID == "" {
		t.Errorf("second login kept session ID %q; every login must get a new one", first.ID)
	}
}

func TestCallbackRejects(t *testing.T) {
	h := newHarness(t, setup{})

	// pending starts a login and returns the browser and callback URL.
	pending := func(t *testing.T) (*browser, *url.URL) {
		b := newBrowser(t)
		return b, h.authorize(b, h.start(b, "/app").String())
	}
	stateCookie := func(b *browser, cb *url.URL) *http.Cookie {
		return b.cookie(cb.String(), stateCookieName(cb.Query().Get("state")))
	}

	tests := []struct {
		name    string
		prepare func(t *testing.T) (*browser, string)
		status  int
		want    string
	}{
		{
			name: "missing state",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				q := cb.Query()
				q.Del("state")
				cb.RawQuery = q.Encode()
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "has no state",
		},
		{
			name: "state from no login of this browser",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				q := cb.Query()
				q.Set("state", "forged-state-value-1234")
				cb.RawQuery = q.Encode()
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "not started in this browser",
		},
		{
			name: "missing state cookie",
			prepare: func(t *testing.T) (*browser, string) {
				_, cb := pending(t)
				return newBrowser(t), cb.String()
			},
			status: http.StatusBadRequest, want: "not started in this browser",
		},
		{
			name: "state cookie of another login under this state's name",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				other, otherCB := pending(t)
				ck := stateCookie(other, otherCB)
				ck.Name = stateCookieName(cb.Query().Get("state"))
				ck.Path = "/.sekisho/callback"
				b.jar.SetCookies(cb, []*http.Cookie{ck})
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "state is not valid",
		},
		{
			name: "tampered state cookie",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				ck := stateCookie(b, cb)
				v := []byte(ck.Value)
				v[len(v)/2] ^= 1
				ck.Value = string(v)
				ck.Path = "/.sekisho/callback"
				b.jar.SetCookies(cb, []*http.Cookie{ck})
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "state is not valid",
		},
		{
			name: "expired state cookie",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				h.clock.Advance(stateTTL + time.Second)
				t.Cleanup(func() { h.clock.Advance(-stateTTL - time.Second) })
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "longer than 10 minutes",
		},
		{
			name: "missing code",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				q := cb.Query()
				q.Del("code")
				cb.RawQuery = q.Encode()
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "no authorization code",
		},
		{
			name: "response from another issuer (mix-up)",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				q := cb.Query()
				q.Set("iss", "https://evil.example")
				cb.RawQuery = q.Encode()
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "another identity provider",
		},
		{
			name: "replayed code",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				ck := stateCookie(b, cb)
				if resp, body := do(t, b.Client, http.MethodGet, cb.String(), nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("first use of the code: %d %s", resp.StatusCode, body)
				}
				ck.Path = "/.sekisho/callback"
				b.jar.SetCookies(cb, []*http.Cookie{ck}) // an attacker replaying everything
				return b, cb.String()
			},
			status: http.StatusBadRequest, want: "code was not accepted",
		},
		{
			name: "wrong nonce",
			prepare: func(t *testing.T) (*browser, string) {
				b := newBrowser(t)
				auth := h.start(b, "/app")
				q := auth.Query()
				q.Set("nonce", "a-nonce-this-login-never-made")
				auth.RawQuery = q.Encode()
				return b, h.authorize(b, auth.String()).String()
			},
			status: http.StatusUnauthorized, want: "does not belong to this sign-in",
		},
		{
			name: "provider says access_denied",
			prepare: func(t *testing.T) (*browser, string) {
				b, cb := pending(t)
				cb.RawQuery = url.Values{"state": {cb.Query().Get("state")}, "error": {"access_denied"}}.Encode()
				return b, cb.String()
			},
			status: http.StatusForbidden, want: "did not sign you in (access_denied)",
		},
		{
			name: "provider error with a crafted code and description",
			prepare: func(t *testing.T) (*browser, string) {
				b := newBrowser(t)
				return b, h.gw.URL + "/.sekisho/callback?" + url.Values{
					"error": {"<b>call 555-0100</b>"}, "error_description": {"Your account is locked, call 555-0100"},
				}.Encode()
			},
			status: http.StatusBadGateway, want: "(unknown_error)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, target := tt.prepare(t)
			resp, body := do(t, b.noFollow(), http.MethodGet, target, nil)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("status %d, body %q; want %d containing %q\nlogs:\n%s", resp.StatusCode, body, tt.status, tt.want, h.logs)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("a failed callback redirects to %q; it must show a page (no loops)", loc)
			}
			if !strings.Contains(body, `href="/.sekisho/sign_in`) {
				t.Error("the error page offers no way to try again")
			}
			for _, c := range resp.Cookies() {
				if c.Name == "_sekisho" && c.MaxAge >= 0 {
					t.Error("a failed callback set a session cookie")
				}
			}
			u, _ := url.Parse(target)
			for _, secret := range []string{u.Query().Get("code"), u.Query().Get("state"), "555-0100"} {
				if secret != "" && strings.Contains(body, secret) {
					t.Errorf("the error page repeats %q", secret)
				}
			}
		})
	}
}

func TestCallbackRejectsMismatchedAccessToken(t *testing.T) {
	// The OP's token response is altered in transit: the access token no
	// longer matches the ID token's at_hash.
	h := newHarness(t, setup{opMiddleware: rewriteJSON("/oauth/token", func(_ *http.Request, m map[string]any) {
		m["access_token"] = "substituted-access-token"
	})})
	b := newBrowser(t)
	cb := h.authorize(b, h.start(b, "/").String())
	resp, body := do(t, b.noFollow(), http.MethodGet, cb.String(), nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "access token does not match") {
		t.Fatalf("status %d body %q, want 401 about the access token", resp.StatusCode, body)
	}
}

func TestCallbackRejectsUserinfoForAnotherSubject(t *testing.T) {
	h := newHarness(t, setup{opMiddleware: rewriteJSON("/userinfo", func(_ *http.Request, m map[string]any) {
		m["sub"] = "mallory"
	})})
	b := newBrowser(t)
	cb := h.authorize(b, h.start(b, "/").String())
	resp, body := do(t, b.noFollow(), http.MethodGet, cb.String(), nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "user information could not be read") {
		t.Fatalf("status %d body %q, want 502", resp.StatusCode, body)
	}
	if !strings.Contains(h.logs.String(), "subject does not match") {
		t.Errorf("the log does not say why; logs:\n%s", h.logs)
	}
}

func TestCallbackAppliesClaimRules(t *testing.T) {
	h := newHarness(t, setup{providers: func(h *harness) []ProviderConfig {
		p := h.provider("corp")
		p.Rules = []identity.Rule{{Expr: `claims.email.endsWith("@corp.example")`, Message: "only corp.example accounts"}}
		return []ProviderConfig{p}
	}})
	b := newBrowser(t)
	cb := h.authorize(b, h.start(b, "/").String())
	resp, body := do(t, b.noFollow(), http.MethodGet, cb.String(), nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "only corp.example accounts") {
		t.Fatalf("status %d body %q, want 403 naming the rule", resp.StatusCode, body)
	}
}

func TestSignInPageWithSeveralProviders(t *testing.T) {
	h := newHarness(t, setup{providers: func(h *harness) []ProviderConfig {
		down := h.provider("down")
		down.Issuer = "http://127.0.0.1:1" // nothing listens there
		return []ProviderConfig{h.provider("corp"), down}
	}})
	b := newBrowser(t)

	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app?q=1", nil)
	want := "/.sekisho/sign_in?rd=" + url.QueryEscape(h.gw.URL+"/app?q=1")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Fatalf("StartLogin: %d to %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, body := do(t, b.Client, http.MethodGet, h.gw.URL+want, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Sign in with corp") || !strings.Contains(body, "Sign in with down") {
		t.Fatalf("sign-in page: %d %s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("sign-in page CSP = %q", csp)
	}

	// The unreachable provider answers 503 with a clear page; the other works.
	resp, body = do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/start?provider=down", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be reached") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("start with an undiscovered provider: %d %q, want 503 with Retry-After", resp.StatusCode, body)
	}
	resp, body = do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/start?provider=nope", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Unknown sign-in provider") {
		t.Errorf("start with an unknown provider: %d %q", resp.StatusCode, body)
	}
	rd := url.QueryEscape(h.gw.URL + "/app?q=1")
	resp, _ = do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/start?provider=corp&rd="+rd, nil)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), h.issuer) {
		t.Fatalf("start corp: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cb := h.authorize(b, resp.Header.Get("Location"))
	_, body = do(t, b.Client, http.MethodGet, cb.String(), nil)
	if body != "hello alice@example.com at /app?q=1" {
		t.Errorf("after login via the sign-in page: %q", body)
	}
}

func TestDiscoveryRetriesUntilProviderIsUp(t *testing.T) {
	up := make(chan struct{})
	refused := make(chan struct{}, 1)
	h := newHarness(t, setup{
		providers: func(h *harness) []ProviderConfig { return []ProviderConfig{h.provider("late")} },
		opMiddleware: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-up:
					next.ServeHTTP(w, r)
				default:
					http.Error(w, "starting", http.StatusServiceUnavailable)
					select {
					case refused <- struct{}{}:
					default:
					}
				}
			})
		},
		opts:          func(o *Options) { o.retryMin = time.Millisecond },
		lateDiscovery: true,
	})
	b := newBrowser(t)
	resp, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "late cannot be reached") {
		t.Fatalf("login while the provider is down: %d %q, want 503", resp.StatusCode, body)
	}
	<-refused // discovery has failed at least once
	if h.svc.Ready() {
		t.Fatal("Ready before the provider was discovered")
	}
	select {
	case <-h.svc.Discovered():
		t.Fatal("Discovered is closed before the provider was discovered")
	default:
	}
	close(up)
	h.waitDiscovered("late")
	if !h.svc.Ready() {
		t.Fatal("not Ready after discovery")
	}
	select {
	case <-h.svc.Discovered():
	case <-time.After(5 * time.Second):
		t.Fatal("Discovered is not closed after every provider was discovered")
	}
	h.login(b, "/app")
	if !strings.Contains(h.logs.String(), "OIDC discovery failed") {
		t.Error("the failed discovery was not logged")
	}
}

func TestFixedRedirectURLOnAnotherHost(t *testing.T) {
	var appHost string
	h := newHarness(t, setup{
		providers: func(h *harness) []ProviderConfig {
			appHost = h.gw.Listener.Addr().String()
			p := h.provider("corp")
			p.RedirectURL = h.localhostCallback
			return []ProviderConfig{p}
		},
		// The app's origin is on a non-default port: the entry must name it.
		opts: func(o *Options) { o.AllowedRedirectDomains = []string{appHost} },
	})
	b := newBrowser(t)
	// The app is on 127.0.0.1; the registered callback on localhost: the
	// login starts on localhost so its state cookie is where the callback is.
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/app", nil)
	hop, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || hop.Hostname() != "localhost" || hop.Path != "/.sekisho/start" ||
		hop.Query().Get("rd") != h.gw.URL+"/app" {
		t.Fatalf("StartLogin: %d to %q, want a hop to localhost's start", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = do(t, b.noFollow(), http.MethodGet, hop.String(), nil)
	auth, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || auth.Query().Get("redirect_uri") != h.localhostCallback {
		t.Fatalf("start on localhost: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !slices.ContainsFunc(resp.Cookies(), func(c *http.Cookie) bool { return strings.HasPrefix(c.Name, stateCookiePrefix) }) {
		t.Error("no state cookie set on the callback host")
	}
}

func TestStartRejectsOpenRedirects(t *testing.T) {
	h := newHarness(t, setup{})
	b := newBrowser(t)
	for _, tc := range openRedirects {
		if tc == "" {
			continue // an empty rd means "not given"
		}
		for _, ep := range []string{"/.sekisho/start", "/.sekisho/sign_in"} {
			target := h.gw.URL + ep + "?rd=" + url.QueryEscape(tc)
			resp, body := do(t, b.noFollow(), http.MethodGet, target, nil)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not allowed") {
				t.Errorf("%s rd=%q: status %d, want 400", ep, tc, resp.StatusCode)
			}
		}
	}
	resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/start?rd="+url.QueryEscape("/ok?x=1"), nil)
	if resp.StatusCode != http.StatusFound {
		t.Errorf("start with a same-host path: %d, want 302", resp.StatusCode)
	}
}

// TestReturnToAnotherPortRefused: a return target on the gateway's own host
// name but another port (another service, another origin) is refused at
// every entry point, and followed only when an allowed domain names that
// port.
func TestReturnToAnotherPortRefused(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "other service")
	}))
	t.Cleanup(other.Close)
	otherHost := other.Listener.Addr().String() // 127.0.0.1:<another port>
	rd := other.URL + "/steal?x=1"

	for _, tc := range []struct {
		name    string
		allowed []string
		want    int
	}{
		{"own host name only", nil, http.StatusBadRequest},
		{"allowed domain without port", []string{"127.0.0.1"}, http.StatusBadRequest},
		{"allowed domain naming the port", []string{otherHost}, http.StatusFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{opts: func(o *Options) { o.AllowedRedirectDomains = tc.allowed }})
			b := newBrowser(t)
			for _, ep := range []string{"/.sekisho/start", "/.sekisho/sign_in"} {
				resp, body := do(t, b.noFollow(), http.MethodGet, h.gw.URL+ep+"?rd="+url.QueryEscape(rd), nil)
				want := tc.want
				if ep == "/.sekisho/sign_in" && want == http.StatusFound {
					want = http.StatusOK // the page listing providers
				}
				if resp.StatusCode != want {
					t.Errorf("%s rd=%s: status %d, want %d: %s", ep, rd, resp.StatusCode, want, body)
				}
			}
			if _, ok := h.svc.LoginURL(rd, h.gw.Listener.Addr().String()); ok != (tc.want == http.StatusFound) {
				t.Errorf("LoginURL(%s) ok = %v", rd, ok)
			}
			if tc.want != http.StatusFound {
				return
			}
			// Allowed: the whole login lands on the named port.
			resp, _ := do(t, b.noFollow(), http.MethodGet, h.gw.URL+"/.sekisho/start?rd="+url.QueryEscape(rd), nil)
			cb := h.authorize(b, resp.Header.Get("Location"))
			resp, _ = do(t, b.noFollow(), http.MethodGet, cb.String(), nil)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != rd {
				t.Errorf("callback: %d to %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), rd)
			}
		})
	}
}

// TestCallbackRechecksReturnOrigin: a return target sealed in the state
// cookie is checked again against the callback's origin, so a state made
// for one port cannot send the browser to another.
func TestCallbackRechecksReturnOrigin(t *testing.T) {
	h := newHarness(t, setup{})
	b := newBrowser(t)
	auth := h.start(b, "/app")
	// Reseal the browser's state cookie with a return target on another port.
	u := mustParse(t, h.gw.URL+"/.sekisho/callback")
	var replaced bool
	for _, c := range b.jar.Cookies(u) {
		if !strings.HasPrefix(c.Name, stateCookiePrefix) {
			continue
		}
		plain, err := h.svc.codec.Open(c.Value)
		if err != nil {
			t.Fatal(err)
		}
		var st loginState
		if err := json.Unmarshal(plain, &st); err != nil {
			t.Fatal(err)
		}
		st.Return = "http://" + u.Hostname() + ":1/x"
		plain, _ = json.Marshal(&st)
		v, err := h.svc.codec.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		b.jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: v, Path: "/.sekisho/callback"}})
		replaced = true
	}
	if !replaced {
		t.Fatal("no state cookie")
	}
	cb := h.authorize(b, auth.String())
	resp, body := do(t, b.noFollow(), http.MethodGet, cb.String(), nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" {
		t.Fatalf("callback: %d to %q, want 302 to / : %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

func TestEndpointsRouting(t *testing.T) {
	h := newHarness(t, setup{})
	tests := []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/.sekisho/nope", http.StatusNotFound},
		{http.MethodPost, "/.sekisho/callback", http.StatusMethodNotAllowed},
		{http.MethodGet, "/.sekisho/backchannel_logout", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/.sekisho/sign_out", http.StatusMethodNotAllowed},
		{http.MethodGet, "/.sekisho/signed_out", http.StatusOK},
		{http.MethodGet, "/.sekisho/userinfo", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		resp, _ := do(t, newBrowser(t).noFollow(), tt.method, h.gw.URL+tt.path, nil)
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tt.method, tt.path, resp.Header.Get("Cache-Control"))
		}
	}
	for path, want := range map[string]bool{"/.sekisho": true, "/.sekisho/x": true, "/.sekishox": false, "/app": false} {
		if h.svc.Owns(path) != want {
			t.Errorf("Owns(%q) = %v, want %v", path, !want, want)
		}
	}
}

func TestAuthenticateWithoutSession(t *testing.T) {
	h := newHarness(t, setup{})
	req, _ := http.NewRequest(http.MethodGet, h.gw.URL, nil)
	if _, _, err := h.svc.Authenticate(req.Context(), req); err != session.ErrNoSession {
		t.Errorf("Authenticate without cookies = %v, want ErrNoSession", err)
	}
}
