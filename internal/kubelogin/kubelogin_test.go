package kubelogin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func TestBrowserLoginPrintsVerifiedIDToken(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	r := p.mustRun()

	if got := p.browser.opens.Load(); got != 1 {
		t.Fatalf("browser opened %d times, want 1", got)
	}
	pages := p.browser.wait()
	if len(pages) != 1 || !strings.HasPrefix(pages[0], "200 ") || !strings.Contains(pages[0], "Signed in") {
		t.Fatalf("browser ended on %q", pages)
	}
	if r.cred.APIVersion != "client.authentication.k8s.io/v1" || r.cred.Kind != "ExecCredential" {
		t.Errorf("type = %s %s", r.cred.APIVersion, r.cred.Kind)
	}
	e := p.entry()
	if r.cred.Status.Token != e.IDToken {
		t.Errorf("printed token is not the cached ID token")
	}
	// The token is a real ID token of the provider, for this client.
	prov, err := oidc.NewProvider(t.Context(), i.issuer)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: "kubectl"}).Verify(t.Context(), r.cred.Status.Token)
	if err != nil {
		t.Fatalf("printed token does not verify: %v", err)
	}
	if ts := r.cred.Status.ExpirationTimestamp; ts == nil || !ts.Time.Equal(idt.Expiry) {
		t.Errorf("expirationTimestamp = %v, want the ID token's exp %v", ts, idt.Expiry)
	}
	if e.RefreshToken == "" {
		t.Error("no refresh token cached: offline_access was not requested")
	}
	if !strings.Contains(r.stderr, "open this URL") {
		t.Errorf("stderr does not show the sign-in URL:\n%s", r.stderr)
	}
	noSecretsIn(t, "stderr", r.stderr, e)
	noSecretsIn(t, "the browser's page", pages[0], e)

	// One callback, then the listener is gone.
	auth, _ := url.Parse(p.browser.lastURL.Load().(string))
	redirect := auth.Query().Get("redirect_uri")
	if !strings.HasPrefix(redirect, "http://127.0.0.1:") || !strings.HasSuffix(redirect, RedirectPath) {
		t.Errorf("redirect_uri = %q, want http://127.0.0.1:PORT/callback", redirect)
	}
	if auth.Query().Get("code_challenge_method") != "S256" || auth.Query().Get("nonce") == "" {
		t.Errorf("sign-in URL lacks PKCE S256 or a nonce: %s", auth)
	}
	if resp, err := http.Get(redirect + "?code=x&state=y"); err == nil {
		resp.Body.Close()
		t.Errorf("the redirect listener still answers after the login: %d", resp.StatusCode)
	}
}

func TestCachedTokenIsReusedWithoutNetwork(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	first := p.mustRun()
	p.browser.wait()
	before := i.requests.Load()

	p.clock.Advance(5 * time.Minute) // half the ID token's life
	second := p.mustRun(nonInteractive)
	if got := p.browser.opens.Load(); got != 1 {
		t.Errorf("browser opened %d times, want only the first login", got)
	}
	if got := i.requests.Load(); got != before {
		t.Errorf("the provider saw %d requests for a cached token, want none", got-before)
	}
	if second.cred.Status.Token != first.cred.Status.Token {
		t.Error("second run printed another token")
	}
	if second.stderr != "" {
		t.Errorf("a cached run wrote to stderr: %s", second.stderr)
	}
}

func TestExpiredTokenIsRefreshedSilently(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	first := p.mustRun()
	p.browser.wait()
	old := p.entry()

	// Less than RenewBefore left: renewed, without a browser and even
	// though kubectl says it cannot interact.
	p.clock.Advance(10*time.Minute - RenewBefore + time.Second)
	tokens := i.tokens.Load()
	second := p.mustRun(nonInteractive)
	if got := p.browser.opens.Load(); got != 1 {
		t.Errorf("browser opened %d times, want only the first login", got)
	}
	if i.tokens.Load() != tokens+1 {
		t.Errorf("token endpoint calls = %d, want one refresh", i.tokens.Load()-tokens)
	}
	if second.cred.Status.Token == first.cred.Status.Token {
		t.Fatal("the refresh printed the old token")
	}
	e := p.entry()
	if e.IDToken != second.cred.Status.Token || e.IDToken == old.IDToken || e.RefreshToken == "" {
		t.Error("the refreshed tokens were not cached")
	}
	noSecretsIn(t, "stderr", second.stderr, old)
	noSecretsIn(t, "stderr", second.stderr, e)
}

