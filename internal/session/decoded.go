package session

import (
	"hash/maphash"
	"slices"
	"time"

	"github.com/sekisho/sekisho/internal/cache"
)

// Default bounds of the decoded-cookie cache. A typical browser session
// (a 2-chunk cookie of about 5 KB) is counted as about 11 KB, so the byte
// bound is what limits it first: about 6,000 such browsers per replica.
const (
	DefaultCacheEntries       = 10_000
	DefaultCacheBytes   int64 = 64 << 20
)

// decodedOverhead is what a cached session costs besides its cookie: the
// map slot, the entry, the Session and Identity structs. The cookie is
// counted twice: once as the kept header lines, once as the decoded
// session (the tokens and identity strings the cookie encrypts).
const decodedOverhead = 1024

// Cache events passed to StoreOptions.OnCache.
const (
	CacheHit      = "hit"
	CacheMiss     = "miss"
	CacheEviction = "eviction"
)

// decodedCache maps a request's exact Cookie header lines to the session
// they decrypt to. The lookup hash is keyed per process and every hit
// compares the full values, so a crafted cookie can never hit another
// browser's entry. It is bounded in entries and bytes (see internal/cache
// for the eviction, which keeps the browsers in use); an entry past its
// session's absolute end goes first.
type decodedCache struct {
	seed   maphash.Seed
	c      *cache.Cache[uint64, decodedEntry]
	events func(string)
}

type decodedEntry struct {
	values []string
	sess   Session
}

func newDecodedCache(l cache.Limits, now func() time.Time, events func(string)) *decodedCache {
	o := cache.Options[decodedEntry]{
		Stale: func(e decodedEntry) bool {
			return !e.sess.ExpiresAt.IsZero() && !now().Before(e.sess.ExpiresAt)
		},
	}
	if events != nil {
		o.OnEvict = func() { events(CacheEviction) }
	}
	// The key is already a keyed hash: it picks the shard as it is.
	return &decodedCache{
		seed:   maphash.MakeSeed(),
		c:      cache.New(l, func(k uint64) uint64 { return k }, o),
		events: events,
	}
}

func (c *decodedCache) key(values []string) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, v := range values {
		h.WriteString(v)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// get returns a copy of the cached session (callers may modify it).
func (c *decodedCache) get(values []string) (Session, bool) {
	e, ok := c.c.Get(c.key(values))
	if !ok || !slices.Equal(e.values, values) {
		if c.events != nil {
			c.events(CacheMiss)
		}
		return Session{}, false
	}
	if c.events != nil {
		c.events(CacheHit)
	}
	return e.sess, true
}

func (c *decodedCache) put(values []string, sess Session) {
	cost := int64(decodedOverhead)
	for _, v := range values {
		cost += 2 * int64(len(v))
	}
	c.c.Put(c.key(values), decodedEntry{values: slices.Clone(values), sess: sess}, cost)
}
