package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/testutil"
)

const (
	alicePassword = "alice-correct-horse"
	bobPassword   = "bob-battery-staple"
	bobTOTP       = "JBSWY3DPEHPK3PXP"
	clientSecret  = "client-secret-value"
	issuerPath    = "/.sekisho/dev"
)

// testKey is shared: generating RSA keys per test would dominate the run time.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// minHash keeps bcrypt fast in tests; production hashes use DefaultCost.
func minHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func testUsers(t *testing.T) []User {
	t.Helper()
	return []User{
		{Email: "Alice@Example.com", Name: "Alice Liddell", PasswordHash: minHash(t, alicePassword), Groups: []string{"admin", "dev"}},
		{Email: "bob@example.com", Name: "Bob", PasswordHash: minHash(t, bobPassword), TOTPSecret: bobTOTP},
	}
}

// fixture runs the provider under its issuer path on a loopback server, a
// relying party's callback on another, and drives them with the real
// go-oidc and x/oauth2 clients plus a browser-like client with a cookie jar.
type fixture struct {
	p        *Provider
	idp      *httptest.Server
	rp       *httptest.Server
	oidc     *oidc.Provider
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	browser  *http.Client
	clock    *testutil.Clock
	logs     *testutil.SyncBuffer
	ctx      context.Context
}

type fixtureOption func(*Options)

func newFixture(t *testing.T, fopts ...fixtureOption) *fixture {
	t.Helper()
	f := &fixture{clock: testutil.NewClock(time.Now()), logs: &testutil.SyncBuffer{}, ctx: t.Context()}
	mux := http.NewServeMux()
	f.idp = httptest.NewServer(mux)
	t.Cleanup(f.idp.Close)
	f.rp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "relying party "+r.URL.Path)
	}))
	t.Cleanup(f.rp.Close)

	opts := Options{
		Logger:     slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SigningKey: testKey(),
		Now:        f.clock.Now,
	}
	for _, o := range fopts {
		o(&opts)
	}
	clients := []Client{{
		ID: "sekisho", Secret: clientSecret,
		RedirectURIs:           []string{f.rp.URL + "/callback"},
		PostLogoutRedirectURIs: []string{f.rp.URL + "/signed-out"},
	}, KubectlClient()}
	var err error
	f.p, err = New(t.Context(), f.idp.URL+issuerPath, Config{Users: testUsers(t)}, clients, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux.Handle(issuerPath+"/", f.p.Handler())

	f.oidc, err = oidc.NewProvider(t.Context(), f.p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	f.oauth = oauth2.Config{
		ClientID: "sekisho", ClientSecret: clientSecret,
		Endpoint:    f.oidc.Endpoint(),
		RedirectURL: f.rp.URL + "/callback",
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess},
	}
	f.verifier = f.oidc.Verifier(&oidc.Config{ClientID: "sekisho"})
	jar, _ := cookiejar.New(nil)
	f.browser = &http.Client{Jar: jar}
	return f
}

// login is an authorization request in progress, stopped at the login form.
type login struct {
	form         *url.URL
	id, csrf     string
	verifier     string
	state, nonce string
	status       int
	body         string
}

var (
	hiddenID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// startLogin sends the browser to the authorization endpoint with PKCE S256
// and a nonce, and returns the login form it lands on.
func (f *fixture) startLogin(t *testing.T, extra ...oauth2.AuthCodeOption) *login {
	t.Helper()
	l := &login{verifier: oauth2.GenerateVerifier(), state: rand.Text(), nonce: rand.Text()}
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(l.verifier), oidc.Nonce(l.nonce)}, extra...)
	resp, body := f.get(t, f.browser, f.oauth.AuthCodeURL(l.state, opts...))
	l.form, l.status, l.body = resp.Request.URL, resp.StatusCode, body
	if m := hiddenID.FindStringSubmatch(body); m != nil {
		l.id = m[1]
	}
	if m := hiddenCSRF.FindStringSubmatch(body); m != nil {
		l.csrf = m[1]
	}
	return l
}

func (f *fixture) mustStartLogin(t *testing.T) *login {
	t.Helper()
	l := f.startLogin(t)
	if l.status != http.StatusOK || l.id == "" || l.csrf == "" {
		t.Fatalf("login form: status %d at %s, body:\n%s", l.status, l.form, l.body)
	}
	return l
}

// submit posts the login form as the browser would and follows redirects.
func (f *fixture) submit(t *testing.T, l *login, email, password, otp string) (*http.Response, string) {
	t.Helper()
	form := url.Values{"id": {l.id}, "csrf": {l.csrf}, "email": {email}, "password": {password}, "otp": {otp}}
	return f.post(t, f.browser, l.form.String(), form)
}

func (f *fixture) get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp, readBody(t, resp)
}

func (f *fixture) post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return resp, readBody(t, resp)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// code extracts the authorization code from the relying party's callback
// the browser ended on, checking the state came back.
func (f *fixture) code(t *testing.T, l *login, resp *http.Response, body string) string {
	t.Helper()
	u := resp.Request.URL
	if !strings.HasPrefix(u.String(), f.rp.URL+"/callback") {
		t.Fatalf("browser ended at %s (status %d), not the callback; body:\n%s", u, resp.StatusCode, body)
	}
	if got := u.Query().Get("state"); got != l.state {
		t.Fatalf("state = %q, want %q", got, l.state)
	}
	c := u.Query().Get("code")
	if c == "" {
		t.Fatalf("no code in callback %s", u)
	}
	return c
}

// loginAs runs the browser part of the flow and returns the code.
func (f *fixture) loginAs(t *testing.T, email, password, otp string) (*login, string) {
	t.Helper()
	l := f.mustStartLogin(t)
	resp, body := f.submit(t, l, email, password, otp)
	return l, f.code(t, l, resp, body)
}

// exchange redeems a code and verifies the ID token with go-oidc, nonce included.
func (f *fixture) exchange(t *testing.T, l *login, code string) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	tok, err := f.oauth.Exchange(f.ctx, code, oauth2.VerifierOption(l.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	idt := f.verifyIDToken(t, tok)
	if idt.Nonce != l.nonce {
		t.Fatalf("nonce = %q, want %q", idt.Nonce, l.nonce)
	}
	return tok, idt
}

func (f *fixture) verifyIDToken(t *testing.T, tok *oauth2.Token) *oidc.IDToken {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("token response has no id_token")
	}
	idt, err := f.verifier.Verify(f.ctx, raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	return idt
}

// refresh uses the refresh token once, without the token source's caching.
func (f *fixture) refresh(refreshToken string) (*oauth2.Token, error) {
	return f.oauth.TokenSource(f.ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// wantOAuthError asserts err is a token endpoint error with the given code.
func wantOAuthError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want an OAuth error %q", err, code)
	}
	if re.ErrorCode != code {
		t.Fatalf("error code = %q (%s), want %q", re.ErrorCode, re.ErrorDescription, code)
	}
}

type idClaims struct {
	Sub           string   `json:"sub"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Name          string   `json:"name"`
	Groups        []string `json:"groups"`
	AMR           []string `json:"amr"`
	SID           string   `json:"sid"`
	AuthTime      int64    `json:"auth_time"`
}

func claimsOf(t *testing.T, idt *oidc.IDToken) idClaims {
	t.Helper()
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
