package devidp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
)

func TestAuthorizationCodeFlow(t *testing.T) {
	f := newFixture(t)
	var disc struct {
		Issuer           string   `json:"issuer"`
		CodeMethods      []string `json:"code_challenge_methods_supported"`
		Claims           []string `json:"claims_supported"`
		Scopes           []string `json:"scopes_supported"`
		EndSession       string   `json:"end_session_endpoint"`
		GrantTypes       []string `json:"grant_types_supported"`
		SigningAlgorithm []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := f.oidc.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	if disc.Issuer != f.idp.URL+issuerPath || !slices.Contains(disc.CodeMethods, "S256") ||
		!slices.Contains(disc.Claims, "groups") || !slices.Contains(disc.Claims, "sid") ||
		!slices.Contains(disc.Scopes, "offline_access") || !slices.Contains(disc.GrantTypes, "refresh_token") ||
		!strings.HasPrefix(disc.EndSession, f.p.Issuer()+"/") || !slices.Equal(disc.SigningAlgorithm, []string{"RS256"}) {
		t.Fatalf("discovery document: %+v", disc)
	}

	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, idt := f.exchange(t, l, code)

	c := claimsOf(t, idt)
	if c.Sub != "dev|alice@example.com" || c.Email != "Alice@Example.com" || !c.EmailVerified ||
		c.Name != "Alice Liddell" || !slices.Equal(c.Groups, []string{"admin", "dev"}) ||
		!slices.Equal(c.AMR, []string{"pwd"}) || c.SID == "" || c.AuthTime == 0 {
		t.Fatalf("ID token claims: %+v", c)
	}
	if got := idt.Expiry.Sub(idt.IssuedAt); got != 5*time.Minute {
		t.Errorf("ID token lifetime = %v, want the 5m default", got)
	}
	if until := time.Until(tok.Expiry); until < 4*time.Minute || until > 5*time.Minute+time.Second {
		t.Errorf("access token expires in %v, want about the 5m default", until)
	}
	if tok.RefreshToken == "" {
		t.Fatal("offline_access was requested but no refresh token was issued")
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}

	ui, err := f.oidc.UserInfo(f.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc idClaims
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	if uc.Sub != c.Sub || uc.Email != c.Email || !slices.Equal(uc.Groups, c.Groups) {
		t.Fatalf("userinfo claims: %+v", uc)
	}

	// A second login of the same user is a new session with the same subject.
	l2, code2 := f.loginAs(t, "ALICE@example.com", alicePassword, "")
	_, idt2 := f.exchange(t, l2, code2)
	if c2 := claimsOf(t, idt2); c2.Sub != c.Sub || c2.SID == c.SID {
		t.Fatalf("second login: sub %q sid %q, first: sub %q sid %q", c2.Sub, c2.SID, c.Sub, c.SID)
	}

	for _, secret := range []string{alicePassword, code, tok.AccessToken, tok.RefreshToken, clientSecret} {
		if strings.Contains(f.logs.String(), secret) {
			t.Errorf("logs contain a secret: %q", secret)
		}
	}
}

func TestAccessTokenExpiresForUserinfo(t *testing.T) {
	f := newFixture(t)
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, _ := f.exchange(t, l, code)
	f.clock.Advance(5*time.Minute + time.Second)
	if _, err := f.oidc.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Fatal("userinfo accepted an expired access token")
	}
}

func TestECDSASigningKey(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.SigningKey = k })
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	_, idt := f.exchange(t, l, code) // go-oidc checks ES256 against discovery and JWKS
	if claimsOf(t, idt).Sub != "dev|alice@example.com" {
		t.Fatal("wrong subject")
	}
}

