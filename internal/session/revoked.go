package session

import (
	"sync"
	"sync/atomic"
	"time"
)

// revokedSetSize bounds the signed-out session IDs a cookie store
// remembers. Each entry is a session ID and a time, so the set stays a few
// MB; only signed-in users can add to it, one entry per sign-out.
const revokedSetSize = 65536

// revokedSet is a bounded set of revoked session IDs, each kept until the
// session would have expired anyway (after that the store refuses the
// cookie on its own). It lets the cookie store honour sign-out: a copy of
// the cookie taken before signing out is refused afterwards.
type revokedSet struct {
	max int
	now func() time.Time

	// n mirrors len(m), so the load path skips the lock while nothing is
	// revoked, which is most of the time.
	n  atomic.Int64
	mu sync.RWMutex
	m  map[string]time.Time // session ID → when the entry may be dropped
}

func newRevokedSet(max int, now func() time.Time) *revokedSet {
	return &revokedSet{max: max, now: now, m: make(map[string]time.Time)}
}

// has reports whether the session id was revoked.
func (s *revokedSet) has(id string) bool {
	if s.n.Load() == 0 {
		return false
	}
	s.mu.RLock()
	_, ok := s.m[id]
	s.mu.RUnlock()
	return ok
}

// add revokes id until until. When the set is full, expired entries are
// dropped first, then the entry that expires soonest; evicted reports
// that a still-valid entry had to go.
func (s *revokedSet) add(id string, until time.Time) (evicted bool) {
	now := s.now()
	if !until.After(now) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; !ok && len(s.m) >= s.max {
		for k, t := range s.m {
			if !t.After(now) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= s.max {
			var oldest string
			var at time.Time
			for k, t := range s.m {
				if oldest == "" || t.Before(at) {
					oldest, at = k, t
				}
			}
			delete(s.m, oldest)
			evicted = true
		}
	}
	s.m[id] = until
	s.n.Store(int64(len(s.m)))
	return evicted
}
