package jwtauth

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// secs turns a list of seconds into durations, for readable expectations.
func secs(ss ...float64) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = time.Duration(s * float64(time.Second))
	}
	return out
}

// simRequests yields the kids requested at offset at (every 10ms).
type simRequests func(at time.Duration) []string

// during requests kid every tick in [from, to).
func during(kid string, from, to float64) simRequests {
	return func(at time.Duration) []string {
		if at >= secs(from)[0] && at < secs(to)[0] {
			return []string{kid}
		}
		return nil
	}
}

// madeUp requests a new, never published kid every tick in [from, to).
func madeUp(from, to float64) simRequests {
	return func(at time.Duration) []string {
		if at >= secs(from)[0] && at < secs(to)[0] {
			return []string{fmt.Sprintf("made-up-%d", at)}
		}
		return nil
	}
}

// simulate drives a schedule (1s..30s backoff, regular refresh every
// hour) with requests every 10ms for the given duration. The JWKS has a
// kid from its publish offset on; a request is refused, and handed to the
// schedule, only when the keys from the last fetch lack its kid. It
// returns the offsets of all fetches, the one at start included.
func simulate(total time.Duration, published map[string]float64, reqs ...simRequests) []time.Duration {
	const tick = 10 * time.Millisecond
	s := newSchedule(time.Second, 30*time.Second)
	start := t0
	s.regularAt = start
	keysAt := func(at time.Duration) *keySet {
		ks := &keySet{kids: map[kidHash]struct{}{}}
		for kid, from := range published {
			if at >= secs(from)[0] {
				ks.kids[hashKID(kid)] = struct{}{}
			}
		}
		return ks
	}
	var have *keySet
	var fetches []time.Duration
	for at := time.Duration(0); at < total; at += tick {
		now := start.Add(at)
		for _, r := range reqs {
			for _, kid := range r(at) {
				if have != nil {
					if _, ok := have.kids[hashKID(kid)]; ok {
						continue
					}
				}
				s.unknown(now, hashKID(kid))
			}
		}
		for !s.next().After(now) {
			fetches = append(fetches, at)
			have = keysAt(at)
			s.regularAt = now.Add(time.Hour)
			s.fetched(now, have)
		}
	}
	return fetches
}

// capSteps lists the fetches of a backoff held at the 30s cap: one every
// 30s from first while before end.
func capSteps(first, end float64) []float64 {
	var out []float64
	for at := first; at < end; at += 30 {
		out = append(out, at)
	}
	return out
}

