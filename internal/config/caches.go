package config

import (
	"github.com/sekisho/sekisho/internal/authn/jwtauth"
	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/session"
)

// Caches bounds the in-memory caches of checked credentials, so that many
// distinct tokens or sessions cost a known amount of memory.
type Caches struct {
	// Tokens is the verified bearer JWT cache, one for all jwt issuers.
	Tokens CacheLimits `yaml:"tokens"`
	// Sessions is the decoded session cookie cache (cookie store).
	Sessions CacheLimits `yaml:"sessions"`
}

// CacheLimits are a cache's bounds; zero means the default.
type CacheLimits struct {
	MaxEntries int `yaml:"max_entries"`
	MaxMiB     int `yaml:"max_mib"`
}

// maxCacheMiB keeps max_mib within what a machine could hold (1 TiB), so
// a typo of a few digits is reported instead of meaning "unbounded".
const maxCacheMiB = 1 << 20

func (c *compiler) checkCaches(f *File) {
	for _, part := range []struct {
		key string
		l   CacheLimits
	}{{"tokens", f.Caches.Tokens}, {"sessions", f.Caches.Sessions}} {
		if part.l.MaxEntries < 0 {
			c.addf([]any{"caches", part.key, "max_entries"}, "%d: must not be negative (0 or unset: the default)", part.l.MaxEntries)
		}
		if part.l.MaxMiB < 0 || part.l.MaxMiB > maxCacheMiB {
			c.addf([]any{"caches", part.key, "max_mib"}, "%d: use a size in MiB from 1 to %d (0 or unset: the default)", part.l.MaxMiB, maxCacheMiB)
		}
	}
}

// limits are the bounds with defaults applied; out-of-range values (already
// reported by checkCaches) take the defaults too.
func (l CacheLimits) limits(entries int, bytes int64) cache.Limits {
	out := cache.Limits{MaxEntries: entries, MaxBytes: bytes}
	if l.MaxEntries > 0 {
		out.MaxEntries = l.MaxEntries
	}
	if l.MaxMiB > 0 && l.MaxMiB <= maxCacheMiB {
		out.MaxBytes = int64(l.MaxMiB) << 20
	}
	return out
}

func (c *Caches) tokenLimits() cache.Limits {
	return c.Tokens.limits(jwtauth.DefaultCacheEntries, jwtauth.DefaultCacheBytes)
}

func (c *Caches) sessionLimits() cache.Limits {
	return c.Sessions.limits(session.DefaultCacheEntries, session.DefaultCacheBytes)
}
