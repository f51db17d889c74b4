package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/identity"
)

// clock is an injectable clock safe to move while a server goroutine reads it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeJWT is a token of JWT shape and typical size (RS256 signature).
func fakeJWT(payload int) string {
	part := func(n int) string { return base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", n))) }
	return part(75) + "." + part(payload) + "." + part(256)
}

// typicalSession is what an OIDC login with a corporate IdP produces.
func typicalSession(id string) *Session {
	return &Session{
		ID:       id,
		Provider: "corp",
		SID:      "08a5019c-17e1-4977-8f42-65a12843ea02",
		Identity: &identity.Identity{
			Subject:       "248289761001",
			Username:      "alice@example.com",
			Email:         "alice@example.com",
			EmailVerified: true,
			Groups:        []string{"admin", "developers", "oncall", "platform-team", "everyone"},
			Claims:        map[string]any{"name": "Alice Example", "hd": "example.com", "amr": []any{"pwd", "otp"}},
			Issuer:        "https://idp.example.com",
			Method:        identity.MethodSession,
			MFA:           true,
			Kind:          identity.KindUser,
		},
		IDToken:      fakeJWT(700),
		AccessToken:  fakeJWT(800),
		RefreshToken: strings.Repeat("r", 400),
		TokenExpiry:  time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC),
	}
}

// storeServer serves a Store the way the gateway uses it: /login saves a
// new session, /me loads (and touches) it, /logout deletes it.
func storeServer(t *testing.T, st Store, clk *clock, idle time.Duration) (*httptest.Server, *http.Client) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		cookies, err := st.Save(r.Context(), r, typicalSession(r.URL.Query().Get("id")))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		setCookies(w, cookies)
	})
	mux.HandleFunc("/me", func(w http.ResponseWriter, r *http.Request) {
		s, err := st.Load(r.Context(), r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if s.Touch(clk.Now(), idle) {
			cookies, err := st.Save(r.Context(), r, s)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			setCookies(w, cookies)
		}
		_, _ = w.Write([]byte(s.ID + " " + s.Identity.Email))
	})
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		cookies, err := st.Delete(r.Context(), r)
		setCookies(w, cookies)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, &http.Client{Jar: jar}
}

// get returns the status and body of GET path, and the number of
// Set-Cookie headers.
func get(t *testing.T, c *http.Client, url string) (int, string, int) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), len(resp.Header.Values("Set-Cookie"))
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCookieStoreSaveLoadDelete(t *testing.T) {
	clk := newClock()
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{Now: clk.Now})
	srv, client := storeServer(t, st, clk, 0)

	if code, body, _ := get(t, client, srv.URL+"/me"); code != http.StatusUnauthorized || body != ErrNoSession.Error() {
		t.Fatalf("before login: %d %q", code, body)
	}
	if code, body, n := get(t, client, srv.URL+"/login?id=s1"); code != 200 || n < 1 {
		t.Fatalf("login: %d %q, %d cookies", code, body, n)
	}
	if code, body, _ := get(t, client, srv.URL+"/me"); code != 200 || body != "s1 alice@example.com" {
		t.Fatalf("after login: %d %q", code, body)
	}
	if code, _, _ := get(t, client, srv.URL+"/logout"); code != 200 {
		t.Fatalf("logout: %d", code)
	}
	if code, body, _ := get(t, client, srv.URL+"/me"); code != http.StatusUnauthorized || body != ErrNoSession.Error() {
		t.Fatalf("after logout: %d %q", code, body)
	}
	if left := client.Jar.Cookies(mustURL(t, srv.URL)); len(left) != 0 {
		t.Fatalf("cookies left after logout: %d", len(left))
	}
}

