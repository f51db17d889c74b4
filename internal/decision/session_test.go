package decision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

// fakeSessions stands in for the login service's session check, so the
// test controls what it answers and which cookies it writes.
type fakeSessions struct{ down atomic.Bool }

func (s *fakeSessions) Authenticate(_ context.Context, r *http.Request) (*identity.Identity, []*http.Cookie, error) {
	if s.down.Load() {
		return nil, nil, fmt.Errorf("redis get: %w", session.ErrUnavailable)
	}
	c, err := r.Cookie("_sekisho")
	if err != nil || c.Value != "valid" {
		return nil, nil, errors.New("no session")
	}
	return &identity.Identity{Subject: "s", Username: "sam@example.com", Email: "sam@example.com", Groups: []string{"admin"}, Method: identity.MethodSession},
		[]*http.Cookie{{Name: "_sekisho", Value: "refreshed", Path: "/", HttpOnly: true}}, nil
}

// TestSessions checks browser sessions in decision mode: the session
// cookie's updates are relayed for the browser, the session cookie never
// goes upstream, and a session store that cannot answer is a 503, never
// an allow or an anonymous deny.
func TestSessions(t *testing.T) {
	f := newFixture(t, Config{}, "")
	sessions := &fakeSessions{}
	f.snap.Authn.Session = sessions // before the first request: snapshots are read without locks
	f.snap.Authn.SessionCookie = "_sekisho"
	cookie := "theme=dark; _sekisho=valid"

	t.Run("envoy-http", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/envoy/api1/x", "Host", "gw.test", "Cookie", cookie)
		if resp.StatusCode != 200 || resp.Header.Get("X-Forwarded-User") != "sam@example.com" {
			t.Fatalf("%d user %q", resp.StatusCode, resp.Header.Get("X-Forwarded-User"))
		}
		if got := resp.Header.Get("Set-Cookie"); got != "_sekisho=refreshed; Path=/; HttpOnly" {
			t.Errorf("Set-Cookie %q", got)
		}
		if got := resp.Header.Get("Cookie"); got != "theme=dark" {
			t.Errorf("the upstream would get Cookie %q, want the session cookie removed", got)
		}
	})
	t.Run("envoy-grpc", func(t *testing.T) {
		resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/api1/x", map[string]string{"cookie": cookie}))
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("%v %v", resp, err)
		}
		ok := resp.GetOkResponse()
		if got, _ := headerOf(ok.GetResponseHeadersToAdd(), "set-cookie"); got != "_sekisho=refreshed; Path=/; HttpOnly" {
			t.Errorf("set-cookie for the browser %q", got)
		}
		if got, _ := headerOf(ok.GetHeaders(), "cookie"); got != "theme=dark" {
			t.Errorf("cookie for the upstream %q", got)
		}
	})
	t.Run("nginx relays the cookie on the answer", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/nginx", "X-Original-URI", "/api1/x", "X-Forwarded-Host", "gw.test", "Cookie", cookie)
		if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") == "" {
			t.Fatalf("%d Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
	})

	sessions.down.Store(true)
	t.Run("store down: 503 everywhere", func(t *testing.T) {
		for _, target := range []string{"/envoy/api1/x", "/forward-auth", "/nginx"} {
			resp, _ := raw(t, f.addr(), "GET", target, "Host", "gw.test", "Cookie", cookie,
				"X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/api1/x", "X-Original-URI", "/api1/x")
			if resp.StatusCode != 503 {
				t.Errorf("%s: %d, want 503", target, resp.StatusCode)
			}
		}
		resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/api1/x", map[string]string{"cookie": cookie}))
		if err != nil || resp.GetStatus().GetCode() == 0 || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
			t.Fatalf("gRPC with the store down: %v %v", resp, err)
		}
	})
}
