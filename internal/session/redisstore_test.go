package session

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sekisho/sekisho/internal/session/redistest"
)

func newRedisStore(t *testing.T, srv *redistest.Server, codec *Codec, clk *clock) *RedisStore {
	t.Helper()
	st, err := NewRedisStore(context.Background(), srv.URL(), codec, StoreOptions{Now: clk.Now})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// rawRedis is a plain client for looking at what the store wrote.
func rawRedis(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// save saves s on a request carrying prev and returns the cookies set.
func save(t *testing.T, st Store, s *Session, prev ...*http.Cookie) []*http.Cookie {
	t.Helper()
	cookies, err := st.Save(context.Background(), requestWith(prev...), s)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	return cookies
}

func load(st Store, cookies []*http.Cookie) (*Session, error) {
	return st.Load(context.Background(), requestWith(cookies...))
}

func TestRedisStoreSaveLoad(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	codec := newCodec(t, CodecOptions{})
	st := newRedisStore(t, srv, codec, clk)
	rdb := rawRedis(t, srv)
	ctx := context.Background()

	cookies := save(t, st, typicalSession("s1"))
	if len(cookies) != 1 || len(cookies[0].Value) > 200 {
		t.Fatalf("want one small ticket cookie, got %d cookies, first %d bytes", len(cookies), len(cookies[0].Value))
	}
	got, err := load(st, cookies)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.ID != "s1" || got.Identity.Email != "alice@example.com" || got.IDToken != typicalSession("s1").IDToken {
		t.Fatalf("loaded %+v", got)
	}

	// Layout: the session under the ticket's hash, with the remaining
	// lifetime as TTL, and in both revocation indexes.
	plain, err := codec.Decode(requestWith(cookies...))
	if err != nil {
		t.Fatal(err)
	}
	ticket := plain[:ticketSize]
	key := sessionKey(ticket)
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("want session + 2 index keys, got %v", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, hex.EncodeToString(ticket)) || strings.Contains(k, cookies[0].Value) {
			t.Fatalf("key %q holds the ticket", k)
		}
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl < 12*time.Hour-time.Minute || ttl > 12*time.Hour {
		t.Fatalf("session TTL %v, want about 12h", ttl)
	}
	for _, idx := range []string{
		indexKey(sidPrefix, "https://idp.example.com", typicalSession("").SID),
		indexKey(subPrefix, "https://idp.example.com", "248289761001"),
	} {
		if !rdb.SIsMember(ctx, idx, key).Val() || rdb.TTL(ctx, idx).Val() <= 0 {
			t.Fatalf("session not in index %s with a TTL", idx)
		}
	}

	// A restarted sekisho (a new store, same Redis and keys) still knows it.
	if got, err := load(newRedisStore(t, srv, codec, clk), cookies); err != nil || got.ID != "s1" {
		t.Fatalf("after store restart: %v, %v", got, err)
	}
}

func TestRedisStoreSaveKeepsOrReplacesTicket(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := newRedisStore(t, srv, newCodec(t, CodecOptions{}), clk)
	rdb := rawRedis(t, srv)

	first := save(t, st, typicalSession("s1"))
	s, err := load(st, first)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Minute)
	if !s.Touch(clk.Now(), 30*time.Minute) {
		t.Fatal("Touch reported no change")
	}
	if again := save(t, st, s, first...); len(again) != 0 {
		t.Fatalf("saving the same session set %d cookies, want none", len(again))
	}
	if s, err := load(st, first); err != nil || !s.LastSeen.Equal(clk.Now()) {
		t.Fatalf("touched session not updated in place: %v, %v", s, err)
	}

	// A new login from the same browser: new ticket, old session gone.
	second := save(t, st, typicalSession("s2"), first...)
	if len(second) != 1 || second[0].Value == first[0].Value {
		t.Fatal("a new login did not get a new ticket")
	}
	if _, err := load(st, first); !errors.Is(err, ErrRevoked) {
		t.Fatalf("old ticket after a new login: got %v, want ErrRevoked", err)
	}
	if s, err := load(st, second); err != nil || s.ID != "s2" {
		t.Fatalf("new session: %v, %v", s, err)
	}
	members := rdb.SMembers(context.Background(), indexKey(subPrefix, "https://idp.example.com", "248289761001")).Val()
	if len(members) != 1 {
		t.Fatalf("subject index holds %d sessions, want only the new one", len(members))
	}
}

func TestRedisStoreRevoke(t *testing.T) {
	const iss, other = "https://idp.example.com", "https://other.example.com"
	session := func(id, issuer, sub, sid string) *Session {
		s := typicalSession(id)
		s.Identity.Issuer, s.Identity.Subject, s.SID = issuer, sub, sid
		return s
	}
	tests := []struct {
		name    string
		revoke  func(context.Context, *RedisStore) error
		revoked []string
	}{
		{"by sid", func(ctx context.Context, st *RedisStore) error { return st.RevokeSID(ctx, iss, "X") }, []string{"a1"}},
		{"by subject", func(ctx context.Context, st *RedisStore) error { return st.RevokeSubject(ctx, iss, "alice") }, []string{"a1", "a2"}},
		{"unknown sid", func(ctx context.Context, st *RedisStore) error { return st.RevokeSID(ctx, iss, "nope") }, nil},
		{"sid of the other issuer", func(ctx context.Context, st *RedisStore) error { return st.RevokeSID(ctx, other, "X") }, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			st := newRedisStore(t, srv, newCodec(t, CodecOptions{}), newClock())
			cookies := map[string][]*http.Cookie{
				"a1": save(t, st, session("a1", iss, "alice", "X")),
				"a2": save(t, st, session("a2", iss, "alice", "Y")),
				"b":  save(t, st, session("b", iss, "bob", "Z")),
				"c":  save(t, st, session("c", other, "alice", "X")),
			}
			if err := tt.revoke(context.Background(), st); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			for id, ck := range cookies {
				_, err := load(st, ck)
				wantRevoked := strings.Contains(" "+strings.Join(tt.revoked, " ")+" ", " "+id+" ")
				if wantRevoked && !errors.Is(err, ErrRevoked) {
					t.Errorf("%s: got %v, want ErrRevoked", id, err)
				}
				if !wantRevoked && err != nil {
					t.Errorf("%s: got %v, want it kept", id, err)
				}
			}
		})
	}
}

