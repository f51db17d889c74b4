package jwtauth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn/jwt/jwttest"
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
// channel of refresh events.
type harness struct {
	*Authenticator
	clock  *testClock
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
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = time.Hour // refreshes in tests happen when the test asks
	}
	if opts.MinRefreshGap == 0 {
		opts.MinRefreshGap = time.Nanosecond
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
