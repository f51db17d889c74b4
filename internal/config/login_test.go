package config

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// TestCookieRevocationsSurviveRebuild: a reload that rebuilds the login
// service (here: another post-logout page) with the same session key keeps
// the sign-outs recorded before it, so a signed-out cookie stays refused.
func TestCookieRevocationsSurviveRebuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "session.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := func(postLogout string) string {
		return `
listen: {http: "127.0.0.1:18997"}
providers: [{name: dev, builtin: {users: [{email: a@example.com, password: x}]}}]
session: {secret_file: session.key}
login: {post_logout_redirect: ` + postLogout + `}
routes:
  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [x]}]}
`
	}
	pool, _ := newReusePool()
	load := func(src string) *snapshot.Snapshot {
		t.Helper()
		s, err := Parse([]byte(src), filepath.Join(dir, "c.yaml"), dir, Options{Reuse: pool})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a := load(src("/bye"))
	ctx := context.Background()
	sess := &session.Session{ID: "s1", Provider: "dev", Identity: &identity.Identity{Subject: "a"}}
	cookies, err := cookieStore(t, a).Save(ctx, httptest.NewRequest("GET", "/", nil), sess)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	if _, err := cookieStore(t, a).Delete(ctx, req); err != nil {
		t.Fatal(err)
	}
	b := load(src("/goodbye"))
	if b.Login == a.Login || cookieStore(t, b) == cookieStore(t, a) {
		t.Fatal("the login service was not rebuilt; the test needs a rebuild")
	}
	if _, err := cookieStore(t, b).Load(ctx, req); !errors.Is(err, session.ErrRevoked) {
		t.Fatalf("signed-out cookie after a rebuild: %v, want ErrRevoked", err)
	}
}

// cookieStore is the snapshot's session store, which keeps sessions in
// cookies.
func cookieStore(t *testing.T, s *snapshot.Snapshot) *session.CookieStore {
	t.Helper()
	cs, ok := s.Login.Store.(*session.CookieStore)
	if !ok {
		t.Fatalf("session store is %T, want a cookie store", s.Login.Store)
	}
	return cs
}

// TestBuiltinProviderAsksForRefreshTokens: sign-in with the built-in
// provider asks for offline_access, also when scopes are configured
// without it, so the provider issues a refresh token and the session lasts
// its configured lifetime.
func TestBuiltinProviderAsksForRefreshTokens(t *testing.T) {
	for _, scopes := range []string{"", "scopes: [openid, email], "} {
		src := "listen: {http: '127.0.0.1:18996'}\nproviders: [{name: dev, " + scopes + "builtin: {users: [{email: a@example.com, password: x}]}}]\n" +
			"routes:\n  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [x]}]}\n"
		s, err := parse(t, src)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !s.Login.Service.Ready() {
			if time.Now().After(deadline) {
				t.Fatal("the built-in provider was not discovered")
			}
			time.Sleep(10 * time.Millisecond)
		}
		rec := httptest.NewRecorder()
		s.Login.Service.StartLogin(rec, httptest.NewRequest("GET", "http://127.0.0.1:18996/a", nil))
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || rec.Code != 302 {
			t.Fatalf("StartLogin: %d %q", rec.Code, rec.Header().Get("Location"))
		}
		if got := strings.Fields(loc.Query().Get("scope")); !slices.Contains(got, "offline_access") {
			t.Errorf("with %q the built-in provider is asked for scopes %q, want offline_access among them", scopes, got)
		}
	}
}

// TestBuiltinProviderHasKubectlClient: the built-in provider registers the
// public "kubectl" client for `sekisho kube login`, which redirects to a
// loopback port of its choosing, and to nothing else.
func TestBuiltinProviderHasKubectlClient(t *testing.T) {
	src := "listen: {http: '127.0.0.1:18995'}\nproviders: [{name: dev, builtin: {users: [{email: a@example.com, password: x}]}}]\n" +
		"routes:\n  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [x]}]}\n"
	s, err := parse(t, src)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Login.DevIDPs[snapshot.DevIDPPrefix+"dev/"]
	if h == nil {
		t.Fatalf("no built-in provider mounted: %v", s.Login.DevIDPs)
	}
	for _, tc := range []struct {
		redirect  string
		wantLogin bool
	}{
		{"http://127.0.0.1:54321/callback", true},
		{"http://localhost:40000/callback", true},
		{"http://example.com/callback", false},
		{"http://127.0.0.1:54321/elsewhere", false},
	} {
		q := url.Values{
			"client_id": {"kubectl"}, "redirect_uri": {tc.redirect}, "response_type": {"code"}, "scope": {"openid"},
			"state": {"st"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:18995"+snapshot.DevIDPPrefix+"dev/authorize?"+q.Encode(), nil))
		toLogin := rec.Code == 302 && strings.Contains(rec.Header().Get("Location"), "/login?authRequestID=")
		if toLogin != tc.wantLogin {
			t.Errorf("kubectl client redirecting to %s: %d %q, want login form: %v", tc.redirect, rec.Code, rec.Header().Get("Location"), tc.wantLogin)
		}
	}
}
