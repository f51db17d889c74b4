package config

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/telemetry"
)

// TestJWTMetricsWired: the JWT verifier a snapshot builds reports unknown
// kids and JWKS fetches to the metrics the process passes in.
func TestJWTMetricsWired(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	m := telemetry.NewMetrics()
	src := "jwt: [{issuer: \"" + ti.URL + "\", audiences: [api]}]\n" + minimal
	s, err := Parse([]byte(src), "test.yaml", ".", Options{OnJWTUnknownKID: m.JWTUnknownKID, OnJWKSRefresh: m.JWKSRefresh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	deadline := time.Now().Add(10 * time.Second)
	for jwtCounter(t, m, "sekisho_jwks_refreshes_total", "result", "updated") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no sekisho_jwks_refreshes_total{result=\"updated\"} within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling the registry with a deadline
	}

	tok := jwttest.Sign(t, jwttest.NewKey(t, "not-published", jose.ES256), ti.Claims(time.Now()))
	if _, err := s.Authn.JWT.Authenticate(context.Background(), tok); err == nil {
		t.Fatal("token with an unknown kid accepted")
	}
	if got := jwtCounter(t, m, "sekisho_jwt_unknown_kid_total", "issuer", ti.URL); got != 1 {
		t.Errorf("sekisho_jwt_unknown_kid_total{issuer=%q} = %v, want 1", ti.URL, got)
	}
}

// jwtCounter sums the samples of a counter family whose label name has value.
func jwtCounter(t *testing.T, m *telemetry.Metrics, family, name, value string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == name && l.GetValue() == value {
					sum += s.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestTokenCacheBoundsAndMetrics: caches.tokens bounds the verifier's cache
// and its hits, misses and evictions reach the metrics.
func TestTokenCacheBoundsAndMetrics(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	m := telemetry.NewMetrics()
	src := "jwt: [{issuer: \"" + ti.URL + "\", audiences: [api]}]\ncaches: {tokens: {max_entries: 16}}\n" + minimal
	s, err := Parse([]byte(src), "test.yaml", ".", Options{OnTokenCache: m.TokenCache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	var last string
	for i := range 100 {
		last = jwttest.Sign(t, ti.Key(), ti.Claims(time.Now(), "jti", fmt.Sprint(i)))
		if _, err := s.Authn.JWT.Authenticate(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Authn.JWT.Authenticate(ctx, last); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"hits": 1, "misses": 100} {
		if got := plainCounter(t, m, "sekisho_token_cache_"+name+"_total"); got != want {
			t.Errorf("sekisho_token_cache_%s_total = %v, want %v", name, got, want)
		}
	}
	// At most 16 of the 100 stay (fewer when a shard saw no token).
	if got := plainCounter(t, m, "sekisho_token_cache_evictions_total"); got < 100-16 || got >= 100 {
		t.Errorf("sekisho_token_cache_evictions_total = %v, want 84..99 with max_entries 16", got)
	}
}

// plainCounter is the value of a counter without labels.
func plainCounter(t *testing.T, m *telemetry.Metrics, family string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == family && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", family)
	return 0
}

// TestSessionCacheMetrics: the cookie store a snapshot builds reports its
// decoded-session cache's hits and misses to the metrics passed in.
func TestSessionCacheMetrics(t *testing.T) {
	m := telemetry.NewMetrics()
	src := `
listen: {http: "127.0.0.1:18996"}
providers: [{name: dev, builtin: {users: [{email: a@example.com, password: x}]}}]
caches: {sessions: {max_entries: 100, max_mib: 1}}
routes:
  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [x]}]}
`
	s, err := Parse([]byte(src), "test.yaml", ".", Options{OnSessionCache: m.SessionCache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	sess := &session.Session{ID: "s1", Provider: "dev", Identity: &identity.Identity{Subject: "a"}, ExpiresAt: time.Now().Add(time.Hour)}
	cookies, err := cookieStore(t, s).Save(ctx, httptest.NewRequest("GET", "/", nil), sess)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for range 3 {
		if _, err := cookieStore(t, s).Load(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]float64{"hits": 2, "misses": 1, "evictions": 0} {
		if got := plainCounter(t, m, "sekisho_session_cache_"+name+"_total"); got != want {
			t.Errorf("sekisho_session_cache_%s_total = %v, want %v", name, got, want)
		}
	}
}
