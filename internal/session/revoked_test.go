package session

import (
	"context"
	"errors"
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
			if _, err := st.Delete(context.Background(), requestWith(copied...)); err != nil {
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
	if _, err := a.Delete(context.Background(), requestWith(copied...)); err != nil {
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
	if _, err := st.Delete(context.Background(), requestWith(copied...)); err != nil {
		t.Fatal(err)
	}
	if got := st.revoked.Len(); got != 1 {
		t.Fatalf("revoked entries = %d, want 1", got)
	}
	// Past the session's own end the cookie is refused as expired, and the
	// entry is dropped the next time the set is full.
	clk.Advance(time.Hour)
	if _, err := load(st, copied); !errors.Is(err, ErrExpired) {
		t.Fatalf("after the session's end: %v, want ErrExpired", err)
	}
	// Signing out an invalid or absent session revokes nothing.
	if _, err := st.Delete(context.Background(), requestWith()); err != nil {
		t.Fatal(err)
	}
	if got := st.revoked.Len(); got != 1 {
		t.Errorf("revoked entries = %d after a sign-out without session, want 1", got)
	}
}

// TestCookieStoreUseRevocations: a store built on a reload with the old
// store's revocations refuses cookies signed out at the old one, and
// records its own sign-outs where the old one sees them.
func TestCookieStoreUseRevocations(t *testing.T) {
	clk := newClock()
	codec := newCodec(t, CodecOptions{})
	old := NewCookieStore(codec, StoreOptions{Now: clk.Now})
	before, after := save(t, old, typicalSession("s1")), save(t, old, typicalSession("s2"))
	if _, err := old.Delete(context.Background(), requestWith(before...)); err != nil {
		t.Fatal(err)
	}
	cur := NewCookieStore(codec, StoreOptions{Now: clk.Now})
	cur.UseRevocations(old.Revocations())
	if _, err := load(cur, before); !errors.Is(err, ErrRevoked) {
		t.Fatalf("cookie signed out before the rebuild: %v, want ErrRevoked", err)
	}
	if _, err := cur.Delete(context.Background(), requestWith(after...)); err != nil {
		t.Fatal(err)
	}
	if _, err := load(old, after); !errors.Is(err, ErrRevoked) {
		t.Fatalf("cookie signed out at the new store, at the old one: %v, want ErrRevoked", err)
	}
	if fresh := NewCookieStore(codec, StoreOptions{Now: clk.Now}); fresh.Revocations().set == old.Revocations().set {
		t.Error("a new store shares revocations it was not given")
	}
}