func TestGeneratedSigningKeyAndTTLs(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.SigningKey = nil
		o.IDTokenTTL = 2 * time.Minute
		o.AccessTokenTTL = time.Minute
	})
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, idt := f.exchange(t, l, code)
	if got := idt.Expiry.Sub(idt.IssuedAt); got != 2*time.Minute {
		t.Errorf("ID token lifetime = %v, want 2m", got)
	}
	if until := time.Until(tok.Expiry); until > time.Minute+time.Second {
		t.Errorf("access token expires in %v, want at most 1m", until)
	}
}

func TestPKCE(t *testing.T) {
	f := newFixture(t)

	t.Run("missing verifier", func(t *testing.T) {
		_, code := f.loginAs(t, "alice@example.com", alicePassword, "")
		_, err := f.oauth.Exchange(f.ctx, code)
		wantOAuthError(t, err, "invalid_request")
	})
	t.Run("wrong verifier", func(t *testing.T) {
		l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
		_, err := f.oauth.Exchange(f.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		wantOAuthError(t, err, "invalid_grant")
		// A failed attempt does not spend the code (x/oauth2 retries with
		// another client auth style on failure, and must see the same error).
		if _, err := f.oauth.Exchange(f.ctx, code, oauth2.VerifierOption(l.verifier)); err != nil {
			t.Fatalf("right verifier after a wrong one: %v", err)
		}
	})

	// Authorization requests without S256 PKCE never reach the login form.
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"no challenge": nil,
		"plain method": {oauth2.SetAuthURLParam("code_challenge", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
	} {
		t.Run(name, func(t *testing.T) {
			state := rand.Text()
			resp, body := f.get(t, f.browser, f.oauth.AuthCodeURL(state, opts...))
			q := resp.Request.URL.Query()
			if !strings.HasPrefix(resp.Request.URL.String(), f.rp.URL+"/callback") || q.Get("error") != "invalid_request" ||
				q.Get("state") != state || q.Get("code") != "" {
				t.Fatalf("ended at %s (%d): %s", resp.Request.URL, resp.StatusCode, body)
			}
			if !strings.Contains(q.Get("error_description"), "S256") {
				t.Errorf("error_description %q does not say what is required", q.Get("error_description"))
			}
		})
	}
}

func TestCodeReplayIsRejectedAndRevokes(t *testing.T) {
	f := newFixture(t)
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, _ := f.exchange(t, l, code)

	_, err := f.oauth.Exchange(f.ctx, code, oauth2.VerifierOption(l.verifier))
	wantOAuthError(t, err, "invalid_grant")

	_, err = f.refresh(tok.RefreshToken)
	wantOAuthError(t, err, "invalid_grant")
	if _, err := f.oidc.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("access token from a replayed code still works")
	}
}

func TestBadTokenRequests(t *testing.T) {
	f := newFixture(t)
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")

	wrongSecret := f.oauth
	wrongSecret.ClientSecret = "not-the-secret"
	_, err := wrongSecret.Exchange(f.ctx, code, oauth2.VerifierOption(l.verifier))
	var re *oauth2.RetrieveError
	if err == nil || !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong client secret: %v", err)
	}
	if strings.Contains(string(re.Body), "not-the-secret") || strings.Contains(string(re.Body), clientSecret) {
		t.Fatalf("error body echoes a secret: %s", re.Body)
	}

	_, err = f.oauth.Exchange(f.ctx, "made-up-code", oauth2.VerifierOption(l.verifier))
	wantOAuthError(t, err, "invalid_grant")

	wrongRedirect := f.oauth
	wrongRedirect.RedirectURL = f.rp.URL + "/other"
	l2, code2 := f.loginAs(t, "alice@example.com", alicePassword, "")
	_, err = wrongRedirect.Exchange(f.ctx, code2, oauth2.VerifierOption(l2.verifier))
	wantOAuthError(t, err, "invalid_grant")
}

