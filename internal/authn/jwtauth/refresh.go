package jwtauth

import (
	"context"
	"hash/maphash"
	"time"
)

// Key refresh has two schedules, run by one goroutine per issuer so that at
// most one fetch per issuer is ever in flight:
//
//   - Regular: every RefreshInterval, or the JWKS's Cache-Control lifetime
//     clamped to [minRegular, maxRegular]; after a failure, retryMin doubling
//     to retryMax.
//   - Unknown kid: a request refused for a kid the keys do not have starts a
//     sequence of fetches that converges on a JWKS that publishes a new key
//     late (a CDN in front of it lags): the first at once, then after 1s, 2s,
//     4s … up to KIDRetryMax, the gap always counted from the previous fetch
//     of either kind. A fetch that finds a kid it looked for resets the
//     backoff; one that finds nothing doubles it; the sequence ends after a
//     fetch at the cap finds nothing, and its kids are not looked for again
//     for 20 × KIDRetryMax (10 min). A new kid while the backoff is high
//     waits for the current step: made-up kids can never make fetches more
//     frequent than one per step, so a flood of them costs the issuer one
//     fetch per KIDRetryMax. The step falls back to KIDRetryMin only after
//     4 × KIDRetryMax (2 min) without an unknown-kid fetch, or when a fetch
//     finds a kid it looked for.
//
// Requests never wait for either schedule: an unknown kid is refused at once
// and only hands the kid to the refresh goroutine (a non-blocking send).

const (
	// minRegular and maxRegular clamp a JWKS Cache-Control lifetime, so a
	// max-age of a few seconds cannot make every replica poll the issuer
	// continuously and a max-age of a year cannot freeze the keys.
	minRegular = time.Minute
	maxRegular = 24 * time.Hour
	// kickQueue is how many unknown kids can wait for the refresh goroutine;
	// more are dropped (their requests are refused anyway and come again).
	kickQueue = 64
	// maxWanted bounds the kids one sequence looks for; further kids still
	// ride on the scheduled fetch but are not checked individually.
	maxWanted = 64
	// maxMissing bounds the remembered kids that were looked for and not
	// found; when full, expired entries go first, then new ones are not
	// remembered (the step bound still holds for them).
	maxMissing = 1024
)

// kidHash is a kid reduced to a fixed size, so made-up kids of any length
// cost the scheduler the same few bytes.
type kidHash uint64

var kidSeed = maphash.MakeSeed()

func hashKID(kid string) kidHash { return kidHash(maphash.String(kidSeed, kid)) }

// clock is the time source of the refresh schedule, replaceable in tests so
// the backoff can be checked without real waiting.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) timer
}

// timer is the part of *time.Timer the refresh loop uses. Since Go 1.23,
// Reset on a timer that fired but was not received discards the stale tick.
type timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time   { return r.t.C }
func (r realTimer) Reset(d time.Duration) { r.t.Reset(d) }
func (r realTimer) Stop()                 { r.t.Stop() }

// schedule decides when the next fetch of one issuer's JWKS is due. It is
// pure (times are passed in) and owned by the issuer's refresh goroutine.
type schedule struct {
	minStep, maxStep time.Duration
	// quiet is how long without an unknown-kid fetch makes the backoff
	// start again at minStep.
	quiet time.Duration
	// forget is how long a kid that a whole sequence did not find is not
	// looked for again (a client still using a removed key).
	forget time.Duration

	step time.Duration // gap before the next unknown-kid fetch
	// capped: the scheduled retry is maxStep after the fetch before it, so
	// if it finds nothing the sequence ends.
	capped    bool
	lastFetch time.Time // end of the last fetch attempt; zero before the first
	lastLook  time.Time // end of the last fetch that looked for unknown kids
	regularAt time.Time
	retryAt   time.Time // zero when no unknown-kid fetch is scheduled
	wanted    map[kidHash]struct{}
	missing   map[kidHash]time.Time // kid → when it may be looked for again
}

func newSchedule(minStep, maxStep time.Duration) *schedule {
	return &schedule{
		minStep: minStep,
		maxStep: maxStep,
		quiet:   4 * maxStep,
		forget:  20 * maxStep,
		step:    minStep,
		wanted:  make(map[kidHash]struct{}),
		missing: make(map[kidHash]time.Time),
	}
}

// next is when the next fetch is due.
func (s *schedule) next() time.Time {
	if !s.retryAt.IsZero() && s.retryAt.Before(s.regularAt) {
		return s.retryAt
	}
	return s.regularAt
}

// unknown records a refused request for kid k. Only a kid not already wanted or remembered as
// missing can start a sequence, and the first fetch of a sequence still
// waits for the current step after the last fetch.
func (s *schedule) unknown(now time.Time, k kidHash) {
	if _, ok := s.wanted[k]; ok {
		return
	}
	if until, ok := s.missing[k]; ok {
		if now.Before(until) {
			return
		}
		delete(s.missing, k)
	}
	if len(s.wanted) < maxWanted {
		s.wanted[k] = struct{}{}
	}
	if !s.retryAt.IsZero() {
		return // a sequence is running; this kid is checked by its next fetch
	}
	if !s.lastLook.IsZero() && now.Sub(s.lastLook) >= s.quiet {
		s.step = s.minStep
	}
	s.capped = s.step >= s.maxStep
	s.retryAt = s.lastFetch.Add(s.step)
	if s.retryAt.Before(now) {
		s.retryAt = now
	}
}

