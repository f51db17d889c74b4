package reuse

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// part is a fake shared value that counts its closes.
type part struct {
	name   string
	closed atomic.Int32
}

// builder returns a build function for name that counts its calls.
func builder(name string, builds *atomic.Int32) func() (*part, func(), error) {
	return func() (*part, func(), error) {
		builds.Add(1)
		p := &part{name: name}
		return p, func() { p.closed.Add(1) }, nil
	}
}

func key(t *testing.T, kind string, section any, files ...string) Key {
	t.Helper()
	k, err := KeyOf(kind, section, files...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyOf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	type section struct {
		Issuer string
		Skew   *int
		Params map[string]string
	}
	one, two := 1, 2
	secret := write("secret", "s1")
	base := key(t, "jwt", section{Issuer: "a", Skew: &one, Params: map[string]string{"x": "1", "y": "2"}}, secret)
	for _, tt := range []struct {
		name string
		same bool
		key  func() Key
	}{
		{"same settings, same file", true, func() Key {
			return key(t, "jwt", section{Issuer: "a", Skew: &one, Params: map[string]string{"y": "2", "x": "1"}}, secret)
		}},
		{"another kind", false, func() Key {
			return key(t, "login", section{Issuer: "a", Skew: &one, Params: map[string]string{"x": "1", "y": "2"}}, secret)
		}},
		{"a changed field", false, func() Key {
			return key(t, "jwt", section{Issuer: "b", Skew: &one, Params: map[string]string{"x": "1", "y": "2"}}, secret)
		}},
		{"a changed value behind a pointer", false, func() Key {
			return key(t, "jwt", section{Issuer: "a", Skew: &two, Params: map[string]string{"x": "1", "y": "2"}}, secret)
		}},
		{"a rotated secret file", false, func() Key {
			defer write("secret", "s1")
			write("secret", "s2")
			return key(t, "jwt", section{Issuer: "a", Skew: &one, Params: map[string]string{"x": "1", "y": "2"}}, secret)
		}},
		{"no file", false, func() Key {
			return key(t, "jwt", section{Issuer: "a", Skew: &one, Params: map[string]string{"x": "1", "y": "2"}})
		}},
	} {
		if got := tt.key() == base; got != tt.same {
			t.Errorf("%s: same key = %v, want %v", tt.name, got, tt.same)
		}
	}
	empty := write("empty", "")
	if key(t, "f", nil, empty) == key(t, "f", nil, filepath.Join(dir, "missing")) {
		t.Error("a missing file digests like an empty one")
	}
	if key(t, "f", nil, write("ab", "ab"), empty) == key(t, "f", nil, write("a", "a"), write("b", "b")) {
		t.Error("file contents are not delimited")
	}
	if _, err := KeyOf("bad", func() {}); err == nil {
		t.Error("a section that cannot be encoded gave a key")
	}
}

// TestPool: the value under a key is built once while any holder has it,
// shared by the holders that ask for the same key, and closed exactly once,
// when the last of them releases it.
func TestPool(t *testing.T) {
	errBuild := errors.New("no")
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, p *Pool, builds *atomic.Int32)
	}{
		{"one holder", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			r := p.NewRefs()
			v := mustGet(t, r, key(t, "k", 1), builder("a", builds), false)
			r.Release()
			r.Release() // again: no second close
			if v.closed.Load() != 1 {
				t.Errorf("closed %d times, want 1", v.closed.Load())
			}
		}},
		{"two holders share, the last closes", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			old, cur := p.NewRefs(), p.NewRefs()
			a := mustGet(t, old, key(t, "k", 1), builder("a", builds), false)
			b := mustGet(t, cur, key(t, "k", 1), builder("b", builds), true)
			if a != b || builds.Load() != 1 {
				t.Fatalf("the same key built %d values", builds.Load())
			}
			old.Release()
			if a.closed.Load() != 0 {
				t.Fatal("closed while another holder uses it")
			}
			cur.Release()
			if a.closed.Load() != 1 {
				t.Errorf("closed %d times, want 1", a.closed.Load())
			}
		}},
		{"another key, another value", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			old, cur := p.NewRefs(), p.NewRefs()
			a := mustGet(t, old, key(t, "k", 1), builder("a", builds), false)
			b := mustGet(t, cur, key(t, "k", 2), builder("b", builds), false)
			old.Release()
			if a == b || a.closed.Load() != 1 || b.closed.Load() != 0 {
				t.Errorf("a closed %d, b closed %d; want 1, 0", a.closed.Load(), b.closed.Load())
			}
			cur.Release()
		}},
		{"a failed build leaves nothing", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			r := p.NewRefs()
			_, _, err := Get(r, key(t, "k", 1), func() (*part, func(), error) { return nil, nil, errBuild })
			if !errors.Is(err, errBuild) {
				t.Fatalf("Get = %v, want the build error", err)
			}
			if p.Len() != 0 {
				t.Fatal("a failed build left a value")
			}
			mustGet(t, r, key(t, "k", 1), builder("a", builds), false)
			r.Release()
		}},
		{"the same holder twice", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			r, other := p.NewRefs(), p.NewRefs()
			a := mustGet(t, r, key(t, "k", 1), builder("a", builds), false)
			mustGet(t, r, key(t, "k", 1), builder("a", builds), true)
			mustGet(t, other, key(t, "k", 1), builder("a", builds), true)
			r.Release()
			if a.closed.Load() != 0 {
				t.Fatal("closed while another holder uses it")
			}
			other.Release()
			if a.closed.Load() != 1 {
				t.Errorf("closed %d times, want 1", a.closed.Load())
			}
		}},
		{"Release on nil", func(*testing.T, *Pool, *atomic.Int32) {
			var r *Refs // a snapshot that never compiled
			r.Release()
		}},
		{"Get after Release", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			r := p.NewRefs()
			r.Release()
			if _, _, err := Get(r, key(t, "k", 1), builder("a", builds)); !errors.Is(err, errReleased) {
				t.Fatalf("Get after Release = %v", err)
			}
		}},
		{"another type under the key", func(t *testing.T, p *Pool, builds *atomic.Int32) {
			r := p.NewRefs()
			a := mustGet(t, r, key(t, "k", 1), builder("a", builds), false)
			if _, _, err := Get(r, key(t, "k", 1), func() (string, func(), error) { return "", nil, nil }); err == nil {
				t.Fatal("a value of another type was returned")
			}
			r.Release()
			if a.closed.Load() != 1 {
				t.Errorf("closed %d times, want 1 (the failed Get kept a reference)", a.closed.Load())
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var closes atomic.Int32
			p := NewPool(Options{OnClose: func(any) { closes.Add(1) }})
			var builds atomic.Int32
			tt.run(t, p, &builds)
			if p.Len() != 0 {
				t.Errorf("%d values left in the pool after every holder released", p.Len())
			}
			if closes.Load() != builds.Load() {
				t.Errorf("%d values built, %d closed", builds.Load(), closes.Load())
			}
		})
	}
}

