// Package expset is a bounded set of strings that each expire at their own
// time: what has been used or revoked and must be refused again until it
// would have stopped working anyway (a signed-out session, a logout
// token's jti, a one-time code).
package expset

import (
	"sync"
	"sync/atomic"
	"time"
)

// Set is safe for concurrent use. Lookups take no lock while the set is
// empty, which is most of the time on the paths that check it per request.
type Set struct {
	max int
	now func() time.Time

	n  atomic.Int64 // len(m), read without the lock
	mu sync.RWMutex
	m  map[string]time.Time // member → when it may be dropped
}

// New returns a set of at most max members on clock now (time.Now when nil).
func New(max int, now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	return &Set{max: max, now: now, m: make(map[string]time.Time)}
}

// Has reports whether key is a member that has not expired.
func (s *Set) Has(key string) bool {
	if s.n.Load() == 0 {
		return false
	}
	s.mu.RLock()
	until, ok := s.m[key]
	s.mu.RUnlock()
	return ok && s.now().Before(until)
}

// Len is the number of members, expired ones not yet dropped included.
func (s *Set) Len() int { return int(s.n.Load()) }

// Add makes key a member until until (a later until extends it). When the
// set is full, expired members are dropped first, then the member that
// expires soonest; evicted reports that a live member had to go.
func (s *Set) Add(key string, until time.Time) (evicted bool) {
	_, evicted = s.add(key, until, false)
	return evicted
}

// AddNew adds key like Add unless it is already a live member, in which
// case it changes nothing and reports added false: the check and the add
// are one step, so two racing callers cannot both see the key as new.
func (s *Set) AddNew(key string, until time.Time) (added, evicted bool) {
	return s.add(key, until, true)
}

func (s *Set) add(key string, until time.Time, onlyNew bool) (added, evicted bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.m[key]
	if exists && now.Before(old) {
		if onlyNew {
			return false, false
		}
		if !until.After(old) {
			return true, false
		}
	}
	if !until.After(now) {
		return true, false // already over: nothing to remember
	}
	if !exists && len(s.m) >= s.max {
		for k, t := range s.m {
			if !now.Before(t) {
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
	s.m[key] = until
	s.n.Store(int64(len(s.m)))
	return true, evicted
}
