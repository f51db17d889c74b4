package config

import (
	"context"
	"fmt"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
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