func mustGet(t *testing.T, r *Refs, k Key, build func() (*part, func(), error), wantReused bool) *part {
	t.Helper()
	v, reused, err := Get(r, k, build)
	if err != nil {
		t.Fatal(err)
	}
	if reused != wantReused {
		t.Fatalf("reused = %v, want %v", reused, wantReused)
	}
	if v.closed.Load() != 0 {
		t.Fatal("Get returned a closed value")
	}
	return v
}

// TestWaiterRetriesFailedBuild: a Get waiting for another holder's build
// of the same key builds its own when that one fails.
func TestWaiterRetriesFailedBuild(t *testing.T) {
	p := NewPool(Options{})
	k := key(t, "k", 1)
	started, fail := make(chan struct{}), make(chan struct{})
	errBuild := errors.New("no")
	first := make(chan error, 1)
	go func() {
		_, _, err := Get(p.NewRefs(), k, func() (*part, func(), error) {
			close(started)
			<-fail
			return nil, nil, errBuild
		})
		first <- err
	}()
	<-started
	var builds atomic.Int32
	second := make(chan *part, 1)
	r := p.NewRefs()
	go func() {
		v, _, err := Get(r, k, builder("b", &builds))
		if err != nil {
			t.Error(err)
		}
		second <- v
	}()
	// Wait until the second Get is waiting on the first build.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		refs := p.entries[k].refs
		p.mu.Unlock()
		if refs == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second Get never waited")
		}
		time.Sleep(time.Millisecond)
	}
	close(fail)
	if err := <-first; !errors.Is(err, errBuild) {
		t.Fatalf("first Get = %v", err)
	}
	v := <-second
	if v == nil || builds.Load() != 1 {
		t.Fatalf("the waiting Get got %v after %d builds", v, builds.Load())
	}
	r.Release()
	if p.Len() != 0 || v.closed.Load() != 1 {
		t.Errorf("left %d values; closed %d", p.Len(), v.closed.Load())
	}
}

// TestPanickingBuild: a build that panics does not leave waiters stuck or
// an entry behind.
func TestPanickingBuild(t *testing.T) {
	p := NewPool(Options{})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was swallowed")
			}
		}()
		_, _, _ = Get(p.NewRefs(), key(t, "k", 1), func() (*part, func(), error) { panic("boom") })
	}()
	if p.Len() != 0 {
		t.Fatal("a panicking build left an entry")
	}
	var builds atomic.Int32
	r := p.NewRefs()
	mustGet(t, r, key(t, "k", 1), builder("a", &builds), false)
	r.Release()
}

// TestConcurrentHolders: holders taking and releasing the same keys at
// once never get a closed value, and every value built is closed once.
func TestConcurrentHolders(t *testing.T) {
	var closes atomic.Int32
	p := NewPool(Options{OnClose: func(any) { closes.Add(1) }})
	var builds atomic.Int32
	keys := []Key{key(t, "k", 1), key(t, "k", 2), key(t, "k", 3)}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r := p.NewRefs()
				for j := range 2 {
					v, _, err := Get(r, keys[(g+i+j)%len(keys)], builder("v", &builds))
					if err != nil {
						t.Error(err)
						return
					}
					if v.closed.Load() != 0 {
						t.Error("a held value was closed")
					}
				}
				r.Release()
			}
		}()
	}
	wg.Wait()
	if p.Len() != 0 {
		t.Errorf("%d values left", p.Len())
	}
	if builds.Load() != closes.Load() {
		t.Errorf("%d built, %d closed", builds.Load(), closes.Load())
	}
}
