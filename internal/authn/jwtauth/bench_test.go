package jwtauth

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
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
					h.cache = testCache(10000)
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

// BenchmarkAuthenticateDistinct cycles through n distinct valid tokens (ES256:
// signing 100,000 RS256 tokens would take minutes), each seen once per
// round, after one untimed warm-up round, with the default cache bounds and
// with the 10,000-entry bound the cache had before. It reports the hit ratio
// and the heap in use after the run (cache included).
func BenchmarkAuthenticateDistinct(b *testing.B) {
	if testing.Short() {
		b.Skip("signs 100,000 tokens")
	}
	key := jwttest.NewKey(b, "k1", jose.ES256)
	ti := newIssuerWith(b, key)
	all := make([]string, 100_000)
	for i := range all {
		all[i] = jwttest.Sign(b, key, ti.Claims(t0, "jti", fmt.Sprint(i),
			"email", fmt.Sprintf("user%d@example.com", i), "groups", []string{"staff", "eng", "oncall"}))
	}
	for _, size := range []struct {
		name    string
		entries int
	}{{"default", 0}, {"old-10000", 10_000}} {
		for _, n := range []int{1_000, 20_000, 100_000} {
			b.Run(fmt.Sprintf("cache=%s/tokens=%d", size.name, n), func(b *testing.B) {
				var hits, misses, evictions atomic.Int64
				before := heapInUse()
				h := newHarness(b, []IssuerConfig{issuerConfig(ti)}, Options{
					CacheSize: size.entries,
					OnCache: func(ev string) {
						switch ev {
						case CacheHit:
							hits.Add(1)
						case CacheMiss:
							misses.Add(1)
						case CacheEviction:
							evictions.Add(1)
						}
					},
				})
				h.mustRefreshOK(b)
				ctx := context.Background()
				tokens := all[:n]
				for _, tok := range tokens {
					if _, err := h.Authenticate(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
				hits.Store(0)
				misses.Store(0)
				evictions.Store(0)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := h.Authenticate(ctx, tokens[i]); err != nil {
						b.Fatal(err)
					}
					if i++; i == n {
						i = 0
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(hits.Load())/float64(hits.Load()+misses.Load()), "hit-ratio")
				b.ReportMetric(float64(evictions.Load())/float64(b.N), "evictions/op")
				heap := heapInUse() - before
				b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
				b.ReportMetric(float64(heap)/float64(max(1, h.cache.len())), "heap-B/entry")
				b.ReportMetric(float64(h.cache.c.Bytes())/float64(max(1, h.cache.len())), "counted-B/entry")
			})
		}
	}
}

// heapInUse is the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
