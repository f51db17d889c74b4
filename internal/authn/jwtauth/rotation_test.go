package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// productionBackoff is the default unknown-kid backoff, for the tests that
// run against the real clock.
var productionBackoff = Options{KIDRetryMin: time.Second, KIDRetryMax: 30 * time.Second}

// TestLaggingJWKSRecovers is the rotation behind a lagging JWKS: the issuer
// signs with a new key about a second before its JWKS serves it. Eight
// clients send requests with the new key for about five seconds. Requests
// sent from three seconds after the JWKS publishes the key on must all
// succeed (with the schedule, the key is fetched about two seconds after
// publishing; before, the next fetch came 30s after the first), and the
// JWKS must see only a few fetches. The test runs on the real clock, so it
// asserts bounds with margin, never exact times.
func TestLaggingJWKSRecovers(t *testing.T) {
	k1 := jwttest.NewKey(t, "k1", jose.ES256)
	ti := newIssuerWith(t, k1)
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, productionBackoff)
	h.mustRefreshOK(t)
	hitsBefore := ti.JWKSHits()

	k2 := jwttest.NewKey(t, "k2", jose.ES256)
	const clients, tokensPerClient = 8, 25
	tokens := make([][]string, clients)
	for c := range tokens {
		for i := range tokensPerClient {
			tokens[c] = append(tokens[c], jwttest.Sign(t, k2, ti.Claims(t0, "sub", fmt.Sprintf("client-%d-%d", c, i))))
		}
	}

	const lag, run, recovery = time.Second, 5500 * time.Millisecond, 3 * time.Second
	start := time.Now()
	var publishedAt atomic.Int64 // ns after start
	publish := time.AfterFunc(lag, func() {
		ti.Publish(k2)
		publishedAt.Store(int64(time.Since(start)))
	})
	defer publish.Stop()

	type result struct {
		sent time.Duration // after start
		err  error
	}
	results := make([][]result, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond) // paced: about 1600 requests/s in all
			defer tick.Stop()
			for i := 0; time.Since(start) < run; i++ {
				sent := time.Since(start)
				_, err := h.Authenticate(context.Background(), tokens[c][i%tokensPerClient])
				results[c] = append(results[c], result{sent, err})
				<-tick.C
			}
		})
	}
	wg.Wait()

	pub := time.Duration(publishedAt.Load())
	if pub == 0 {
		t.Fatal("the key was never published")
	}
	var total, late, lateFailed, refused int
	var firstOK time.Duration = -1
	for _, rs := range results {
		for _, r := range rs {
			total++
			if r.err != nil {
				refused++
				if !errors.Is(r.err, ErrInvalidToken) {
					t.Fatalf("unexpected error: %v", r.err)
				}
			} else if firstOK < 0 || r.sent < firstOK {
				firstOK = r.sent
			}
			if r.sent >= pub+recovery {
				late++
				if r.err != nil {
					lateFailed++
				}
			}
		}
	}
	fetches := ti.JWKSHits() - hitsBefore
	t.Logf("%d requests, %d refused; published at %s, first success sent at %s; %d JWKS fetches",
		total, refused, pub.Round(time.Millisecond), firstOK.Round(time.Millisecond), fetches)
	if late < 50 {
		t.Fatalf("only %d requests sent more than %s after publishing: too few to judge", late, recovery)
	}
	if lateFailed > 0 {
		t.Errorf("%d of %d requests sent more than %s after the JWKS published the key were refused", lateFailed, late, recovery)
	}
	if fetches > 6 {
		t.Errorf("%d JWKS fetches during the run, want a few (at most 6)", fetches)
	}
}

// TestRotationManyTokens is a plain rotation done twice in a row, with
// 8,000 distinct tokens: each round publishes a new key, then sends its
// tokens from eight clients over about two seconds. Requests that arrive before the refresh they
// triggered has landed are refused; the key must be installed soon after
// (polled with a deadline), and then every token of the round verifies.
// Before, the second round came within 30s of the first round's refresh,
// so no refresh was allowed and the whole round kept failing.
func TestRotationManyTokens(t *testing.T) {
	total := 8000
	if testing.Short() || raceEnabled {
		total = 800
	}
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, productionBackoff)
	h.mustRefreshOK(t)
	hitsBefore := ti.JWKSHits()
	ctx := context.Background()

	for round := range 2 {
		key := jwttest.NewKey(t, fmt.Sprintf("round-%d", round), jose.ES256)
		ti.Publish(key)
		tokens := make([]string, total/2)
		for i := range tokens {
			tokens[i] = jwttest.Sign(t, key, ti.Claims(t0, "sub", fmt.Sprintf("user-%d-%d", round, i)))
		}

		var refused atomic.Int64
		failed := make([]bool, len(tokens))
		var wg sync.WaitGroup
		const clients = 8
		for c := range clients {
			wg.Go(func() {
				tick := time.NewTicker(4 * time.Millisecond) // paced: a round takes about 2s
				defer tick.Stop()
				for i := c; i < len(tokens); i += clients {
					<-tick.C
					if _, err := h.Authenticate(ctx, tokens[i]); err != nil {
						wantInvalid(t, err, "unknown signing key", tokens[i])
						failed[i] = true
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()

		// The refresh the first refusal scheduled lands within a step.
		deadline := time.Now().Add(5 * time.Second)
		for h.issuers[ti.URL].keys.Load().byKID[key.Kid] == nil {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: key not installed 5s after %d refusals", round, refused.Load())
			}
			time.Sleep(10 * time.Millisecond) // polling the key set with a deadline
		}
		for i, f := range failed {
			if f {
				if _, err := h.Authenticate(ctx, tokens[i]); err != nil {
					t.Fatalf("round %d: token %d after the refresh: %v", round, i, err)
				}
			}
		}
		t.Logf("round %d: %d of %d refused before the refresh landed", round, refused.Load(), len(tokens))
	}
	if fetches := ti.JWKSHits() - hitsBefore; fetches > 6 {
		t.Errorf("%d JWKS fetches for two rotations, want at most 6", fetches)
	}
}
