package engine

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/snapshot"
)

func testSnapshot(tb testing.TB, issuer string) *snapshot.Snapshot {
	tb.Helper()
	src := fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt: [{issuer: %q, audiences: [api], claims: {username: email}}]
routes:
  - name: api1
    match: {host: api.example.com, path_prefix: /api1}
    to: builtin:echo
    deny: [{when: "identity.kind == 'user' && !identity.mfa"}]
    allow:
      - groups: [admin]
      - domains: [example.com]
  - {name: open, match: {path: /open}, to: builtin:echo, public: true}
`, issuer)
	return configtest.New(tb).Snapshot(src)
}

func request(target, token string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.Host = "api.example.com"
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestEvaluate(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	snap := testSnapshot(t, iss.URL)
	mfa := iss.Token(t, "amr", []string{"mfa"})
	tests := []struct {
		name      string
		target    string
		token     string
		want      Outcome
		route     string
		challenge string
	}{
		{"allowed", "/api1/x", mfa, Allowed, "api1", ""},
		{"deny rule", "/api1/x", iss.Token(t), Forbidden, "api1", `Bearer realm="r", error="insufficient_scope"`},
		{"anonymous", "/api1/x", "", Unauthenticated, "api1", `Bearer realm="r"`},
		{"bad token", "/api1/x", "x.y.z", InvalidToken, "api1", `Bearer realm="r", error="invalid_token"`},
		{"no route", "/nope", mfa, NotFound, "", ""},
		{"bad path", "/api1/%2e%2e/%2e%2e/x", mfa, BadRequest, "", ""},
		{"public", "/open", "", Allowed, "open", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Evaluate(context.Background(), snap, request(tt.target, tt.token), Options{ClientIP: netip.MustParseAddr("192.0.2.1")})
			if res.Outcome != tt.want || res.RouteName != tt.route {
				t.Fatalf("outcome %v route %q (reason %q), want %v %q", res.Outcome, res.RouteName, res.Reason, tt.want, tt.route)
			}
			if got := res.Challenge("r"); got != tt.challenge {
				t.Errorf("challenge = %q, want %q", got, tt.challenge)
			}
			if res.Reason == "" {
				t.Error("no reason recorded")
			}
		})
	}
}

func TestOutcomeStatus(t *testing.T) {
	for o, want := range map[Outcome]int{Allowed: 200, BadRequest: 400, NotFound: 404, Unauthenticated: 401, InvalidToken: 401, Forbidden: 403} {
		if got := o.Status(); got != want {
			t.Errorf("%d.Status() = %d, want %d", o, got, want)
		}
	}
}

// BenchmarkEvaluateCachedJWT is the decision for a cached valid JWT and a
// route with three rules: the target is ≤ 5 µs and ≤ 10 allocs.
func BenchmarkEvaluateCachedJWT(b *testing.B) {
	iss := jwttest.NewIssuer(b)
	snap := testSnapshot(b, iss.URL)
	r := request("/api1/users/42", iss.Token(b, "amr", []string{"mfa"}))
	ctx := context.Background()
	o := Options{ClientIP: netip.MustParseAddr("192.0.2.1")}
	if res := Evaluate(ctx, snap, r, o); res.Outcome != Allowed {
		b.Fatalf("outcome %v: %s", res.Outcome, res.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(ctx, snap, r, o)
	}
}

// TestPoliciesNeverSeeForgeableHeaders: identity headers a client could
// forge (and the credential header) are invisible to CEL, so a rule cannot
// be satisfied by sending them; other headers stay visible.
func TestPoliciesNeverSeeForgeableHeaders(t *testing.T) {
	snap := configtest.New(t).Snapshot(`
listen: {http: "127.0.0.1:0"}
credentials: {header: X-Api-Key}
api_tokens: {file: /dev/null}
routes:
  - name: forged
    match: {path: /forged}
    to: builtin:echo
    allow: [{when: "request.headers['x-forwarded-user'] == 'root' || request.headers['x-forwarded_user'] == 'root' || request.headers['x-api-key'] == 'k'"}]
  - name: team
    match: {path: /team}
    to: builtin:echo
    allow: [{when: "request.headers['x-team'] == 'blue'"}]
`)
	for _, tt := range []struct {
		path, header, value string
		want                Outcome
	}{
		{"/forged", "X-Forwarded-User", "root", Unauthenticated},
		{"/forged", "X-Forwarded_User", "root", Unauthenticated},
		{"/team", "X-Team", "blue", Allowed},
	} {
		r := httptest.NewRequest("GET", tt.path, nil)
		r.Header[tt.header] = []string{tt.value}
		if res := Evaluate(context.Background(), snap, r, Options{}); res.Outcome != tt.want {
			t.Errorf("%s with %s: %v (%s), want %v", tt.path, tt.header, res.Outcome, res.Reason, tt.want)
		}
	}
}
