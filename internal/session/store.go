package session

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sekisho/sekisho/internal/cache"
)

// StoreOptions are the lifetime rules every store enforces on Load.
type StoreOptions struct {
	// TTL is the absolute session lifetime (default 12h). It also caps
	// sessions saved under a longer TTL, so shortening it takes effect at once.
	TTL time.Duration
	// IdleTimeout ends a session unused for this long; zero means never.
	IdleTimeout time.Duration
	// Now is the clock (default time.Now), injectable for tests.
	Now func() time.Time
	// Logger receives the store's warnings (default slog.Default()).
	Logger *slog.Logger
	// Cache bounds the cookie store's decoded-session cache; zero fields
	// take DefaultCacheEntries and DefaultCacheBytes.
	Cache cache.Limits
	// OnCache is called for every decoded-session cache hit, miss and
	// eviction (CacheHit, CacheMiss, CacheEviction; metrics). It runs on
	// the request path and must be cheap.
	OnCache func(event string)
}

// DefaultTTL is how long a session lasts when the configuration does not
// say (session.ttl): the one default the codec, the stores and the login
// service share.
const DefaultTTL = 12 * time.Hour

// DefaultCookieName is the session cookie's name when session.cookie is
// not set.
const DefaultCookieName = "_sekisho"

func (o StoreOptions) withDefaults() StoreOptions {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.IdleTimeout < 0 {
		o.IdleTimeout = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Cache.MaxEntries <= 0 {
		o.Cache.MaxEntries = DefaultCacheEntries
	}
	if o.Cache.MaxBytes <= 0 {
		o.Cache.MaxBytes = DefaultCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// end is when s stops being valid under o.
func (o StoreOptions) end(s *Session) time.Time {
	end := s.CreatedAt.Add(o.TTL)
	if !s.ExpiresAt.IsZero() && s.ExpiresAt.Before(end) {
		end = s.ExpiresAt
	}
	return end
}

// prepare fills in the timestamps of a session about to be saved and
// refuses one that cannot be used.
func (o StoreOptions) prepare(s *Session) error {
	if s.Identity == nil || s.ID == "" {
		return errors.New("session: refusing to save a session without ID or identity")
	}
	now := o.Now()
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.LastSeen.IsZero() {
		s.LastSeen = now
	}
	s.ExpiresAt = o.end(s)
	if !now.Before(s.ExpiresAt) {
		return fmt.Errorf("session: saving: %w", ErrExpired)
	}
	return nil
}

// check enforces the absolute lifetime and the idle timeout on a loaded session.
func (o StoreOptions) check(s *Session) error {
	if s.Identity == nil || s.CreatedAt.IsZero() {
		return ErrInvalid
	}
	now := o.Now()
	if !now.Before(o.end(s)) {
		return ErrExpired
	}
	if o.IdleTimeout > 0 && s.LastSeen.Add(o.IdleTimeout).Before(now) {
		return ErrExpired
	}
	return nil
}

// Touch records activity for the idle timeout, but only in coarse steps
// (a tenth of idle, at least a minute) so that a busy browser does not get
// a new cookie, or Redis a write, on every request. Save the session when
// it reports a change.
func (s *Session) Touch(now time.Time, idle time.Duration) (changed bool) {
	if idle <= 0 {
		return false
	}
	step := max(idle/10, time.Minute)
	if now.Sub(s.LastSeen) < step {
		return false
	}
	s.LastSeen = now
	return true
}
