// Package reuse shares the long-lived parts of compiled configurations
// between the snapshots that want the same one: a JWT verifier with its
// fetched keys and verified-token cache, a login service with its sessions
// and logins in progress, an upstream pool with its warm connections, a
// signing key. A reload that did not change a part's configuration, nor the
// secret files that configuration names, gets the very same part back, so
// it neither empties a cache nor changes a key; any change builds a new one.
//
// A Pool counts references. Each snapshot takes its references through one
// Refs while it compiles and gives them all back when it is closed (or when
// its compile fails); the last reference given back closes the part. The
// running snapshot always holds its own references, so a failed or
// concurrent compile can never close what it uses.
package reuse

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Key identifies a shared part: a digest of its kind, its configuration
// section and the contents of the files the section names. It is a digest
// so that secrets in the section or the files are never held or printed.
type Key [sha256.Size]byte

// KeyOf digests a configuration section (encoded as JSON: exported fields,
// pointers followed, map keys sorted) with the contents of files, so that a
// rotated secret behind an unchanged path gives another key. A file that
// cannot be read counts as missing, distinct from empty; building the part
// reports why it cannot be read.
func KeyOf(kind string, section any, files ...string) (Key, error) {
	enc, err := json.Marshal(section)
	if err != nil {
		return Key{}, fmt.Errorf("reuse: digest of the %s settings: %w", kind, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%q %d:", kind, len(enc))
	h.Write(enc)
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			h.Write([]byte("-;"))
			continue
		}
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	var k Key
	h.Sum(k[:0])
	return k, nil
}

// Options configure a Pool.
type Options struct {
	// OnClose, when set, is called with each value after its close
	// function ran (its last reference was released): tests count closes
	// with it.
	OnClose func(v any)
}

// Pool holds shared values by key, counting references. It lives as long
// as the process that reloads (serve makes one); a Pool is safe for
// concurrent use.
type Pool struct {
	onClose func(any)
	mu      sync.Mutex
	entries map[Key]*entry
}

// entry is one shared value. Fields other than refs are written once,
// before done is closed.
type entry struct {
	key   Key
	refs  int // guarded by Pool.mu
	done  chan struct{}
	value any
	close func()
	err   error // the build failed; the entry is not in the pool
}

// NewPool returns an empty pool.
func NewPool(opts Options) *Pool {
	return &Pool{onClose: opts.OnClose, entries: map[Key]*entry{}}
}

// Len reports how many values the pool holds (tests: nothing leaked).
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// Refs collects the references one holder (a snapshot) takes, so that it
// gives them all back at once.
type Refs struct {
	pool     *Pool
	mu       sync.Mutex
	held     []*entry
	released bool
}

// NewRefs returns an empty set of references into p.
func (p *Pool) NewRefs() *Refs {
	return &Refs{pool: p}
}

// errReleased is returned by Get on a Refs already released: a reference
// taken then would never be given back.
var errReleased = errors.New("reuse: references already released")

// Get returns the value under key, taking a reference on it for r. When no
// holder has it, build makes it (outside the pool's lock; concurrent Gets
// of the same key wait for that build) and returns it with the function
// that closes it (nil when there is nothing to close). A failed build
// leaves nothing in the pool, and the error is returned; a Get that waited
// on a failed build tries its own. reused reports whether the value was
// already held. build must not Get its own key.
func Get[T any](r *Refs, key Key, build func() (T, func(), error)) (v T, reused bool, err error) {
	r.mu.Lock()
	released := r.released
	r.mu.Unlock()
	if released {
		return v, false, errReleased
	}
	e, reused, err := r.pool.acquire(key, func() (any, func(), error) { return build() })
	if err != nil {
		return v, false, err
	}
	v, ok := e.value.(T)
	if !ok {
		r.pool.release(e)
		return v, false, fmt.Errorf("reuse: the value under this key is a %T, not a %T", e.value, v)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released { // Release ran meanwhile: give this one back too
		r.pool.release(e)
		var zero T
		return zero, false, errReleased
	}
	r.held = append(r.held, e)
	return v, reused, nil
}

// Release gives back every reference r took, closing the values no other
// holder uses, newest first. It may be called more than once, and on nil.
func (r *Refs) Release() {
	if r == nil {
		return
	}
	r.mu.Lock()
	held := r.held
	r.held, r.released = nil, true
	r.mu.Unlock()
	for i := len(held) - 1; i >= 0; i-- {
		r.pool.release(held[i])
	}
}

// acquire returns the entry under key with one more reference, building
// it when absent.
func (p *Pool) acquire(key Key, build func() (any, func(), error)) (*entry, bool, error) {
	for {
		p.mu.Lock()
		e, ok := p.entries[key]
		if !ok {
			e = &entry{key: key, refs: 1, done: make(chan struct{})}
			p.entries[key] = e
			p.mu.Unlock()
			if err := p.build(e, build); err != nil {
				return nil, false, err
			}
			return e, false, nil
		}
		e.refs++
		p.mu.Unlock()
		<-e.done
		if e.err == nil {
			return e, true, nil
		}
		// The build this Get waited for failed and its entry is gone;
		// the reference taken on it counts for nothing.
	}
}

// build runs the constructor of e and publishes the outcome; a failed (or
// panicking) build removes e, so that waiters retry.
func (p *Pool) build(e *entry, build func() (any, func(), error)) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("reuse: build panicked: %v", v)
			p.fail(e, err)
			panic(v)
		}
	}()
	v, closeFn, err := build()
	if err != nil {
		p.fail(e, err)
		return err
	}
	e.value, e.close = v, closeFn
	close(e.done)
	return nil
}

func (p *Pool) fail(e *entry, err error) {
	p.mu.Lock()
	delete(p.entries, e.key)
	p.mu.Unlock()
	e.err = err
	close(e.done)
}

// release drops one reference on e and closes it when that was the last.
func (p *Pool) release(e *entry) {
	p.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && p.entries[e.key] == e {
		delete(p.entries, e.key)
	}
	p.mu.Unlock()
	if !last {
		return
	}
	if e.close != nil {
		e.close()
	}
	if p.onClose != nil {
		p.onClose(e.value)
	}
}