func TestCookieStoreLifetime(t *testing.T) {
	tests := []struct {
		name    string
		saveTTL time.Duration // TTL of the store that saved
		opts    StoreOptions  // the store that loads
		edit    func(*Session)
		after   time.Duration
		want    error
	}{
		{"fresh", 0, StoreOptions{}, nil, time.Hour, nil},
		{"just before TTL", 0, StoreOptions{}, nil, 12*time.Hour - time.Second, nil},
		{"at TTL", 0, StoreOptions{}, nil, 12 * time.Hour, ErrExpired},
		{"explicit shorter ExpiresAt", 0, StoreOptions{}, func(s *Session) { s.ExpiresAt = newClock().Now().Add(time.Hour) }, time.Hour, ErrExpired},
		{"TTL shortened since save", 24 * time.Hour, StoreOptions{TTL: time.Hour}, nil, 2 * time.Hour, ErrExpired},
		{"idle within timeout", 0, StoreOptions{IdleTimeout: 30 * time.Minute}, nil, 30 * time.Minute, nil},
		{"idle past timeout", 0, StoreOptions{IdleTimeout: 30 * time.Minute}, nil, 31 * time.Minute, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			codec := newCodec(t, CodecOptions{})
			saver := NewCookieStore(codec, StoreOptions{TTL: tt.saveTTL, Now: clk.Now})
			s := typicalSession("s1")
			if tt.edit != nil {
				tt.edit(s)
			}
			cookies, err := saver.Save(context.Background(), requestWith(), s)
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(tt.after)
			tt.opts.Now = clk.Now
			got, err := NewCookieStore(codec, tt.opts).Load(context.Background(), requestWith(cookies...))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err == nil && got.ID != "s1" {
				t.Fatalf("loaded session %q", got.ID)
			}
		})
	}
}

func TestCookieStoreSaveRefuses(t *testing.T) {
	clk := newClock()
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{Now: clk.Now})
	noIdentity := typicalSession("s1")
	noIdentity.Identity = nil
	expired := typicalSession("s2")
	expired.ExpiresAt = clk.Now()
	tooBig := typicalSession("s3")
	tooBig.IDToken = strings.Repeat("x", 5*chunkSize)
	tests := []struct {
		name string
		s    *Session
		want string
	}{
		{"no identity", noIdentity, "without ID or identity"},
		{"no ID", &Session{Identity: &identity.Identity{}}, "without ID or identity"},
		{"already expired", expired, ErrExpired.Error()},
		{"too large", tooBig, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cookies, err := st.Save(context.Background(), requestWith(), tt.s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "xxxx") || strings.Contains(err.Error(), "alice") {
				t.Fatalf("error leaks session content: %v", err)
			}
			if n := len(cookies); n != 0 {
				t.Fatalf("failed Save set %d cookies", n)
			}
		})
	}
}

func TestCookieStoreRejectsGarbage(t *testing.T) {
	codec := newCodec(t, CodecOptions{})
	st := NewCookieStore(codec, StoreOptions{})
	tests := map[string][]byte{
		"not JSON":      []byte("not json"),
		"no identity":   []byte(`{"id":"x","created_at":"2025-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}`),
		"no created_at": []byte(`{"id":"x","identity":{"subject":"s"},"expires_at":"2999-01-01T00:00:00Z"}`),
	}
	for name, plain := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := st.Load(context.Background(), requestWith(encode(t, codec, plain)...))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCookieStoreCannotRevoke(t *testing.T) {
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{})
	for _, err := range []error{
		st.RevokeSID(context.Background(), "https://idp", "sid"),
		st.RevokeSubject(context.Background(), "https://idp", "sub"),
	} {
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "redis") {
			t.Fatalf("got %v, want ErrUnsupported pointing at redis", err)
		}
	}
}