func TestRefreshFailure(t *testing.T) {
	for _, tc := range []struct {
		name        string
		interactive bool
	}{
		{"interactive logs in again", true},
		{"non-interactive fails", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := newIDP(t)
			p := newPlugin(t, i)
			p.mustRun()
			p.browser.wait()
			e := p.entry()
			e.RefreshToken = "revoked-refresh-token-value"
			if err := (cache{dir: p.opts.CacheDir}).save(e); err != nil {
				t.Fatal(err)
			}
			p.clock.Advance(10*time.Minute - RenewBefore + time.Second) // due for renewal
			var edits []func(*Options)
			if !tc.interactive {
				edits = append(edits, nonInteractive)
			}
			r := p.run(edits...)
			if !strings.Contains(r.stderr, "could not renew the session") {
				t.Errorf("stderr does not say the refresh failed:\n%s", r.stderr)
			}
			if strings.Contains(r.stderr, "revoked-refresh-token-value") {
				t.Errorf("stderr shows the refresh token:\n%s", r.stderr)
			}
			if tc.interactive {
				if r.err != nil {
					t.Fatalf("Run: %v", r.err)
				}
				if got := p.browser.opens.Load(); got != 2 {
					t.Errorf("browser opened %d times, want a second login", got)
				}
				p.browser.wait()
				return
			}
			if !errors.Is(r.err, ErrNotInteractive) || r.stdout != "" {
				t.Fatalf("Run = %v, stdout %q; want ErrNotInteractive and nothing on stdout", r.err, r.stdout)
			}
		})
	}
}

func TestNonInteractiveWithoutCache(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	r := p.run(nonInteractive)
	if !errors.Is(r.err, ErrNotInteractive) {
		t.Fatalf("Run = %v, want ErrNotInteractive", r.err)
	}
	if !strings.Contains(r.err.Error(), "from a terminal") || r.stdout != "" {
		t.Errorf("err %q, stdout %q", r.err, r.stdout)
	}
	if p.browser.opens.Load() != 0 || i.requests.Load() != 0 {
		t.Errorf("browser opens %d, provider requests %d; want none", p.browser.opens.Load(), i.requests.Load())
	}
}

func TestStateMismatchIsRefused(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	p.opts.OpenBrowser = func(_ context.Context, raw string) error {
		u, _ := url.Parse(raw)
		cb, _ := url.Parse(u.Query().Get("redirect_uri"))
		cb.RawQuery = url.Values{"code": {"stolen-code"}, "state": {"forged-state"}}.Encode()
		go func() {
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(cb.String())
			if err != nil {
				t.Errorf("GET callback: %v", err)
				return
			}
			if body := readAll(resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state") {
				t.Errorf("callback answered %d %s, want 400 about the state", resp.StatusCode, body)
			}
		}()
		return nil
	}
	tokens := i.tokens.Load()
	r := p.run()
	if r.err == nil || !strings.Contains(r.err.Error(), "state") {
		t.Fatalf("Run = %v, want a state mismatch", r.err)
	}
	if r.stdout != "" || i.tokens.Load() != tokens {
		t.Errorf("stdout %q, token requests %d: the forged code must not be redeemed", r.stdout, i.tokens.Load()-tokens)
	}
	if _, err := os.Stat(filepath.Join(p.opts.CacheDir, newCacheKey(p.opts.Issuer, p.opts.ClientID, nil).file()+".json")); err == nil {
		t.Error("a refused login left a cache entry")
	}
}