func TestTOTP(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, code string }{{"no code", ""}, {"wrong code", "000000"}} {
		t.Run(tc.name, func(t *testing.T) {
			l := f.mustStartLogin(t)
			if tc.code == "000000" {
				if right, _ := totp.GenerateCode(bobTOTP, f.clock.Now()); right == tc.code {
					t.Skip("the wrong code happens to be right")
				}
			}
			resp, body := f.submit(t, l, "bob@example.com", bobPassword, tc.code)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, msgBadLogin) {
				t.Fatalf("status %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
			}
		})
	}
	t.Run("right code", func(t *testing.T) {
		code, err := totp.GenerateCode(bobTOTP, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		l := f.mustStartLogin(t)
		resp, body := f.submit(t, l, "bob@example.com", bobPassword, code)
		_, idt := f.exchange(t, l, f.code(t, l, resp, body))
		if c := claimsOf(t, idt); !slices.Equal(c.AMR, []string{"pwd", "otp"}) {
			t.Fatalf("amr = %v, want [pwd otp]", c.AMR)
		}
	})
	t.Run("code for another time", func(t *testing.T) {
		stale, _ := totp.GenerateCode(bobTOTP, f.clock.Now().Add(-5*time.Minute))
		l := f.mustStartLogin(t)
		if resp, _ := f.submit(t, l, "bob@example.com", bobPassword, stale); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("stale code accepted: %d", resp.StatusCode)
		}
	})
}

func TestRefreshToken(t *testing.T) {
	f := newFixture(t)
	code, _ := totp.GenerateCode(bobTOTP, f.clock.Now())
	l := f.mustStartLogin(t)
	resp, body := f.submit(t, l, "bob@example.com", bobPassword, code)
	tok, idt := f.exchange(t, l, f.code(t, l, resp, body))
	first := claimsOf(t, idt)

	refreshed, err := f.refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	c := claimsOf(t, f.verifyIDToken(t, refreshed))
	if c.Sub != first.Sub || c.SID != first.SID || !slices.Equal(c.AMR, first.AMR) || c.AuthTime != first.AuthTime || c.Email != "bob@example.com" {
		t.Fatalf("refreshed ID token claims %+v, first %+v", c, first)
	}
	if refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken || refreshed.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	if _, err := f.oidc.UserInfo(f.ctx, oauth2.StaticTokenSource(refreshed)); err != nil {
		t.Fatalf("userinfo with refreshed access token: %v", err)
	}

	_, err = f.refresh(tok.RefreshToken)
	wantOAuthError(t, err, "invalid_grant") // rotated out
	if _, err := f.refresh(refreshed.RefreshToken); err != nil {
		t.Fatalf("second refresh: %v", err)
	}
	_, err = f.refresh("not-a-refresh-token")
	wantOAuthError(t, err, "invalid_grant")
}

func TestNoRefreshTokenWithoutOfflineAccess(t *testing.T) {
	f := newFixture(t)
	f.oauth.Scopes = []string{"openid", "email"}
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, idt := f.exchange(t, l, code)
	if tok.RefreshToken != "" {
		t.Fatal("refresh token issued without offline_access")
	}
	if c := claimsOf(t, idt); c.Name != "" || c.Email == "" {
		t.Fatalf("claims without profile scope: %+v", c)
	}
}

func TestRevocation(t *testing.T) {
	f := newFixture(t)
	var disc struct {
		Revocation string `json:"revocation_endpoint"`
	}
	if err := f.oidc.Claims(&disc); err != nil || disc.Revocation == "" {
		t.Fatalf("no revocation endpoint: %v", err)
	}
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, _ := f.exchange(t, l, code)

	revoke := func(c *http.Client, token, clientID, secret string) int {
		req, _ := http.NewRequestWithContext(f.ctx, http.MethodPost, disc.Revocation,
			strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, secret)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp.StatusCode
	}
	if got := revoke(http.DefaultClient, tok.RefreshToken, "sekisho", "wrong"); got == http.StatusOK {
		t.Fatal("revocation accepted a wrong client secret")
	}
	if _, err := f.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("refresh token stopped working after a rejected revocation: %v", err)
	}
	// The refresh above rotated tok.RefreshToken; get fresh tokens to revoke.
	l, code = f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, _ = f.exchange(t, l, code)
	if got := revoke(http.DefaultClient, tok.RefreshToken, "sekisho", clientSecret); got != http.StatusOK {
		t.Fatalf("revoke: status %d", got)
	}
	_, err := f.refresh(tok.RefreshToken)
	wantOAuthError(t, err, "invalid_grant")
	if _, err := f.oidc.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("access token of a revoked login still works")
	}
}

