package jwtauth

import (
	"context"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

func benchHarness(b *testing.B, alg jose.SignatureAlgorithm) (*harness, *jwttest.Issuer, *jwttest.Key) {
	b.Helper()
	key := jwttest.NewKey(b, "k1", alg)
	ti := newIssuerWith(b, key)
	h := newHarness(b, []IssuerConfig{issuerConfig(ti)}, Options{})
	h.mustRefreshOK(b)
	return h, ti, key
}

func BenchmarkAuthenticateCached(b *testing.B) {
	h, ti, key := benchHarness(b, jose.RS256)
	tok := jwttest.Sign(b, key, ti.Claims(t0))
	ctx := context.Background()
	if _, err := h.Authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateCachedParallel(b *testing.B) {
	h, ti, key := benchHarness(b, jose.RS256)
	tok := jwttest.Sign(b, key, ti.Claims(t0))
	ctx := context.Background()
	if _, err := h.Authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer() // the issuer's RSA key generation is not part of it
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Authenticate(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAuthenticateFirstSeen measures the uncached path (parse, verify,
// validate, map, cache insert). It cycles through distinct tokens and
// empties the cache, untimed, before any token would be seen twice.
func BenchmarkAuthenticateFirstSeen(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		b.Run(string(alg), func(b *testing.B) {
			h, ti, key := benchHarness(b, alg)
			tokens := make([]string, 256)
			for i := range tokens {
				tokens[i] = jwttest.Sign(b, key, ti.Claims(t0, "jti", string(rune('a'+i))))
			}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(tokens) {
					b.StopTimer()
					h.cache = newTokenCache(10000)
					i = 0
					b.StartTimer()
				}
				if _, err := h.Authenticate(ctx, tokens[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkAuthenticateUnknownKID measures the refusal of a token whose kid
// the keys lack: parse, count, hand the kid to the refresh goroutine. A
// flood of made-up kids costs this much per request.
func BenchmarkAuthenticateUnknownKID(b *testing.B) {
	h, ti, _ := benchHarness(b, jose.ES256)
	tok := jwttest.Sign(b, jwttest.NewKey(b, "unknown", jose.ES256), ti.Claims(t0))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Authenticate(ctx, tok); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkKubeCached is a service-account token seen before, in each
// mode: TokenReview answers come from the same verified-token cache.
func BenchmarkKubeCached(b *testing.B) {
	for _, mode := range kubeModes {
		b.Run(mode.name, func(b *testing.B) {
			api := jwttest.NewKubeAPIServer(b)
			h := newKubeHarness(b, kubeConfig(api, mode.review))
			if !mode.review {
				h.mustRefreshOK(b)
			}
			tok := api.SAToken(b, "payments", "api", "sekisho")
			ctx := context.Background()
			if _, err := h.Authenticate(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Authenticate(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