func TestNonceMismatchIsRefused(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	// The provider signs the nonce it is sent; swapping it on the way
	// stands for a replayed or injected ID token.
	p.browser.edit = func(u *url.URL) {
		q := u.Query()
		q.Set("nonce", "attacker-nonce")
		u.RawQuery = q.Encode()
	}
	r := p.run()
	pages := p.browser.wait()
	if r.err == nil || !strings.Contains(r.err.Error(), "nonce") {
		t.Fatalf("Run = %v, want a nonce mismatch", r.err)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q", r.stdout)
	}
	if len(pages) != 1 || !strings.HasPrefix(pages[0], "400 ") {
		t.Errorf("browser page = %q, want a 400 saying sign-in failed", pages)
	}
}

func TestCachePermissions(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	// An existing, too open directory is narrowed.
	if err := os.MkdirAll(p.opts.CacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p.opts.CacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.mustRun()
	p.browser.wait()
	if m := fileMode(t, p.opts.CacheDir); m != 0o700 {
		t.Errorf("cache dir mode = %o, want 700", m)
	}
	entries, err := os.ReadDir(p.opts.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	var files int
	for _, de := range entries {
		files++
		if strings.HasPrefix(de.Name(), ".entry-") {
			t.Errorf("temporary file %s left behind", de.Name())
		}
		if m := fileMode(t, filepath.Join(p.opts.CacheDir, de.Name())); m != 0o600 {
			t.Errorf("%s mode = %o, want 600", de.Name(), m)
		}
	}
	if files != 2 {
		t.Errorf("cache holds %d files, want the entry and its lock", files)
	}
}

func TestCorruptCacheMeansLoginAgain(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	path := filepath.Join(p.opts.CacheDir, newCacheKey(p.opts.Issuer, p.opts.ClientID, nil).file()+".json")
	if err := os.MkdirAll(p.opts.CacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"id_token":`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := p.mustRun()
	p.browser.wait()
	if !strings.Contains(r.stderr, "ignoring the cached tokens") || p.browser.opens.Load() != 1 {
		t.Errorf("opens %d, stderr:\n%s", p.browser.opens.Load(), r.stderr)
	}
}

func TestConcurrentRunsLogInOnce(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	var wg sync.WaitGroup
	results := make([]result, 3)
	for n := range results {
		wg.Go(func() { results[n] = p.run() })
	}
	wg.Wait()
	p.browser.wait()
	if got := p.browser.opens.Load(); got != 1 {
		t.Fatalf("browser opened %d times for concurrent runs, want 1", got)
	}
	for n, r := range results {
		if r.err != nil || r.cred.Status == nil || r.cred.Status.Token != results[0].cred.Status.Token {
			t.Errorf("run %d: err %v, stdout %s", n, r.err, r.stdout)
		}
	}
}

func TestAccessTokenType(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	p.opts.TokenType = TokenTypeAccess
	r := p.mustRun()
	p.browser.wait()
	if e := p.entry(); r.cred.Status.Token != e.AccessToken || e.AccessToken == e.IDToken {
		t.Error("--token-type access_token did not print the access token")
	}
}

func TestExecInfoVersions(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	p.mustRun()
	p.browser.wait()
	for _, tc := range []struct {
		info, want, wantErr string
	}{
		{`{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":true}}`, "client.authentication.k8s.io/v1beta1", ""},
		{`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`, "client.authentication.k8s.io/v1", ""},
		{`{"apiVersion":"client.authentication.k8s.io/v2","kind":"ExecCredential"}`, "", "v2"},
		{`not json`, "", "KUBERNETES_EXEC_INFO"},
	} {
		r := p.run(func(o *Options) { o.ExecInfo = tc.info })
		switch {
		case tc.wantErr != "":
			if r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.info, r.err, tc.wantErr)
			}
		case r.err != nil || r.cred.APIVersion != tc.want:
			t.Errorf("%s: err %v, apiVersion %q, want %q", tc.info, r.err, r.cred.APIVersion, tc.want)
		}
	}
}

func TestLogout(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	p.mustRun()
	p.browser.wait()
	logout := func(o *Options) { o.Logout = true }
	r := p.run(logout)
	if r.err != nil || r.stdout != "" || !strings.Contains(r.stderr, "signed out") {
		t.Fatalf("logout: %v, stdout %q, stderr %q", r.err, r.stdout, r.stderr)
	}
	if r := p.run(logout); r.err != nil || !strings.Contains(r.stderr, "no cached tokens") {
		t.Fatalf("second logout: %v, stderr %q", r.err, r.stderr)
	}
	p.mustRun()
	p.browser.wait()
	if got := p.browser.opens.Load(); got != 2 {
		t.Errorf("after logout the browser opened %d times in all, want 2", got)
	}
}

func TestLoginTimeout(t *testing.T) {
	i := newIDP(t)
	p := newPlugin(t, i)
	p.opts.OpenBrowser = func(context.Context, string) error { return nil } // the user never signs in
	p.opts.LoginTimeout = 50 * time.Millisecond
	r := p.run()
	if r.err == nil || !strings.Contains(r.err.Error(), "no browser login within") {
		t.Fatalf("Run = %v, want a timeout", r.err)
	}
}

func TestDeviceCodeUnsupported(t *testing.T) {
	t.Run("not advertised", func(t *testing.T) {
		// A provider whose discovery document has no device endpoint.
		var srv *httptest.Server
		srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{
				"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize",
				"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/keys",
			})
		}))
		t.Cleanup(srv.Close)
		p := newPlugin(t, &idp{issuer: srv.URL})
		p.opts.DeviceCode = true
		r := p.run()
		if r.err == nil || !strings.Contains(r.err.Error(), "does not advertise a device_authorization_endpoint") {
			t.Fatalf("Run = %v, want a clear error", r.err)
		}
	})
	t.Run("client may not use it", func(t *testing.T) {
		p := newPlugin(t, newIDP(t))
		p.opts.DeviceCode = true
		p.opts.ClientID, p.opts.ClientSecret = "web", webSecret // the built-in provider's confidential clients have no device flow
		r := p.run()
		if r.err == nil || !strings.Contains(r.err.Error(), "device code grant") {
			t.Fatalf("Run = %v, want a clear error", r.err)
		}
	})
}

