package engine

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// changesSnapshot has a route that keeps credentials and one that passes
// them on, a token header (configured in lower case) and a token cookie,
// and browser sessions in the "_sekisho" cookie.
func changesSnapshot(t *testing.T) *snapshot.Snapshot {
	t.Helper()
	snap := configtest.New(t).Snapshot(`
listen: {http: "127.0.0.1:0"}
credentials: {header: x-api-key, cookie: access_token}
routes:
  - {name: keep, match: {path_prefix: /keep}, to: builtin:echo, allow_method_override: true, allow: [{groups: [admin]}]}
  - {name: pass, match: {path_prefix: /pass}, to: builtin:echo, allow_method_override: true, pass_credentials: true, allow: [{groups: [admin]}]}
`)
	snap.Authn.SessionCookie = "_sekisho"
	return snap
}

// allowed is the result Evaluate gives for an allowed request on route.
func allowed(t *testing.T, snap *snapshot.Snapshot, route string, id *identity.Identity, src authn.Source, method, override string) *Result {
	t.Helper()
	rt, name, ok := snap.Routes.Match("gw.test", "/"+route+"/x", method, http.Header{})
	if !ok || name != route {
		t.Fatalf("route %s not matched", route)
	}
	return &Result{Outcome: Allowed, Route: rt, RouteName: name, Identity: id, Source: src, Method: method, OverrideHeader: override}
}

// TestUpstreamChanges: what reaches the upstream after the changes, for
// every credential source, with and without pass_credentials, with and
// without an identity, and with each kind of method override; and the
// changes are a diff (nothing edited that is already right, nothing
// removed that the identity sets), leaving the request's headers alone.
func TestUpstreamChanges(t *testing.T) {
	snap := changesSnapshot(t)
	alice := &identity.Identity{Username: "alice", Email: "alice@example.com", Groups: []string{"admin", "dev"}}
	sources := []authn.Source{authn.SourceAuthorization, authn.SourceHeader, authn.SourceCookie, authn.SourceSession}
	overrides := []struct {
		name    string
		header  string // the override header's value on the request ("" for none)
		applied bool   // the decision was made on it (OverrideHeader set)
	}{
		{"no override", "", false},
		{"override stripped", "DELETE", false},
		{"override applied, canonicalized", "delete", true},
		{"override applied as sent", "DELETE", true},
	}
	for _, src := range sources {
		for _, pass := range []bool{false, true} {
			for _, id := range []*identity.Identity{alice, nil} {
				for _, ov := range overrides {
					name := fmt.Sprintf("source %d/pass %v/identity %v/%s", src, pass, id != nil, ov.name)
					t.Run(name, func(t *testing.T) {
						h := http.Header{
							"Authorization":       {"Bearer t"},
							"X-Api-Key":           {"k"},
							"Cookie":              {"theme=dark; access_token=c; _sekisho=s", "_sekisho_1=s1; lang=ja"},
							"X-Forwarded-User":    {"mallory"},
							"X-Forwarded-Email":   {"mallory@example.com"},
							"X-Sekisho-Assertion": {"forged"},
							"Accept":              {"*/*"},
						}
						method, override := "POST", ""
						if ov.header != "" {
							h["X-Http-Method-Override"] = []string{ov.header}
						}
						if ov.applied {
							method, override = "DELETE", "X-Http-Method-Override"
						}
						route := "keep"
						if pass {
							route = "pass"
						}
						before := cloneHeader(h)
						res := allowed(t, snap, route, id, src, method, override)
						ch := res.UpstreamChanges(snap, h)
						if !equalHeader(h, before) {
							t.Fatalf("UpstreamChanges changed the request's headers: %v", h)
						}
						for i := range ch.Len() {
							e := ch.At(i)
							if ch.Identity.Sets(e.Name) {
								t.Errorf("edit %q names a header the identity sets", e.Name)
							}
							if e.Name == "X-Http-Method-Override" && ov.header == "DELETE" && ov.applied {
								t.Errorf("an edit rewrites an override that is already canonical: %v", e)
							}
						}

						ch.Apply(h)
						ch.Identity.SetOn(h)

						consumed := id != nil && !pass
						want := http.Header{"Accept": {"*/*"}}
						if !consumed || src != authn.SourceAuthorization {
							want["Authorization"] = []string{"Bearer t"}
						}
						if !consumed || src != authn.SourceHeader {
							want["X-Api-Key"] = []string{"k"}
						}
						if !consumed || src != authn.SourceCookie {
							want["Cookie"] = []string{"theme=dark; access_token=c", "lang=ja"}
						} else {
							want["Cookie"] = []string{"theme=dark", "lang=ja"}
						}
						if id != nil {
							want["X-Forwarded-User"] = []string{"alice"}
							want["X-Forwarded-Email"] = []string{"alice@example.com"}
							want["X-Forwarded-Groups"] = []string{"admin,dev"}
						}
						if ov.applied {
							want["X-Http-Method-Override"] = []string{"DELETE"}
						}
						if !equalHeader(h, want) {
							t.Errorf("upstream headers\n got %v\nwant %v", h, want)
						}
					})
				}
			}
		}
	}
}

