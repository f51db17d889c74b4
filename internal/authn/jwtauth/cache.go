package jwtauth

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
	"unsafe"

	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/identity"
)

// Default bounds of the verified-token cache. A token of about 400 bytes
// (a typical access token) takes about 2 KB of heap once verified and
// cached, so the entry bound is reached first for such tokens (about
// 100 MB of heap when full); larger tokens fill the byte bound first.
const (
	DefaultCacheEntries       = 50_000
	DefaultCacheBytes   int64 = 128 << 20
)

// entryOverhead is what a cached token costs besides its claims: the map
// slot and key, the entry, the Identity and its slices. The claims map
// decoded from the token's payload and the identity's strings are counted
// as three times the token's length. Measured with
// BenchmarkAuthenticateDistinct: a 400-byte token counts 1,968 bytes and
// takes about 1,950 bytes of heap.
const entryOverhead = 768

// entryCost is the bytes a verified token is counted as in the cache.
func entryCost(tokenLen int) int64 { return entryOverhead + 3*int64(tokenLen) }

type tokenKey [sha256.Size]byte

// keyOf hashes the token without copying it to the heap (sha256 only reads
// the bytes), which keeps a cache hit allocation-free.
func keyOf(token string) tokenKey {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// shardHash picks a shard from the key, which is already a SHA-256.
func shardHash(k tokenKey) uint64 { return binary.LittleEndian.Uint64(k[:8]) }

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

// valid reports whether the entry may answer at now.
func (e *cacheEntry) valid(now int64) bool {
	return now < e.exp && e.keys == e.iss.keys.Load()
}

// cacheEvents receives hits, misses and evictions (metrics); nil for none.
type cacheEvents func(event string)

// Cache events passed to Options.OnCache.
const (
	CacheHit      = "hit"
	CacheMiss     = "miss"
	CacheEviction = "eviction"
)

// tokenCache holds verified tokens (and TokenReview answers) within a
// bound in entries and bytes; see internal/cache for the eviction. An
// expired entry, or one verified with keys since rotated away, is the
// first to go.
type tokenCache struct {
	c      *cache.Cache[tokenKey, cacheEntry]
	events cacheEvents
}

func newTokenCache(l cache.Limits, now func() time.Time, events cacheEvents) *tokenCache {
	o := cache.Options[cacheEntry]{
		Stale: func(e cacheEntry) bool { return !e.valid(now().UnixNano()) },
	}
	if events != nil {
		o.OnEvict = func() { events(CacheEviction) }
	}
	return &tokenCache{c: cache.New(l, shardHash, o), events: events}
}

func (c *tokenCache) get(k tokenKey, now int64) (*identity.Identity, bool) {
	e, ok := c.lookup(k, now)
	return e.id, ok
}

// lookup is get for caches that also remember refusals.
func (c *tokenCache) lookup(k tokenKey, now int64) (cacheEntry, bool) {
	e, ok := c.c.Get(k)
	if !ok || !e.valid(now) {
		if c.events != nil {
			c.events(CacheMiss)
		}
		return cacheEntry{}, false
	}
	if c.events != nil {
		c.events(CacheHit)
	}
	return e, true
}

// len counts the entries, expired ones included.
func (c *tokenCache) len() int { return c.c.Len() }

func (c *tokenCache) put(k tokenKey, e cacheEntry, cost int64) { c.c.Put(k, e, cost) }