// TestFixedListenAddress: --listen with a fixed port (for providers that
// want the exact redirect URI) sends exactly that URI, with the host as
// written.
func TestFixedListenAddress(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(l.Addr().String())
			l.Close()
			p := newPlugin(t, newIDP(t))
			p.opts.Listen = net.JoinHostPort(host, port)
			p.mustRun()
			p.browser.wait()
			auth, _ := url.Parse(p.browser.lastURL.Load().(string))
			if got, want := auth.Query().Get("redirect_uri"), "http://"+net.JoinHostPort(host, port)+RedirectPath; got != want {
				t.Fatalf("redirect_uri = %q, want %q", got, want)
			}
		})
	}
}

// TestProviderErrorIsShownSafely: an error the provider sends back with
// the right state ends the login with its code and description, minus
// control characters that would reach the terminal.
func TestProviderErrorIsShownSafely(t *testing.T) {
	p := newPlugin(t, newIDP(t))
	p.opts.OpenBrowser = func(_ context.Context, raw string) error {
		u, _ := url.Parse(raw)
		cb, _ := url.Parse(u.Query().Get("redirect_uri"))
		cb.RawQuery = url.Values{"state": {u.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"user said no\x1b[2J"}}.Encode()
		go func() {
			if resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(cb.String()); err == nil {
				resp.Body.Close()
			}
		}()
		return nil
	}
	r := p.run()
	if r.err == nil || !strings.Contains(r.err.Error(), "access_denied user said no") || strings.ContainsRune(r.err.Error(), 0x1b) {
		t.Fatalf("Run = %q, want the provider's error without control characters", r.err)
	}
}
