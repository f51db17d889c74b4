package config

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/testutil"
)

// closeLog records the values a reuse pool closes.
type closeLog struct {
	mu     sync.Mutex
	closed []any
}

func (l *closeLog) add(v any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = append(l.closed, v)
}

// take returns the values closed since the last take.
func (l *closeLog) take() []any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.closed
	l.closed = nil
	return out
}

// newReusePool returns a pool for tests and the log of what it closes.
func newReusePool() (*reuse.Pool, *closeLog) {
	l := &closeLog{}
	return reuse.NewPool(reuse.Options{OnClose: l.add}), l
}

// sharedParts are the parts of a snapshot that reloads share, by name.
func sharedParts(t *testing.T, s *snapshot.Snapshot) map[string]any {
	t.Helper()
	upstream := func(path string) any {
		rt, _, ok := s.Routes.Match("gw.test", path, "GET", nil)
		if !ok || rt.Upstream == nil {
			t.Fatalf("no upstream for %s", path)
		}
		return rt.Upstream
	}
	return map[string]any{
		"jwt":       s.Authn.JWT,
		"login":     s.Login,
		"assertion": s.Assertion,
		"pool a":    upstream("/a"),
		"pool b":    upstream("/b"),
	}
}

// named returns the names of the parts among vs (or the type of a value
// that is none of them), sorted.
func named(parts map[string]any, vs []any) []string {
	var out []string
	for _, v := range vs {
		name := fmt.Sprintf("other %T", v)
		for n, p := range parts {
			if p == v {
				name = n
			}
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// TestReloadReuse: a reload shares every part whose configuration section
// and secret files are unchanged with the running snapshot, builds a new
// one for any change, takes nothing from the running snapshot when it
// fails (and leaks nothing it built), and closing the old snapshot after
// the swap closes exactly the parts the new one no longer uses.
func TestReloadReuse(t *testing.T) {
	const base = `
listen: {http: "127.0.0.1:18994"}
jwt: [{issuer: "https://issuer.test", audiences: [x], algorithms: [HS256], hmac_secret_file: hmac.secret}]
providers: [{name: dev, builtin: {users: [{email: a@example.com, password: x}]}}]
session: {secret_file: session.key}
login: {post_logout_redirect: /bye}
upstream_identity: {assertion: {key_file: assertion.key}}
routes:
  - {name: a, match: {path: /a}, to: "http://127.0.0.1:1", allow: [{groups: [x]}]}
  - {name: b, match: {path: /b}, to: "https://127.0.0.1:2", public: true, upstream_tls: {ca_file: ca.pem}}
`
	// It decodes, so the compile runs (and builds parts) before failing.
	const badRoute = "  - {name: c, match: {path: /c}, to: bad, public: true}\n"
	replace := func(old, new string) func(*testing.T, string) string {
		return func(t *testing.T, _ string) string {
			t.Helper()
			if !strings.Contains(base, old) {
				t.Fatalf("base config lacks %q", old)
			}
			return strings.Replace(base, old, new, 1)
		}
	}
	rewrite := func(name string, content func(t *testing.T) []byte) func(*testing.T, string) string {
		return func(t *testing.T, dir string) string {
			t.Helper()
			testutil.WriteFile(t, dir, name, content(t))
			return base
		}
	}
	for _, tt := range []struct {
		name string
		// edit changes the config (returned) and/or the files in dir;
		// for a failing reload, only the config.
		edit func(t *testing.T, dir string) string
		// rebuilt are the parts that must be new; the others are the
		// running snapshot's. For a failing reload, the number of parts
		// it built before failing (each must be closed, none kept).
		rebuilt []string
		fails   bool
	}{
		{name: "unchanged", edit: func(*testing.T, string) string { return base }},
		{name: "another route", edit: func(*testing.T, string) string {
			return base + "  - {name: c, match: {path: /c}, to: builtin:echo, public: true}\n"
		}},
		{name: "jwt section changed", edit: replace("audiences: [x]", "audiences: [y]"), rebuilt: []string{"jwt"}},
		{name: "hmac secret rotated", edit: rewrite("hmac.secret", func(*testing.T) []byte { return []byte(strings.Repeat("t", 32)) }), rebuilt: []string{"jwt"}},
		{name: "login section changed", edit: replace("/bye", "/goodbye"), rebuilt: []string{"login"}},
		{name: "token cache bounds changed", edit: func(*testing.T, string) string {
			return base + "caches: {tokens: {max_entries: 500}}\n"
		}, rebuilt: []string{"jwt"}},
		{name: "session cache bounds changed", edit: func(*testing.T, string) string {
			return base + "caches: {sessions: {max_mib: 8}}\n"
		}, rebuilt: []string{"login"}},
		{name: "session key rotated", edit: rewrite("session.key", func(*testing.T) []byte {
			return []byte(strings.Repeat("cd", 32) + "\n" + strings.Repeat("ab", 32) + "\n")
		}), rebuilt: []string{"login"}},
		{name: "assertion section changed", edit: replace("key_file: assertion.key", "key_file: assertion.key, ttl: 1m"), rebuilt: []string{"assertion"}},
		{name: "assertion key rotated", edit: rewrite("assertion.key", func(t *testing.T) []byte { return testutil.NewCA(t).Client(t, "k2").KeyPEM }), rebuilt: []string{"assertion"}},
		{name: "upstream changed", edit: replace("http://127.0.0.1:1", "http://127.0.0.1:3"), rebuilt: []string{"pool a"}},
		{name: "upstream CA rotated", edit: rewrite("ca.pem", func(t *testing.T) []byte { return testutil.NewCA(t).PEM }), rebuilt: []string{"pool b"}},
		{name: "everything changed", edit: func(t *testing.T, dir string) string {
			rewrite("hmac.secret", func(*testing.T) []byte { return []byte(strings.Repeat("t", 32)) })(t, dir)
			rewrite("session.key", func(*testing.T) []byte { return []byte(strings.Repeat("cd", 32) + "\n") })(t, dir)
			rewrite("assertion.key", func(t *testing.T) []byte { return testutil.NewCA(t).Client(t, "k2").KeyPEM })(t, dir)
			rewrite("ca.pem", func(t *testing.T) []byte { return testutil.NewCA(t).PEM })(t, dir)
			return strings.Replace(base, "http://127.0.0.1:1", "http://127.0.0.1:3", 1)
		}, rebuilt: []string{"assertion", "jwt", "login", "pool a", "pool b"}},
		{name: "failed reload, unchanged parts", edit: func(*testing.T, string) string { return base + badRoute }, fails: true},
		{name: "failed reload after building parts", edit: func(t *testing.T, dir string) string {
			return strings.NewReplacer("audiences: [x]", "audiences: [y]", "/bye", "/goodbye").Replace(base) + badRoute
		}, rebuilt: []string{"jwt", "login"}, fails: true},
		{name: "failed reload, secret file unreadable", edit: replace("hmac_secret_file: hmac.secret", "hmac_secret_file: missing.secret"), fails: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			testutil.WriteFile(t, dir, "hmac.secret", []byte(strings.Repeat("s", 32)))
			testutil.WriteFile(t, dir, "session.key", []byte(strings.Repeat("ab", 32)+"\n"))
			testutil.WriteFile(t, dir, "assertion.key", testutil.NewCA(t).Client(t, "k1").KeyPEM)
			testutil.WriteFile(t, dir, "ca.pem", testutil.NewCA(t).PEM)
			pool, closes := newReusePool()
			parse := func(src string) (*snapshot.Snapshot, error) {
				return Parse([]byte(src), filepath.Join(dir, "c.yaml"), dir, Options{Reuse: pool})
			}
			old, err := parse(base)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			oldParts := sharedParts(t, old)
			held := pool.Len()

			next, err := parse(tt.edit(t, dir))
			if tt.fails {
				if err == nil {
					next.Close()
					t.Fatal("the reload compiled")
				}
				if pool.Len() != held {
					t.Errorf("the failed reload leaked: the pool holds %d parts, %d before", pool.Len(), held)
				}
				closed := closes.take()
				if got := named(oldParts, closed); slices.ContainsFunc(got, func(n string) bool { return !strings.HasPrefix(n, "other ") }) {
					t.Errorf("the failed reload closed parts the running snapshot uses: %q", got)
				}
				if len(closed) != len(tt.rebuilt) {
					t.Errorf("the failed reload closed %d parts; it built %d", len(closed), len(tt.rebuilt))
				}
				// The running snapshot is whole: a reload still shares all.
				again, err := parse(base)
				if err != nil {
					t.Fatal(err)
				}
				defer again.Close()
				if !maps.Equal(sharedParts(t, again), oldParts) {
					t.Error("after a failed reload, the running snapshot's parts are no longer shared")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close()
			newParts := sharedParts(t, next)
			var rebuilt []string
			for name, p := range newParts {
				if p != oldParts[name] {
					rebuilt = append(rebuilt, name)
				}
			}
			slices.Sort(rebuilt)
			if !slices.Equal(rebuilt, tt.rebuilt) {
				t.Errorf("rebuilt %q, want %q", rebuilt, tt.rebuilt)
			}
			if got := closes.take(); len(got) != 0 {
				t.Errorf("compiling the new snapshot closed %q", named(oldParts, got))
			}

			old.Close() // after the swap
			if got := named(oldParts, closes.take()); !slices.Equal(got, tt.rebuilt) {
				t.Errorf("closing the old snapshot closed %q, want %q (the parts the new one does not use)", got, tt.rebuilt)
			}
			next.Close()
			if pool.Len() != 0 {
				t.Errorf("%d parts left after every snapshot closed", pool.Len())
			}
			closed := closes.take()
			for name, p := range newParts {
				if n := slices.Index(closed, p); n < 0 {
					t.Errorf("%s was not closed with the last snapshot using it", name)
				}
			}
		})
	}
}

// TestSharedPartOutlivesTheSnapshotThatBuiltIt: a part started at compile
// runs on a context of its own, not one the building snapshot's Close
// cancels. After the first snapshot closes, the JWT verifier the second
// one shares still fetches a key published afterwards (its background
// refresh is alive); closing the last snapshot closes it.
func TestSharedPartOutlivesTheSnapshotThatBuiltIt(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	src := fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt: [{issuer: %q, audiences: [api]}]
routes:
  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [admin]}]}
`, iss.URL)
	pool, closes := newReusePool()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	parse := func() *snapshot.Snapshot {
		t.Helper()
		s, err := Parse([]byte(src), "c.yaml", t.TempDir(), Options{Reuse: pool, Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		if !s.WaitReady(ctx) {
			t.Fatal("the issuer's keys did not arrive")
		}
		return s
	}
	first := parse()
	second := parse()
	if first.Authn.JWT != second.Authn.JWT {
		t.Fatal("the verifier is not shared; the test needs it shared")
	}
	first.Close()
	if got := closes.take(); len(got) != 0 {
		t.Fatalf("closing the first snapshot closed %d shared parts", len(got))
	}

	rotated := jwttest.NewKey(t, "k2", jose.RS256)
	iss.Publish(rotated)
	tok := jwttest.Sign(t, rotated, iss.Claims(time.Now()))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := second.Authn.JWT.Authenticate(ctx, tok)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("a key published after the first snapshot closed is never fetched: %v", err)
		case <-tick.C:
		}
	}
	second.Close()
	if got := closes.take(); !slices.Contains(got, any(second.Authn.JWT)) {
		t.Error("closing the last snapshot did not close the verifier")
	}
}