func TestTouch(t *testing.T) {
	t0 := newClock().Now()
	tests := []struct {
		name    string
		idle    time.Duration
		elapsed time.Duration
		want    bool
	}{
		{"no idle timeout", 0, time.Hour, false},
		{"below a tenth", 30 * time.Minute, 179 * time.Second, false},
		{"at a tenth", 30 * time.Minute, 3 * time.Minute, true},
		{"below the one-minute floor", 5 * time.Minute, 59 * time.Second, false},
		{"at the one-minute floor", 5 * time.Minute, time.Minute, true},
		{"clock went back", 30 * time.Minute, -time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Session{LastSeen: t0}
			now := t0.Add(tt.elapsed)
			if got := s.Touch(now, tt.idle); got != tt.want {
				t.Fatalf("Touch = %v, want %v", got, tt.want)
			}
			want := t0
			if tt.want {
				want = now
			}
			if !s.LastSeen.Equal(want) {
				t.Fatalf("LastSeen = %v, want %v", s.LastSeen, want)
			}
		})
	}
}

// The idle timeout keeps an active session alive while writing a cookie
// only once per step, and ends an inactive one.
func TestCookieStoreIdleThroughTouch(t *testing.T) {
	clk := newClock()
	idle := 10 * time.Minute // step: 1 minute
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{IdleTimeout: idle, Now: clk.Now})
	srv, client := storeServer(t, st, clk, idle)
	get(t, client, srv.URL+"/login?id=s1")

	writes := 0
	for range 40 { // 40 requests over 20 minutes, twice the idle timeout
		clk.Advance(30 * time.Second)
		code, body, n := get(t, client, srv.URL+"/me")
		if code != 200 {
			t.Fatalf("active session ended: %d %q", code, body)
		}
		if n > 0 {
			writes++
		}
	}
	// One write per 1-minute step.
	if writes != 20 {
		t.Fatalf("cookies written on %d of 40 requests, want 20", writes)
	}
	clk.Advance(idle + time.Second)
	if code, body, _ := get(t, client, srv.URL+"/me"); code != http.StatusUnauthorized || body != ErrExpired.Error() {
		t.Fatalf("idle session: %d %q", code, body)
	}
}

func TestTypicalSessionCookieSize(t *testing.T) {
	s := typicalSession("0123456789abcdef0123456789abcdef")
	plain, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	cookies := encode(t, newCodec(t, CodecOptions{}), plain)
	total := 0
	for _, c := range cookies {
		total += len(c.String())
	}
	t.Logf("typical session: %d bytes JSON, %d cookies, %d bytes of Set-Cookie", len(plain), len(cookies), total)
	if len(cookies) > 2 {
		t.Fatalf("typical session needs %d cookies; more than 2 risks proxy header limits", len(cookies))
	}
}

// TestCookieStoreDecodedCache: repeated loads of one cookie are served from
// the cache, yet expiry still applies, callers get their own copy, a
// tampered cookie never hits, and the cache stays bounded.
func TestCookieStoreDecodedCache(t *testing.T) {
	clk := newClock()
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{TTL: time.Hour, Now: clk.Now})
	cookies, err := st.Save(context.Background(), requestWith(), typicalSession("s1"))
	if err != nil {
		t.Fatal(err)
	}
	load := func(cs ...*http.Cookie) (*Session, error) {
		return st.Load(context.Background(), requestWith(cs...))
	}
	first, err := load(cookies...)
	if err != nil {
		t.Fatal(err)
	}
	first.LastSeen = time.Time{} // a caller's change must not reach the cache
	if st.decoded.c.Len() != 1 {
		t.Fatalf("cache holds %d entries after one load, want 1", st.decoded.c.Len())
	}
	again, err := load(cookies...)
	if err != nil || again.LastSeen.IsZero() || again == first {
		t.Fatalf("cached load: %v, LastSeen %v, same pointer %v", err, again.LastSeen, again == first)
	}

	tampered := *cookies[0]
	b := []byte(tampered.Value)
	b[len(b)/2] ^= 1
	tampered.Value = string(b)
	if _, err := load(append([]*http.Cookie{&tampered}, cookies[1:]...)...); !errors.Is(err, ErrInvalid) {
		t.Fatalf("tampered cookie: %v, want ErrInvalid", err)
	}

	clk.Advance(time.Hour)
	if _, err := load(cookies...); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired session from the cache: %v, want ErrExpired", err)
	}

	small := newDecodedCache(cache.Limits{MaxEntries: 2, MaxBytes: 1 << 20}, time.Now, nil)
	for i := range 5 {
		small.put([]string{fmt.Sprint(i)}, Session{ID: fmt.Sprint(i)})
	}
	if small.c.Len() > 2 {
		t.Fatalf("cache grew to %d entries, bound 2", small.c.Len())
	}
}