// TestUpstreamChangesCookieHeader: a Cookie header left with nothing but
// sekisho's cookies goes; one without them is not edited.
func TestUpstreamChangesCookieHeader(t *testing.T) {
	snap := changesSnapshot(t)
	alice := &identity.Identity{Username: "alice", Groups: []string{"admin"}}
	for _, tt := range []struct {
		name   string
		cookie []string
		src    authn.Source
		want   []string // nil: no Cookie header upstream
		edited bool
	}{
		{"only the session", []string{"_sekisho=s; _sekisho_1=t"}, authn.SourceSession, nil, true},
		{"only the token cookie", []string{"access_token=c"}, authn.SourceCookie, nil, true},
		{"nothing of sekisho's", []string{"theme=dark;lang=ja"}, authn.SourceAuthorization, []string{"theme=dark;lang=ja"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cookie": slices.Clone(tt.cookie)}
			ch := allowed(t, snap, "keep", alice, tt.src, "GET", "").UpstreamChanges(snap, h)
			if edited := ch.Len() > 0; edited != tt.edited {
				t.Errorf("%d edits, want edited %v", ch.Len(), tt.edited)
			}
			ch.Apply(h)
			if got, ok := h["Cookie"]; !slices.Equal(got, tt.want) || ok != (tt.want != nil) {
				t.Errorf("Cookie upstream %q (present %v), want %q", got, ok, tt.want)
			}
		})
	}
}

// TestUpstreamChangesAllocations: for the common bearer request the
// changes cost no allocation (the gateway computes them on every request).
func TestUpstreamChangesAllocations(t *testing.T) {
	snap := changesSnapshot(t)
	res := allowed(t, snap, "keep", &identity.Identity{Username: "alice", Email: "alice@example.com", Groups: []string{"admin"}}, authn.SourceAuthorization, "GET", "")
	h := http.Header{"Authorization": {"Bearer t"}, "Accept": {"*/*"}, "User-Agent": {"curl/8"}}
	allocs := testing.AllocsPerRun(100, func() {
		ch := res.UpstreamChanges(snap, h)
		if ch.Len() != 1 {
			t.Fatalf("%d edits, want 1", ch.Len())
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

func cloneHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		out[k] = slices.Clone(vs)
	}
	return out
}

func equalHeader(a, b http.Header) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

// cookieSessions is a session authenticator that answers with a cookie
// update and err (nil: a signed-in admin).
type cookieSessions struct{ err error }

func (s cookieSessions) Authenticate(context.Context, *http.Request) (*identity.Identity, []*http.Cookie, error) {
	cookies := []*http.Cookie{{Name: "_sekisho", Value: "updated"}}
	if s.err != nil {
		return nil, cookies, s.err
	}
	return &identity.Identity{Username: "sam", Groups: []string{"admin"}}, cookies, nil
}

// TestEvaluateCarriesSessionCookies: the session's cookie updates reach
// Result.Cookies on every outcome, so a browser whose session ended gets
// it cleared with the answer that sends it to sign in.
func TestEvaluateCarriesSessionCookies(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want Outcome
	}{
		{"allowed", nil, Allowed},
		{"session ended", session.ErrExpired, Unauthenticated},
		{"store down", session.ErrUnavailable, Unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			snap := changesSnapshot(t)
			snap.Authn.Session = cookieSessions{tt.err}
			r := httptest.NewRequest("GET", "http://gw.test/keep/x", nil)
			r.Header.Set("Cookie", "_sekisho=old")
			res := Evaluate(context.Background(), snap, r, Options{})
			if res.Outcome != tt.want {
				t.Fatalf("outcome %v (%s), want %v", res.Outcome, res.Reason, tt.want)
			}
			if len(res.Cookies) != 1 || res.Cookies[0].Value != "updated" {
				t.Errorf("Cookies = %v, want the session's update", res.Cookies)
			}
		})
	}
}
