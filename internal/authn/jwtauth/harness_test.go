package jwtauth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// t0 is the fixed "now" of every test clock.
var t0 = time.Unix(1_800_000_000, 0)

// testClock is an adjustable Options.Now.
type testClock struct{ ns atomic.Int64 }

func newClock() *testClock {
	c := &testClock{}
	c.set(t0)
	return c
}
func (c *testClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *testClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }

// refreshEvent is one key fetch attempt reported by the onRefresh hook.
type refreshEvent struct {
	issuer string
	err    error
}

// harness is an Authenticator wired to a test clock, a captured log and a
// channel of refresh events. Refreshes are scheduled on the real clock
// unless the test passes a fakeClock as Options.clock.
type harness struct {
	*Authenticator
	clock  *testClock
	fake   *fakeClock // nil unless the test gave one
	events chan refreshEvent
	logs   *testutil.SyncBuffer
}

func newHarness(t testing.TB, cfgs []IssuerConfig, opts Options) *harness {
	t.Helper()
	h := &harness{clock: newClock(), events: make(chan refreshEvent, 1000), logs: &testutil.SyncBuffer{}}
	opts.Now = h.clock.now
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	opts.onRefresh = func(iss string, err error) {
		select {
		case h.events <- refreshEvent{iss, err}:
		default:
		}
	}
	h.fake, _ = opts.clock.(*fakeClock)
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = time.Hour // refreshes in tests happen when the test asks
	}
	if opts.KIDRetryMin == 0 {
		opts.KIDRetryMin = 5 * time.Millisecond // unknown kids refetch almost at once
	}
	if opts.KIDRetryMax == 0 {
		opts.KIDRetryMax = max(opts.KIDRetryMin, 40*time.Millisecond)
	}
	a, err := New(context.Background(), cfgs, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(a.Close)
	h.Authenticator = a
	return h
}

// nextRefresh waits for the next fetch attempt and returns its error.
func (h *harness) nextRefresh(t testing.TB) error {
	t.Helper()
	select {
	case ev := <-h.events:
		return ev.err
	case <-time.After(10 * time.Second):
		t.Fatal("no key refresh within 10s")
		return nil
	}
}

// mustRefreshOK waits for the next fetch and requires it to succeed.
func (h *harness) mustRefreshOK(t testing.TB) {
	t.Helper()
	if err := h.nextRefresh(t); err != nil {
		t.Fatalf("refresh failed: %v", err)
	}
}

// issuerConfig trusts ti for audience "api", modified by mod.
func issuerConfig(ti *jwttest.Issuer, mod ...func(*IssuerConfig)) IssuerConfig {
	c := IssuerConfig{Issuer: ti.URL, Audiences: []string{"api"}}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// wantInvalid checks err is an ErrInvalidToken with the given reason and
// does not echo the token.
func wantInvalid(t testing.TB, err error, reason, token string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want rejection %q", reason)
	}
	if !errors.Is(err, ErrInvalidToken) {
		t.Errorf("error %v is not ErrInvalidToken", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(reason)) {
		t.Errorf("error %q, want reason %q", err, reason)
	}
	if len(token) > 16 && bytes.Contains([]byte(err.Error()), []byte(token)) {
		t.Errorf("error echoes the token")
	}
}

// newIssuerWith starts a test issuer that publishes exactly keys, without
// its default key, so each test controls the whole JWKS.
func newIssuerWith(t testing.TB, keys ...*jwttest.Key) *jwttest.Issuer {
	t.Helper()
	ti := jwttest.NewIssuer(t)
	ti.Unpublish(ti.Key().Kid)
	ti.Publish(keys...)
	return ti
}

// fakeClock is a refresh-schedule clock that moves only when the test
// advances it. Every Reset reports its deadline on armed. The refresh
// goroutine resets its timer once after each kid it is handed and once
// after each fetch (before the onRefresh event), so a test knows exactly
// when it has caught up, without sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: t0, armed: make(chan time.Time, 10000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer is not reported on armed: the refresh goroutine creates its one
// timer at start, before the first fetch.
func (c *fakeClock) NewTimer(d time.Duration) timer {
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, t)
	t.at, t.active = c.now.Add(d), true
	t.fireIfDue(c.now)
	return t
}

// Advance moves the clock forward and fires the timers that came due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.fireIfDue(c.now)
	}
}

// AdvanceTo moves the clock to at (never backwards).
func (c *fakeClock) AdvanceTo(at time.Time) {
	if d := at.Sub(c.Now()); d > 0 {
		c.Advance(d)
	}
}

type fakeTimer struct {
	clk    *fakeClock
	c      chan time.Time
	at     time.Time
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

// Reset behaves like time.Timer.Reset since Go 1.23: a tick not yet
// received is discarded.
func (t *fakeTimer) Reset(d time.Duration) {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-t.c:
	default:
	}
	t.at, t.active = c.now.Add(d), true
	t.fireIfDue(c.now)
	select {
	case c.armed <- t.at:
	default:
		panic("fakeClock: armed channel full; the test does not drain it")
	}
}

func (t *fakeTimer) Stop() {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.active = false
}

// fireIfDue runs with clk.mu held.
func (t *fakeTimer) fireIfDue(now time.Time) {
	if t.active && !now.Before(t.at) {
		t.active = false
		select {
		case t.c <- now:
		default:
		}
	}
}

// nextArmed waits for the refresh goroutine to arm its timer and returns
// the deadline.
func (h *harness) nextArmed(t testing.TB) time.Time {
	t.Helper()
	select {
	case at := <-h.fake.armed:
		return at
	case <-time.After(10 * time.Second):
		t.Fatal("refresh goroutine armed no timer within 10s")
		return time.Time{}
	}
}