func TestEndSession(t *testing.T) {
	f := newFixture(t)
	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := f.oidc.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, _ := f.exchange(t, l, code)
	idToken := tok.Extra("id_token").(string)
	c := noRedirect(nil)

	endSession := func(q url.Values) (*http.Response, string) {
		return f.get(t, c, disc.EndSession+"?"+q.Encode())
	}

	t.Run("unregistered post_logout_redirect_uri", func(t *testing.T) {
		resp, body := endSession(url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://evil.example/"}})
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "post_logout_redirect_uri") {
			t.Fatalf("status %d, Location %q, body %s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if _, err := f.refresh(tok.RefreshToken); err != nil {
			t.Fatalf("a refused logout ended the session: %v", err)
		}
	})
	// The refresh above rotated the token: log in again for a clean session.
	l, code = f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, _ = f.exchange(t, l, code)
	idToken = tok.Extra("id_token").(string)

	t.Run("no client named", func(t *testing.T) {
		resp, _ := endSession(url.Values{"post_logout_redirect_uri": {"https://evil.example/"}})
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != f.p.Issuer()+"/logged-out" {
			t.Fatalf("status %d, Location %q: want the provider's own signed-out page", resp.StatusCode, loc)
		}
		resp, body := f.get(t, c, f.p.Issuer()+"/logged-out")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out") {
			t.Fatalf("signed-out page: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("registered post_logout_redirect_uri", func(t *testing.T) {
		resp, _ := endSession(url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {f.rp.URL + "/signed-out"}, "state": {"xyz"}})
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != f.rp.URL+"/signed-out?state=xyz" {
			t.Fatalf("status %d, Location %q", resp.StatusCode, loc)
		}
		_, err := f.refresh(tok.RefreshToken)
		wantOAuthError(t, err, "invalid_grant")
	})
	t.Run("forged id_token_hint", func(t *testing.T) {
		parts := strings.Split(idToken, ".")
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		resp, _ := endSession(url.Values{"id_token_hint": {forged}, "post_logout_redirect_uri": {f.rp.URL + "/signed-out"}})
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Fatalf("forged hint: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestPromptNoneNeedsLogin(t *testing.T) {
	f := newFixture(t)
	resp, body := f.get(t, f.browser, f.oauth.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
	if q := resp.Request.URL.Query(); q.Get("error") != "login_required" || q.Get("code") != "" {
		t.Fatalf("ended at %s: %s", resp.Request.URL, body)
	}
}

func TestUnknownClientAndRedirectURI(t *testing.T) {
	f := newFixture(t)
	for name, cfg := range map[string]oauth2.Config{
		"unknown client":        {ClientID: "nobody", Endpoint: f.oauth.Endpoint, RedirectURL: f.oauth.RedirectURL, Scopes: f.oauth.Scopes},
		"unregistered redirect": {ClientID: "sekisho", Endpoint: f.oauth.Endpoint, RedirectURL: "https://evil.example/cb", Scopes: f.oauth.Scopes},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := f.get(t, noRedirect(nil), cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q, body %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}
}

// TestTOTPSingleUse: a one-time code signs in once; the same code again
// within its window is refused like a wrong one, and the next step's code
// works.
func TestTOTPSingleUse(t *testing.T) {
	f := newFixture(t)
	code, err := totp.GenerateCode(bobTOTP, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	l := f.mustStartLogin(t)
	resp, body := f.submit(t, l, "bob@example.com", bobPassword, code)
	f.code(t, l, resp, body)

	for _, advance := range []time.Duration{0, 10 * time.Second, 30 * time.Second} {
		f.clock.Advance(advance)
		l := f.mustStartLogin(t)
		if resp, body := f.submit(t, l, "bob@example.com", bobPassword, code); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, msgBadLogin) {
			t.Fatalf("the same code again %s later: %d at %s", advance, resp.StatusCode, resp.Request.URL)
		}
	}
	next, _ := totp.GenerateCode(bobTOTP, f.clock.Now().Add(30*time.Second))
	if next == code {
		t.Skip("the next step's code happens to equal this one")
	}
	f.clock.Advance(30 * time.Second)
	l = f.mustStartLogin(t)
	resp, body = f.submit(t, l, "bob@example.com", bobPassword, next)
	f.code(t, l, resp, body)
}

// TestTOTPNoOlderStep: once a code has signed in, a code for an older time
// step (still inside the allowed clock skew) is refused like a wrong one; a
// newer step's code is accepted.
func TestTOTPNoOlderStep(t *testing.T) {
	f := newFixture(t)
	step := 30 * time.Second
	now := f.clock.Now()
	codes := make([]string, 3) // steps N, N+1, N+2
	for i := range codes {
		c, err := totp.GenerateCode(bobTOTP, now.Add(time.Duration(i)*step))
		if err != nil {
			t.Fatal(err)
		}
		codes[i] = c
	}
	if codes[0] == codes[1] || codes[1] == codes[2] {
		t.Skip("two neighbouring steps' codes happen to be equal")
	}
	l := f.mustStartLogin(t)
	resp, body := f.submit(t, l, "bob@example.com", bobPassword, codes[1])
	f.code(t, l, resp, body)

	l = f.mustStartLogin(t)
	if resp, body := f.submit(t, l, "bob@example.com", bobPassword, codes[0]); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, msgBadLogin) {
		t.Fatalf("the previous step's code after the next step's: %d at %s", resp.StatusCode, resp.Request.URL)
	}

	f.clock.Advance(step)
	l = f.mustStartLogin(t)
	resp, body = f.submit(t, l, "bob@example.com", bobPassword, codes[2])
	f.code(t, l, resp, body)
}

// TestPublicNativeClient drives the kubectl client the way `sekisho kube
// login` does: no secret, PKCE, a loopback redirect on a port the provider
// never saw (the relying party server's), then a refresh.
func TestPublicNativeClient(t *testing.T) {
	f := newFixture(t)
	f.oauth = oauth2.Config{
		ClientID:    KubectlClientID,
		Endpoint:    f.oidc.Endpoint(),
		RedirectURL: f.rp.URL + KubectlRedirectPath,
		Scopes:      []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess},
	}
	f.verifier = f.oidc.Verifier(&oidc.Config{ClientID: KubectlClientID})
	l, code := f.loginAs(t, "alice@example.com", alicePassword, "")
	tok, idt := f.exchange(t, l, code)
	if got := claimsOf(t, idt).Email; got != "Alice@Example.com" {
		t.Fatalf("email = %q", got)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}
	if _, err := f.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("refresh without a secret: %v", err)
	}

	for name, redirect := range map[string]string{
		"other path":   f.rp.URL + "/elsewhere",
		"remote host":  "http://example.com" + KubectlRedirectPath,
		"custom query": f.rp.URL + KubectlRedirectPath + "?x=1",
	} {
		t.Run(name, func(t *testing.T) {
			f.oauth.RedirectURL = redirect
			if l := f.startLogin(t); l.id != "" {
				t.Fatalf("redirect %s was accepted: login form at %s", redirect, l.form)
			}
		})
	}
}