// fetched records a fetch attempt that ended at now; ks is the fetched set,
// nil if the fetch failed. It returns how many kids a finished sequence gave
// up on (for the log).
func (s *schedule) fetched(now time.Time, ks *keySet) (gaveUp int) {
	s.lastFetch = now
	if len(s.wanted) == 0 {
		s.retryAt = time.Time{}
		return 0
	}
	s.lastLook = now
	found := false
	if ks != nil {
		for k := range s.wanted {
			if _, ok := ks.kids[k]; ok {
				found = true
				delete(s.wanted, k)
			}
		}
	}
	if found {
		s.step, s.capped = s.minStep, false
	}
	if len(s.wanted) == 0 {
		s.retryAt = time.Time{}
		return 0
	}
	if s.capped {
		gaveUp = len(s.wanted)
		for k := range s.wanted {
			s.remember(k, now.Add(s.forget))
		}
		clear(s.wanted)
		s.retryAt = time.Time{}
		return gaveUp
	}
	s.retryAt = now.Add(s.step)
	s.capped = s.step >= s.maxStep
	if s.step > s.maxStep/2 {
		s.step = s.maxStep
	} else {
		s.step *= 2
	}
	return 0
}

func (s *schedule) remember(k kidHash, until time.Time) {
	if len(s.missing) >= maxMissing {
		now := until.Add(-s.forget)
		for m, u := range s.missing {
			if !now.Before(u) {
				delete(s.missing, m)
			}
		}
		if len(s.missing) >= maxMissing {
			return
		}
	}
	s.missing[k] = until
}

// regularInterval is the time until the next regular refresh after a
// successful fetch whose Cache-Control gave lifetime (negative: none).
func (a *Authenticator) regularInterval(lifetime time.Duration) time.Duration {
	if lifetime < 0 {
		return a.refreshInterval
	}
	return min(max(lifetime, minRegular), maxRegular)
}

// refreshLoop keeps the issuer's keys current until ctx ends (see the
// comment at the top of this file). A failed fetch never removes keys: the
// last good set stays in use.
func (a *Authenticator) refreshLoop(ctx context.Context, iss *issuer) {
	s := newSchedule(a.kidRetryMin, a.kidRetryMax)
	s.regularAt = a.clock.Now() // the first fetch at once
	errBackoff := retryMin
	t := a.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case kid := <-iss.kick:
			now := a.clock.Now()
			if !a.installed(iss, kid) {
				s.unknown(now, hashKID(kid))
			}
			t.Reset(s.next().Sub(now))
			continue
		case <-t.C():
		}
		if now := a.clock.Now(); now.Before(s.next()) {
			t.Reset(s.next().Sub(now))
			continue
		}

		ks, lifetime, err := a.fetchKeys(ctx, iss)
		now := a.clock.Now()
		result := "failed"
		if err != nil {
			s.regularAt = now.Add(errBackoff)
			if ctx.Err() == nil {
				a.log.Warn("jwt issuer keys not refreshed; last good keys stay in use",
					"issuer", iss.name, "error", err, "retry_in", errBackoff, "have_keys", iss.keys.Load() != nil)
			}
			errBackoff = min(errBackoff*2, retryMax)
		} else {
			errBackoff = retryMin
			s.regularAt = now.Add(a.regularInterval(lifetime))
			result = "unchanged"
			if a.install(iss, ks) {
				result = "updated"
			}
		}
		if n := s.fetched(now, ks); n > 0 {
			a.log.Info("jwt: unknown signing key ids still not in the issuer's JWKS after retrying; refused until the next regular refresh or a new key id",
				"issuer", iss.name, "key_ids", n, "retry_after", s.forget)
		}
		t.Reset(s.next().Sub(now))
		if a.onKeyRefresh != nil {
			a.onKeyRefresh(iss.name, result)
		}
		if a.onRefresh != nil {
			a.onRefresh(iss.name, err)
		}
	}
}

// installed reports whether the keys now in use have kid: the request saw
// an older set, and a fetch since then brought the key.
func (a *Authenticator) installed(iss *issuer, kid string) bool {
	if kid == "" {
		return false // no kid: a request that found no fitting key, or no keys at all
	}
	ks := iss.keys.Load()
	if ks == nil {
		return false
	}
	_, ok := ks.kids[hashKID(kid)]
	return ok
}

// install swaps in ks unless it has the same keys as the current set, and
// reports whether it did.
func (a *Authenticator) install(iss *issuer, ks *keySet) bool {
	changed := false
	if old := iss.keys.Load(); old == nil || old.fingerprint != ks.fingerprint {
		iss.keys.Store(ks)
		a.log.Info("jwt issuer keys updated", "issuer", iss.name, "keys", len(ks.all))
		changed = true
	}
	iss.readyOnce.Do(func() {
		close(iss.ready)
		if a.pending.Add(-1) == 0 {
			close(a.keysReady)
		}
	})
	return changed
}

// unknownKID is the request side of an unknown kid: count it and hand it to
// the refresh goroutine without waiting. When the queue is full the kid is
// dropped: a fetch is already coming, and the client's retry hands it again.
func (a *Authenticator) unknownKID(iss *issuer, kid string) {
	if a.onUnknownKID != nil {
		a.onUnknownKID(iss.name)
	}
	select {
	case iss.kick <- kid:
	default:
	}
}