// TestCookieStoreDecodedCacheSkipsPaddedHeaders: a Cookie header that is
// mostly other cookies still loads, but is not kept as a cache key, so a
// browser padding its header cannot make the cache hold megabytes.
func TestCookieStoreDecodedCacheSkipsPaddedHeaders(t *testing.T) {
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{TTL: time.Hour})
	cookies, err := st.Save(context.Background(), requestWith(), typicalSession("s1"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		padding int
		cached  bool
	}{
		{"a few other cookies", 1 << 10, true},
		{"padded header", 32 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.decoded = newDecodedCache(cache.Limits{MaxEntries: DefaultCacheEntries, MaxBytes: DefaultCacheBytes}, time.Now, nil)
			other := &http.Cookie{Name: "other", Value: strings.Repeat("x", tt.padding)}
			if _, err := st.Load(context.Background(), requestWith(append([]*http.Cookie{other}, cookies...)...)); err != nil {
				t.Fatal(err)
			}
			if got := st.decoded.c.Len() == 1; got != tt.cached {
				t.Fatalf("cached = %v, want %v", got, tt.cached)
			}
		})
	}
}

// setCookies writes a store's cookie updates on a response, as the login
// handlers do.
func setCookies(w http.ResponseWriter, cookies []*http.Cookie) {
	for _, c := range cookies {
		http.SetCookie(w, c)
	}
}

// TestCookieStoreDecodedCacheBoundsAndEvents: the decoded-session cache
// keeps within its byte bound however many browsers there are, and reports
// hits, misses and evictions.
func TestCookieStoreDecodedCacheBoundsAndEvents(t *testing.T) {
	events := map[string]int{}
	st := NewCookieStore(newCodec(t, CodecOptions{}), StoreOptions{
		TTL:     time.Hour,
		Cache:   cache.Limits{MaxEntries: 1000, MaxBytes: 1 << 20},
		OnCache: func(e string) { events[e]++ },
	})
	ctx := context.Background()
	const browsers = 300
	var first []*http.Cookie
	for i := range browsers {
		cookies, err := st.Save(ctx, requestWith(), typicalSession(fmt.Sprint("s", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = cookies
		}
		for range 2 {
			if _, err := st.Load(ctx, requestWith(cookies...)); err != nil {
				t.Fatal(err)
			}
		}
		// The first browser stays in use and must stay cached.
		if _, err := st.Load(ctx, requestWith(first...)); err != nil {
			t.Fatal(err)
		}
	}
	if b := st.decoded.c.Bytes(); b > 1<<20 {
		t.Errorf("decoded cache counts %d bytes, bound 1 MiB", b)
	}
	n := st.decoded.c.Len()
	if n >= browsers/2 {
		t.Errorf("decoded cache kept %d sessions of ~5 KB within 1 MiB", n)
	}
	if events[CacheHit]+events[CacheMiss] != 3*browsers || events[CacheEviction] != events[CacheMiss]-n {
		t.Errorf("events %v for %d loads, %d entries left", events, 3*browsers, n)
	}
	// Every browser misses once; the one in use almost never again.
	if extra := events[CacheMiss] - browsers; extra > browsers/20 {
		t.Errorf("the browser in use missed the cache %d times", extra)
	}
}
