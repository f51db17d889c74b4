package session

import (
	"hash/maphash"
	"slices"
	"sync"
)

// decodedCacheSize bounds the decoded-cookie cache: enough for the active
// browsers of one replica, small enough to be a few MB at most.
const decodedCacheSize = 4096

// decodedCache maps a request's exact Cookie header lines to the session
// they decrypt to. The lookup hash is keyed per process and every hit
// compares the full values, so a crafted cookie can never hit another
// browser's entry.
type decodedCache struct {
	seed maphash.Seed
	max  int

	mu sync.RWMutex
	m  map[uint64]decodedEntry
}

type decodedEntry struct {
	values []string
	sess   Session
}

func newDecodedCache(max int) *decodedCache {
	return &decodedCache{seed: maphash.MakeSeed(), max: max, m: make(map[uint64]decodedEntry)}
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
	k := c.key(values)
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !slices.Equal(e.values, values) {
		return Session{}, false
	}
	return e.sess, true
}

func (c *decodedCache) put(values []string, sess Session) {
	k := c.key(values)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for old := range c.m { // map order is random: a cheap random eviction
			delete(c.m, old)
			break
		}
	}
	c.m[k] = decodedEntry{values: slices.Clone(values), sess: sess}
}