// A request that loaded a session just before it was revoked must not
// write it back when it saves the touched session.
func TestRedisStoreRevokedNotResurrected(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := newRedisStore(t, srv, newCodec(t, CodecOptions{}), clk)
	cookies := save(t, st, typicalSession("s1"))
	s, err := load(st, cookies)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeSubject(context.Background(), "https://idp.example.com", "248289761001"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	s.Touch(clk.Now(), time.Hour)
	if _, err := st.Save(context.Background(), requestWith(cookies...), s); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Save after revoke: got %v, want ErrRevoked", err)
	}
	if _, err := load(st, cookies); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Load after revoke: got %v, want ErrRevoked", err)
	}
}

func TestRedisStoreForgedTicket(t *testing.T) {
	srv := redistest.Start(t)
	codec := newCodec(t, CodecOptions{})
	st := newRedisStore(t, srv, codec, newClock())
	genuine, err := codec.Decode(requestWith(save(t, st, typicalSession("s1"))...))
	if err != nil {
		t.Fatal(err)
	}
	withID := func(ticket []byte, id string) []*http.Cookie {
		return encode(t, codec, append(append([]byte{}, ticket...), id...))
	}

	otherKey := newCodec(t, CodecOptions{Keys: [][]byte{keyB}})
	sealed, err := codec.Seal(make([]byte, ticketSize))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cookies []*http.Cookie
		want    error
	}{
		{"no cookie", nil, ErrNoSession},
		{"random value", []*http.Cookie{{Name: "_sekisho", Value: base64.RawURLEncoding.EncodeToString(make([]byte, 72))}}, ErrInvalid},
		{"sealed with another key", encode(t, otherKey, make([]byte, ticketSize)), ErrInvalid},
		{"short ticket", encode(t, codec, make([]byte, 16)), ErrInvalid},
		{"ticket without session ID", encode(t, codec, genuine[:ticketSize]), ErrInvalid},
		{"ticket with another session ID", withID(genuine[:ticketSize], "s2"), ErrInvalid},
		{"Seal output as cookie", []*http.Cookie{{Name: "_sekisho", Value: sealed}}, ErrInvalid},
		{"well-formed but unknown ticket", withID(make([]byte, ticketSize), "s1"), ErrRevoked},
		{"the genuine cookie", withID(genuine[:ticketSize], "s1"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := load(st, tt.cookies); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRedisStoreDelete(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := newRedisStore(t, srv, newCodec(t, CodecOptions{}), clk)
	rdb := rawRedis(t, srv)
	web, client := storeServer(t, st, clk, 0)

	get(t, client, web.URL+"/login?id=s1")
	stolen := client.Jar.Cookies(mustURL(t, web.URL))
	if code, body, _ := get(t, client, web.URL+"/me"); code != 200 {
		t.Fatalf("after login: %d %q", code, body)
	}
	if code, body, _ := get(t, client, web.URL+"/logout"); code != 200 {
		t.Fatalf("logout: %d %q", code, body)
	}
	if code, body, _ := get(t, client, web.URL+"/me"); code != http.StatusUnauthorized || body != ErrNoSession.Error() {
		t.Fatalf("after logout: %d %q", code, body)
	}
	// The cookie copied before sign-out is worthless: the session is gone
	// server-side, and so are its index entries.
	if _, err := load(st, stolen); !errors.Is(err, ErrRevoked) {
		t.Fatalf("replayed cookie after logout: got %v, want ErrRevoked", err)
	}
	if keys := rdb.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Fatalf("keys left after logout: %v", keys)
	}
}

func TestRedisStoreUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := newRedisStore(t, srv, newCodec(t, CodecOptions{}), clk)
	ctx := context.Background()
	cookies := save(t, st, typicalSession("s1"))

	// checkDown runs every operation against a Redis that cannot answer.
	checkDown := func(t *testing.T) {
		t.Helper()
		ops := map[string]func() ([]*http.Cookie, error){
			"load": func() ([]*http.Cookie, error) { _, err := load(st, cookies); return nil, err },
			"save": func() ([]*http.Cookie, error) {
				return st.Save(ctx, requestWith(), typicalSession("s2"))
			},
			"delete":     func() ([]*http.Cookie, error) { return st.Delete(ctx, requestWith(cookies...)) },
			"revoke sid": func() ([]*http.Cookie, error) { return nil, st.RevokeSID(ctx, "https://idp.example.com", "x") },
		}
		for name, op := range ops {
			start := time.Now()
			setCookies, err := op()
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("%s took %v with Redis down, want < 2s", name, elapsed)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: got %v, want ErrUnavailable", name, err)
				continue
			}
			if strings.Contains(err.Error(), cookies[0].Value) {
				t.Errorf("%s: error leaks the cookie", name)
			}
			if name == "save" && len(setCookies) != 0 {
				t.Errorf("failed save set cookies %v", setCookies)
			}
			if name == "delete" && len(setCookies) == 0 {
				t.Error("delete with Redis down did not clear the cookie")
			}
		}
	}

	t.Run("stopped", func(t *testing.T) {
		srv.Stop()
		checkDown(t)
		srv.Restart() // empty: persistence is off
		if _, err := load(st, cookies); !errors.Is(err, ErrRevoked) {
			t.Fatalf("after restart: got %v, want ErrRevoked (Redis answering again)", err)
		}
		cookies = save(t, st, typicalSession("s3"))
		if s, err := load(st, cookies); err != nil || s.ID != "s3" {
			t.Fatalf("save and load after restart: %v, %v", s, err)
		}
	})
	t.Run("hung", func(t *testing.T) {
		srv.Pause()
		checkDown(t)
		srv.Resume()
		if s, err := load(st, cookies); err != nil || s.ID != "s3" {
			t.Fatalf("after resume: %v, %v", s, err)
		}
	})
}