// TestScheduleBackoff: which fetches unknown kids cause. The first
// sequence is the same in most cases: at once, then after 1, 2, 4, 8, 16
// and 30 s, then the kid is given up on.
func TestScheduleBackoff(t *testing.T) {
	firstSequence := []float64{60, 61, 63, 67, 75, 91, 121}
	tests := []struct {
		name      string
		total     float64
		published map[string]float64
		reqs      []simRequests
		want      []float64
	}{
		{
			name:      "a JWKS 1.5s behind the issuer is caught on the second retry",
			total:     80,
			published: map[string]float64{"k2": 61.5},
			reqs:      []simRequests{during("k2", 60, 80)},
			want:      []float64{0, 60, 61, 63},
		},
		{
			name:      "a kid seen just after a fetch waits one step, not the cap",
			total:     10,
			published: map[string]float64{"k2": 0.1},
			reqs:      []simRequests{during("k2", 0.3, 10)},
			want:      []float64{0, 1},
		},
		{
			name:  "a kid never published: 1, 2, 4, 8, 16, 30 s, then given up",
			total: 400,
			reqs:  []simRequests{during("k9", 60, 400)},
			want:  append([]float64{0}, firstSequence...),
		},
		{
			name:  "a kid given up on starts a new sequence only after it is forgotten (10 min)",
			total: 800,
			reqs:  []simRequests{during("old", 60, 800)},
			want:  append(append([]float64{0}, firstSequence...), 721, 722, 724, 728, 736, 752, 782),
		},
		{
			name:  "a flood of made-up kids: one fetch per 30 s once at the cap",
			total: 660,
			reqs:  []simRequests{madeUp(60, 660)},
			want:  append(append([]float64{0}, firstSequence...), capSteps(151, 660)...),
		},
		{
			name:      "a new kid while the backoff is at the cap waits for the step; finding it resets the backoff",
			total:     200,
			published: map[string]float64{"k2": 131.5, "k3": 162.5},
			reqs:      []simRequests{during("old", 60, 200), during("k2", 130, 200), during("k3", 160, 200)},
			want:      append(append([]float64{0}, firstSequence...), 151, 160, 161, 163),
		},
		{
			name:      "after a quiet period the backoff starts again at 1 s",
			total:     300,
			published: map[string]float64{"k2": 261.5},
			reqs:      []simRequests{during("old", 60, 300), during("k2", 260, 300)},
			want:      append(append([]float64{0}, firstSequence...), 260, 261, 263),
		},
		{
			// The fetch at 301 installs k2. The made-up kids have filled
			// the kids the sequence tracks, so k2 is not one of them and
			// its arrival does not reset the backoff for them either.
			name:      "made-up kids during a real rotation delay it at most one cap step",
			total:     400,
			published: map[string]float64{"k2": 300},
			reqs:      []simRequests{madeUp(60, 400), during("k2", 300, 400)},
			want:      slices.Concat([]float64{0}, firstSequence, capSteps(151, 400)),
		},
		{
			// A kid the sequence tracks and finds resets the backoff, so
			// the made-up kids it tracked too get one more short
			// sequence: a cost per real rotation, which they cannot cause.
			name:      "a real rotation among a few made-up kids resets the backoff",
			total:     400,
			published: map[string]float64{"k2": 140},
			reqs:      []simRequests{during("junk", 60, 400), during("k2", 130, 400), during("junk2", 130, 400)},
			want:      slices.Concat([]float64{0}, firstSequence, []float64{151, 152, 154, 158, 166, 182, 212}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := simulate(secs(tt.total)[0], tt.published, tt.reqs...)
			if want := secs(tt.want...); !slices.Equal(got, want) {
				t.Errorf("fetches at\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestScheduleFloodBound: however many made-up kids arrive, no two
// unknown-kid fetches are closer than the step they were scheduled with,
// and once at the cap they are at least 30s apart.
func TestScheduleFloodBound(t *testing.T) {
	for _, perTick := range []int{1, 20} {
		t.Run(fmt.Sprint(perTick, " kids per 10ms"), func(t *testing.T) {
			flood := func(at time.Duration) []string {
				out := make([]string, perTick)
				for i := range out {
					out[i] = strconv.Itoa(int(at/time.Millisecond)) + "/" + strconv.Itoa(i)
				}
				return out
			}
			got := simulate(10*time.Minute, nil, flood)
			// 1 at start + 7 for the first sequence + one per 30s for the rest.
			if max := 1 + 7 + int((10*time.Minute-121*time.Second)/(30*time.Second)) + 1; len(got) > max {
				t.Errorf("%d fetches in 10 min, want at most %d", len(got), max)
			}
			for i := 8; i < len(got); i++ {
				if gap := got[i] - got[i-1]; gap < 30*time.Second {
					t.Errorf("fetches %d and %d only %s apart", i-1, i, gap)
				}
			}
		})
	}
}

// loopHarness builds an Authenticator with the production backoff (1s
// doubling to 30s) on a fake clock against ti, and waits for its first
// fetch. It returns the deadline the refresh goroutine then armed.
func loopHarness(t *testing.T, ti *jwttest.Issuer, opts Options) (*harness, time.Time) {
	t.Helper()
	opts.clock = newFakeClock()
	opts.KIDRetryMin, opts.KIDRetryMax = time.Second, 30*time.Second
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, opts)
	h.mustRefreshOK(t)
	return h, h.nextArmed(t)
}

// refuse sends a token that must be refused for its unknown kid and waits
// until the refresh goroutine has handled it. If that made a fetch due, it
// waits for the fetch too. It returns the deadline armed last.
func (h *harness) refuse(t *testing.T, tok string) time.Time {
	t.Helper()
	_, err := h.Authenticate(context.Background(), tok)
	wantInvalid(t, err, "unknown signing key", tok)
	return h.fetchIfDue(t, h.nextArmed(t))
}

// fetchIfDue waits for the fetch a deadline at or before now starts, and
// for the timer armed after it.
func (h *harness) fetchIfDue(t *testing.T, at time.Time) time.Time {
	t.Helper()
	for !at.After(h.fake.Now()) {
		h.nextRefresh(t)
		at = h.nextArmed(t)
	}
	return at
}

// TestBackoffThroughRefreshLoop: the real refresh goroutine, on a fake
// clock, against a real JWKS server that never publishes the kid, fetches
// at the offsets the schedule promises and then stops.
func TestBackoffThroughRefreshLoop(t *testing.T) {
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	h, regular := loopHarness(t, ti, Options{})
	if want := t0.Add(time.Hour); !regular.Equal(want) {
		t.Fatalf("regular refresh armed for %s, want %s", regular, want)
	}
	h.fake.Advance(time.Minute)
	tok := jwttest.Sign(t, jwttest.NewKey(t, "k9", jose.ES256), ti.Claims(t0))
	at := h.refuse(t, tok) // fetches at once: the last fetch was a minute ago
	fetches := []time.Duration{time.Minute}
	for at.Sub(h.fake.Now()) < time.Hour { // not yet the regular refresh
		// Requests keep coming; the kid is already wanted, so they change nothing.
		if got := h.refuse(t, tok); !got.Equal(at) {
			t.Fatalf("a repeated kid moved the next fetch from %s to %s", at.Sub(t0), got.Sub(t0))
		}
		h.fake.AdvanceTo(at)
		fetches = append(fetches, at.Sub(t0))
		h.nextRefresh(t)
		at = h.nextArmed(t)
	}
	if want := secs(60, 61, 63, 67, 75, 91, 121); !slices.Equal(fetches, want) {
		t.Errorf("fetches at %v, want %v", fetches, want)
	}
	// Every fetch restarts the regular interval.
	if regular = t0.Add(121*time.Second + time.Hour); !at.Equal(regular) {
		t.Errorf("after giving up, next fetch at %s, want the regular %s", at.Sub(t0), regular.Sub(t0))
	}
	// Given up: the same kid no longer schedules anything.
	h.fake.Advance(time.Minute)
	if got := h.refuse(t, tok); !got.Equal(regular) {
		t.Errorf("a given-up kid scheduled a fetch at %s", got.Sub(t0))
	}
	if n := ti.JWKSHits(); n != 1+7 {
		t.Errorf("JWKS fetched %d times, want 8", n)
	}
}

// TestMadeUpKidFloodThroughRefreshLoop: ten minutes (fake) of a new
// made-up kid every 100ms against a real JWKS server cost it the start
// fetch, one backoff sequence and one fetch per 30s.
func TestMadeUpKidFloodThroughRefreshLoop(t *testing.T) {
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	var refused atomic.Int64
	h, at := loopHarness(t, ti, Options{OnUnknownKID: func(string) { refused.Add(1) }})
	signer := jwttest.NewKey(t, "", jose.ES256)
	const step = 100 * time.Millisecond
	n := 0
	for h.fake.Now().Before(t0.Add(10 * time.Minute)) {
		if !h.fake.Now().Before(t0.Add(time.Minute)) {
			forged := &jwttest.Key{Kid: fmt.Sprint("made-up-", n), Alg: jose.ES256, Private: signer.Private}
			at = h.refuse(t, jwttest.Sign(t, forged, ti.Claims(t0)))
			n++
		}
		h.fake.Advance(step)
		at = h.fetchIfDue(t, at)
	}
	// Start, the sequence 60…121 s, then 151, 181, … 571 s.
	want := 1 + 7 + len(capSteps(151, 600))
	if hits := ti.JWKSHits(); hits != want {
		t.Errorf("JWKS fetched %d times for %d made-up kids, want %d", hits, n, want)
	}
	if got := refused.Load(); got != int64(n) {
		t.Errorf("OnUnknownKID called %d times for %d refusals", got, n)
	}
}

// TestRegularRefreshFollowsCacheControl: max-age sets the regular
// interval, clamped to 1m..24h; no-store, no-cache or no header use
// RefreshInterval.
func TestRegularRefreshFollowsCacheControl(t *testing.T) {
	tests := []struct {
		cacheControl string
		want         time.Duration
	}{
		{"", time.Hour}, // the harness's RefreshInterval
		{"public, max-age=300", 5 * time.Minute},
		{"max-age=7200", 2 * time.Hour}, // longer than RefreshInterval: the issuer says so
		{"max-age=1", time.Minute},
		{"max-age=0", time.Minute},
		{"max-age=8640000", 24 * time.Hour},
		{"no-store", time.Hour},
		{"no-cache, max-age=300", time.Hour},
		{"max-age=soon", time.Hour},
	}
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	for _, tt := range tests {
		t.Run(tt.cacheControl, func(t *testing.T) {
			ti.SetCacheControl(tt.cacheControl)
			h, at := loopHarness(t, ti, Options{})
			if got := at.Sub(t0); got != tt.want {
				t.Errorf("next refresh after %s, want %s", got, tt.want)
			}
			hits := ti.JWKSHits()
			h.fake.AdvanceTo(at) // and it does refresh then
			h.mustRefreshOK(t)
			if n := ti.JWKSHits() - hits; n != 1 {
				t.Errorf("JWKS hits at the deadline = %d, want 1", n)
			}
			h.Close()
		})
	}
}

func TestFreshness(t *testing.T) {
	tests := []struct {
		cacheControl []string
		age          string
		want         time.Duration
	}{
		{nil, "", -1},
		{[]string{"max-age=300"}, "", 300 * time.Second},
		{[]string{"max-age=300"}, "100", 200 * time.Second}, // a CDN held it 100s already
		{[]string{"max-age=300"}, "400", 0},
		{[]string{"max-age=300"}, "soon", 300 * time.Second}, // malformed Age is ignored
		{[]string{"public", "max-age=120"}, "", 120 * time.Second},
		{[]string{"max-age=120", "no-store"}, "", -1},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.cacheControl {
			h.Add("Cache-Control", v)
		}
		if tt.age != "" {
			h.Set("Age", tt.age)
		}
		if got := freshness(h); got != tt.want {
			t.Errorf("freshness(%v, Age %q) = %s, want %s", tt.cacheControl, tt.age, got, tt.want)
		}
	}
}

func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store", `max-age="5", public`, "max-age=99999999999999999999", "max-age=-1,,="} {
		f.Add(s, "10")
	}
	f.Fuzz(func(t *testing.T, cc, age string) {
		h := http.Header{"Cache-Control": {cc}, "Age": {age}}
		got := freshness(h)
		if got != -1 && (got < 0 || got > maxDelta) {
			t.Fatalf("freshness(%q, %q) = %s", cc, age, got)
		}
	})
}

// TestRefreshMetricHooks: OnUnknownKID counts refusals for a kid the keys
// lack (not a known kid used with the wrong algorithm), and OnKeyRefresh
// reports each fetch's result.
func TestRefreshMetricHooks(t *testing.T) {
	k1 := jwttest.NewKey(t, "k1", jose.ES256)
	ti := newIssuerWith(t, k1)
	var mu sync.Mutex
	var unknown, results []string
	h, at := loopHarness(t, ti, Options{
		OnUnknownKID: func(iss string) { mu.Lock(); unknown = append(unknown, iss); mu.Unlock() },
		OnKeyRefresh: func(iss, result string) { mu.Lock(); results = append(results, iss+" "+result); mu.Unlock() },
	})
	wrongAlg := jwttest.SignWith(t, jose.ES384, jose.JSONWebKey{Key: jwttest.NewKey(t, "x", jose.ES384).Private, KeyID: "k1"}, ti.Claims(t0))
	h2 := newHarness(t, []IssuerConfig{issuerConfig(ti, func(c *IssuerConfig) { c.Algorithms = []string{"ES256", "ES384"} })}, Options{
		OnUnknownKID: func(iss string) { mu.Lock(); unknown = append(unknown, "wrong alg counted"); mu.Unlock() },
	})
	h2.mustRefreshOK(t)
	_, err := h2.Authenticate(context.Background(), wrongAlg)
	wantInvalid(t, err, "unknown signing key", wrongAlg)

	h.fake.AdvanceTo(at) // unchanged
	h.mustRefreshOK(t)
	at = h.nextArmed(t)
	ti.Publish(jwttest.NewKey(t, "k2", jose.ES256))
	h.fake.AdvanceTo(at) // updated
	h.mustRefreshOK(t)
	at = h.nextArmed(t)
	ti.SetDown(true)
	h.fake.AdvanceTo(at)
	if err := h.nextRefresh(t); err == nil {
		t.Fatal("fetch from a down issuer succeeded")
	}
	tok := jwttest.Sign(t, jwttest.NewKey(t, "k9", jose.ES256), ti.Claims(t0))
	h.refuse(t, tok)

	mu.Lock()
	defer mu.Unlock()
	if want := []string{ti.URL}; !slices.Equal(unknown, want) {
		t.Errorf("OnUnknownKID calls %q, want %q", unknown, want)
	}
	want := []string{ti.URL + " updated", ti.URL + " unchanged", ti.URL + " updated", ti.URL + " failed"}
	if len(results) < len(want) || !slices.Equal(results[:len(want)], want) {
		t.Errorf("OnKeyRefresh calls\n%s\nwant them to start with\n%s", strings.Join(results, "\n"), strings.Join(want, "\n"))
	}
}
