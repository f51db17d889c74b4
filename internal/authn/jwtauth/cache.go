package jwtauth

import (
	"crypto/sha256"
	"sync"
	"unsafe"

	"github.com/sekisho/sekisho/internal/identity"
)

// cacheShards spreads lock contention; a power of two so the shard is one
// byte of the key.
const cacheShards = 16

// evictProbe is how many entries a full shard looks at for an expired one
// before it evicts an arbitrary entry instead.
const evictProbe = 8

type tokenKey [sha256.Size]byte

// keyOf hashes the token without copying it to the heap (sha256 only reads
// the bytes), which keeps a cache hit allocation-free.
func keyOf(token string) tokenKey {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// cacheEntry is a verified token. It is valid only before exp and only
// while its issuer still has the key set it was verified with: a rotation
// that changes the keys makes every cached token re-verify once.
type cacheEntry struct {
	id   *identity.Identity
	exp  int64 // unix nanoseconds
	iss  *issuer
	keys *keySet
	// err is a remembered refusal (TokenReview answers only).
	err error
}

type cacheShard struct {
	mu  sync.RWMutex
	m   map[tokenKey]cacheEntry
	max int
}

// tokenCache is a bounded map of verified tokens. Eviction is cheap rather
// than clever: a full shard drops an expired entry if it sees one among a
// few, otherwise an arbitrary one (Go map iteration order is random).
type tokenCache struct {
	shards [cacheShards]cacheShard
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{}
	perShard := max(1, (size+cacheShards-1)/cacheShards)
	for i := range c.shards {
		c.shards[i].m = make(map[tokenKey]cacheEntry)
		c.shards[i].max = perShard
	}
	return c
}

func (c *tokenCache) get(k tokenKey, now int64) (*identity.Identity, bool) {
	s := &c.shards[k[0]%cacheShards]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || now >= e.exp || e.keys != e.iss.keys.Load() {
		return nil, false
	}
	return e.id, true
}

// lookup is get for caches that also remember refusals.
func (c *tokenCache) lookup(k tokenKey, now int64) (cacheEntry, bool) {
	s := &c.shards[k[0]%cacheShards]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || now >= e.exp || e.keys != e.iss.keys.Load() {
		return cacheEntry{}, false
	}
	return e, true
}

// len counts the entries, expired ones included.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

func (c *tokenCache) put(k tokenKey, e cacheEntry, now int64) {
	s := &c.shards[k[0]%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.m[k]; !exists && len(s.m) >= s.max {
		s.evictOne(now)
	}
	s.m[k] = e
}

func (s *cacheShard) evictOne(now int64) {
	var victim tokenKey
	n := 0
	for k, e := range s.m {
		if n == 0 {
			victim = k
		}
		if now >= e.exp {
			victim = k
			break
		}
		if n++; n == evictProbe {
			break
		}
	}
	delete(s.m, victim)
}
