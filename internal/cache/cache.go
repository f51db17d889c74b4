// Package cache is a bounded in-memory map for the request path's caches
// (verified tokens, decoded session cookies). It is bounded in entries and
// in bytes (the caller states what an entry costs), and it evicts with
// CLOCK (second chance) per shard: an entry read since the hand last
// passed survives, so a steady hot set stays while a flood of one-time
// keys replaces only itself. A hit takes a shard's read lock and sets one
// flag, so readers on different cores do not contend; there is no global
// list to reorder on every hit as an LRU would need.
package cache

import (
	"sync"
	"sync/atomic"
)

// shardCount spreads lock contention; a power of two so that picking a
// shard is a mask of the key's hash. A cache of fewer entries has fewer
// shards, so that its bound holds exactly.
const shardCount = 16

// Limits bound a cache. Zero values are not allowed: the caller applies its
// defaults (a cache without a bound is what this package exists to avoid).
type Limits struct {
	// MaxEntries is the most entries kept.
	MaxEntries int
	// MaxBytes is the most bytes kept, as the caller's cost figures sum.
	MaxBytes int64
}

// Options are a cache's callbacks; all may be nil.
type Options[V any] struct {
	// Stale reports an entry that is no longer any use (expired), so that
	// eviction takes it before any live one. Called under a shard lock.
	Stale func(V) bool
	// OnEvict is called for each live entry dropped to make room (not for
	// replaced or stale ones), for metrics. Called under a shard lock.
	OnEvict func()
}

// Cache maps keys to values within Limits. Safe for concurrent use.
type Cache[K comparable, V any] struct {
	shards []shard[K, V]
	mask   uint64
	hash   func(K) uint64
	opts   Options[V]
}

type shard[K comparable, V any] struct {
	mu    sync.RWMutex
	m     map[K]int32 // slot index
	slots []slot[K, V]
	free  []int32
	hand  int
	bytes int64
	// Limits of this shard: the cache's divided by shardCount.
	maxEntries int
	maxBytes   int64
}

type slot[K comparable, V any] struct {
	key  K
	val  V
	cost int64
	live bool
	ref  uint32 // set by a hit, cleared by the passing hand (atomic)
}

// New returns a cache within l. hash spreads keys over shards: it must be
// well mixed (a cryptographic or keyed hash of the key).
func New[K comparable, V any](l Limits, hash func(K) uint64, o Options[V]) *Cache[K, V] {
	n := shardCount
	for n > 1 && n > l.MaxEntries {
		n /= 2
	}
	c := &Cache[K, V]{shards: make([]shard[K, V], n), mask: uint64(n - 1), hash: hash, opts: o}
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[K]int32)
		s.maxEntries = max(1, l.MaxEntries/n)
		s.maxBytes = max(1, l.MaxBytes/int64(n))
	}
	return c
}

func (c *Cache[K, V]) shard(k K) *shard[K, V] {
	return &c.shards[c.hash(k)&c.mask]
}

// Get returns the value for k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	s := c.shard(k)
	s.mu.RLock()
	i, ok := s.m[k]
	if !ok {
		s.mu.RUnlock()
		var zero V
		return zero, false
	}
	e := &s.slots[i]
	v := e.val
	// Only write when the flag is clear, so a hot entry's cache line is
	// not written by every reader.
	if atomic.LoadUint32(&e.ref) == 0 {
		atomic.StoreUint32(&e.ref, 1)
	}
	s.mu.RUnlock()
	return v, true
}

// Put stores v for k at cost bytes, evicting others as needed. A value
// costing more than a whole shard may hold is not stored; Put reports
// whether it was.
func (c *Cache[K, V]) Put(k K, v V, cost int64) bool {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cost > s.maxBytes {
		if i, ok := s.m[k]; ok {
			s.remove(i)
		}
		return false
	}
	if i, ok := s.m[k]; ok {
		e := &s.slots[i]
		s.bytes += cost - e.cost
		e.val, e.cost = v, cost
		for s.bytes > s.maxBytes {
			c.evictOne(s, i)
		}
		return true
	}
	for len(s.m) >= s.maxEntries || s.bytes+cost > s.maxBytes {
		c.evictOne(s, -1)
	}
	var i int32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		s.slots = append(s.slots, slot[K, V]{})
		i = int32(len(s.slots) - 1)
	}
	s.slots[i] = slot[K, V]{key: k, val: v, cost: cost, live: true}
	s.m[k] = i
	s.bytes += cost
	return true
}

// evictOne advances the hand to the first stale entry or entry not used
// since the hand last passed it, clearing use flags on the way, and drops
// it. keep is a slot that must stay (being replaced), or -1. Two turns
// always find a victim: the first clears every flag.
func (c *Cache[K, V]) evictOne(s *shard[K, V], keep int32) {
	for step := 0; ; step++ {
		if s.hand >= len(s.slots) {
			s.hand = 0
		}
		i := int32(s.hand)
		s.hand++
		e := &s.slots[i]
		if !e.live || i == keep {
			if step > 2*len(s.slots) { // only keep is live: nothing to evict
				return
			}
			continue
		}
		stale := c.opts.Stale != nil && c.opts.Stale(e.val)
		if stale || atomic.LoadUint32(&e.ref) == 0 {
			if !stale && c.opts.OnEvict != nil {
				c.opts.OnEvict()
			}
			s.remove(i)
			return
		}
		atomic.StoreUint32(&e.ref, 0)
	}
}

func (s *shard[K, V]) remove(i int32) {
	e := &s.slots[i]
	delete(s.m, e.key)
	s.bytes -= e.cost
	*e = slot[K, V]{}
	s.free = append(s.free, i)
}

// Delete drops k if present.
func (c *Cache[K, V]) Delete(k K) {
	s := c.shard(k)
	s.mu.Lock()
	if i, ok := s.m[k]; ok {
		s.remove(i)
	}
	s.mu.Unlock()
}

// Len is the number of entries, stale ones included.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Bytes is the sum of the entries' costs.
func (c *Cache[K, V]) Bytes() int64 {
	var n int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.bytes
		s.mu.RUnlock()
	}
	return n
}