func TestNewRedisStoreErrors(t *testing.T) {
	codec := newCodec(t, CodecOptions{})
	tests := []struct {
		name, url, want string
		unavailable     bool
	}{
		{"wrong scheme", "http://user:s3cret@127.0.0.1:6379", "must look like redis://", false},
		{"unparsable", "redis://:s3cret@[::1", "must look like redis://", false},
		{"bad database", "redis://:s3cret@127.0.0.1:6379/x", "invalid database", false},
		{"nothing listening", "redis://user:s3cret@127.0.0.1:1/0", "127.0.0.1:1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := NewRedisStore(context.Background(), tt.url, codec, StoreOptions{})
			if (st != nil) != tt.unavailable {
				t.Fatalf("store returned = %v; a store is returned exactly when Redis is only unavailable", st != nil)
			}
			if st != nil {
				st.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			if errors.Is(err, ErrUnavailable) != tt.unavailable {
				t.Fatalf("errors.Is(ErrUnavailable) = %v, want %v", !tt.unavailable, tt.unavailable)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// TestRedisStoreUpdateFollowsSID: a session updated in place with a new
// OIDC sid (a refresh brought one) is revoked by a back-channel logout for
// the new sid, and the old sid's index no longer points at it.
func TestRedisStoreUpdateFollowsSID(t *testing.T) {
	const iss = "https://idp.example.com"
	srv := redistest.Start(t)
	clk := newClock()
	st := newRedisStore(t, srv, newCodec(t, CodecOptions{}), clk)
	rdb := rawRedis(t, srv)
	ctx := context.Background()

	s := typicalSession("s1")
	s.SID = "old-sid"
	cookies := save(t, st, s)
	s, err := load(st, cookies)
	if err != nil {
		t.Fatal(err)
	}
	s.SID = "new-sid"
	if again := save(t, st, s, cookies...); len(again) != 0 {
		t.Fatalf("an in-place update set %d cookies, want none", len(again))
	}
	if n := rdb.SCard(ctx, indexKey(sidPrefix, iss, "old-sid")).Val(); n != 0 {
		t.Errorf("old sid index holds %d sessions after the update, want 0", n)
	}
	if n := rdb.SCard(ctx, indexKey(sidPrefix, iss, "new-sid")).Val(); n != 1 {
		t.Errorf("new sid index holds %d sessions, want 1", n)
	}
	if ttl := rdb.TTL(ctx, indexKey(sidPrefix, iss, "new-sid")).Val(); ttl <= 0 {
		t.Errorf("new sid index has no expiry (%s)", ttl)
	}
	if err := st.RevokeSID(ctx, iss, "old-sid"); err != nil {
		t.Fatal(err)
	}
	if _, err := load(st, cookies); err != nil {
		t.Fatalf("a logout for the old sid revoked the refreshed session: %v", err)
	}
	if err := st.RevokeSID(ctx, iss, "new-sid"); err != nil {
		t.Fatal(err)
	}
	if _, err := load(st, cookies); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a logout for the new sid: %v, want ErrRevoked", err)
	}
}
