package session

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/session/redistest"
)

// TestSignOutRevokesCopiedCookie: a copy of the session cookie taken
// before sign-out is refused afterwards, in both stores, even when the
// copy was loaded (and, in the cookie store, cached decoded) before.
func TestSignOutRevokesCopiedCookie(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T, c *Codec, clk *clock) Store
	}{
		{"cookie", func(_ *testing.T, c *Codec, clk *clock) Store {
			return NewCookieStore(c, StoreOptions{Now: clk.Now})
		}},
		{"redis", func(t *testing.T, c *Codec, clk *clock) Store {
			return newRedisStore(t, redistest.Start(t), c, clk)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			st := tc.store(t, newCodec(t, CodecOptions{}), clk)
			copied := save(t, st, typicalSession("s1"))
			other := save(t, st, typicalSession("s2"))
			if _, err := load(st, copied); err != nil {
				t.Fatalf("load before sign-out: %v", err)
			}
			rec := httptest.NewRecorder()
			if err := st.Delete(context.Background(), rec, requestWith(copied...)); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if s, err := load(st, copied); !errors.Is(err, ErrRevoked) {
				t.Fatalf("copied cookie after sign-out: %v, %v; want ErrRevoked", s, err)
			}
			if _, err := load(st, other); err != nil {
				t.Errorf("another session after sign-out: %v", err)
			}
			// A new login gets a new ID and works.
			if _, err := load(st, save(t, st, typicalSession("s3"))); err != nil {
				t.Errorf("new login after sign-out: %v", err)
			}
		})
	}
}

// TestRedisSignOutAcrossInstances: two gateways sharing one Redis; signing
// out on one refuses the copied cookie on the other.
func TestRedisSignOutAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	codec := newCodec(t, CodecOptions{})
	a := newRedisStore(t, srv, codec, clk)
	b := newRedisStore(t, srv, codec, clk)
	copied := save(t, a, typicalSession("s1"))
	if _, err := load(b, copied); err != nil {
		t.Fatalf("load on the second instance: %v", err)
	}
	if err := a.Delete(context.Background(), httptest.NewRecorder(), requestWith(copied...)); err != nil {
		t.Fatal(err)
	}
	if _, err := load(b, copied); !errors.Is(err, ErrRevoked) {
		t.Fatalf("copied cookie on the second instance after sign-out: %v, want ErrRevoked", err)
	}
}

func TestCookieStoreRevocationExpires(t *testing.T) {
	clk := newClock()
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{Now: clk.Now, TTL: time.Hour})
	copied := save(t, st, typicalSession("s1"))
	if err := st.Delete(context.Background(), httptest.NewRecorder(), requestWith(copied...)); err != nil {
		t.Fatal(err)
	}
	if got := st.revoked.n.Load(); got != 1 {
		t.Fatalf("revoked entries = %d, want 1", got)
	}
	// Past the session's own end the cookie is refused as expired, and the
	// entry is dropped the next time the set is full.
	clk.Advance(time.Hour)
	if _, err := load(st, copied); !errors.Is(err, ErrExpired) {
		t.Fatalf("after the session's end: %v, want ErrExpired", err)
	}
	// Signing out an invalid or absent session revokes nothing.
	if err := st.Delete(context.Background(), httptest.NewRecorder(), requestWith()); err != nil {
		t.Fatal(err)
	}
	if got := st.revoked.n.Load(); got != 1 {
		t.Errorf("revoked entries = %d after a sign-out without session, want 1", got)
	}
}

func TestRevokedSetBounded(t *testing.T) {
	clk := newClock()
	s := newRevokedSet(2, clk.Now)
	t0 := clk.Now()
	if s.add("past", t0) {
		t.Error("an already-expired entry evicted something")
	}
	if s.has("past") {
		t.Error("an already-expired entry was added")
	}
	s.add("a", t0.Add(time.Hour))
	s.add("b", t0.Add(3*time.Hour))
	if !s.add("c", t0.Add(2*time.Hour)) {
		t.Error("a full set of live entries did not report an eviction")
	}
	if s.has("a") || !s.has("b") || !s.has("c") {
		t.Errorf("after eviction: a=%v b=%v c=%v; want the soonest-expiring (a) dropped", s.has("a"), s.has("b"), s.has("c"))
	}
	// Expired entries go first, without evicting live ones.
	clk.Advance(2*time.Hour + time.Second)
	if s.add("d", t0.Add(4*time.Hour)) {
		t.Error("evicted a live entry while an expired one could go")
	}
	if !s.has("b") || !s.has("d") || s.n.Load() != 2 {
		t.Errorf("after expiry: b=%v d=%v n=%d", s.has("b"), s.has("d"), s.n.Load())
	}
}
