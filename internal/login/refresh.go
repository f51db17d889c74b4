package login

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

const (
	// refreshTimeout bounds one refresh, including the wait of a request
	// whose token has already expired.
	refreshTimeout = 10 * time.Second
	// minRefreshAhead is the floor of the default refresh-ahead window.
	minRefreshAhead = 30 * time.Second
	// refreshRetry is how long a refresh that failed for a transient
	// reason (provider down) is not retried in the background.
	refreshRetry = 30 * time.Second
	// refreshCacheSize bounds the refreshed sessions held in memory.
	refreshCacheSize = 10000
)

// Authenticate returns the identity of the request's session and the
// cookie updates for the browser (recorded activity, a refreshed session,
// or the expiry of an ended one), which the caller relays on its answer:
// they are returned with an error too, since an ended session is cleared
// in the browser. It returns session.ErrNoSession when there is no session
// and session.ErrUnavailable when the store (or, for an expired token, the
// provider) cannot answer: the caller answers 503 rather than treating the
// user as anonymous. Other session errors (ErrExpired, ErrInvalid,
// ErrRevoked) mean "sign in again".
//
// Tokens are refreshed off the request path: when they expire within the
// refresh-ahead window, a background refresh starts and this request goes
// on with the still-valid session; the next request of the browser gets
// the refreshed session (and cookie). Only a token that has already
// expired is refreshed while the request waits, at most refreshTimeout.
// The provider's claim rules run again on refreshed claims, and a refresh
// token the provider rejects (invalid_grant) ends the session.
func (s *Service) Authenticate(ctx context.Context, r *http.Request) (*identity.Identity, []*http.Cookie, error) {
	sess, err := s.store.Load(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	if s.byName[sess.Provider] == nil || sess.Identity == nil {
		return nil, nil, fmt.Errorf("%w: unknown provider %q", session.ErrInvalid, sess.Provider)
	}
	var cookies []*http.Cookie
	now := s.now()
	if s.idle > 0 && sess.Touch(now, s.idle) {
		touched, err := s.store.Save(ctx, r, sess)
		if errors.Is(err, session.ErrRevoked) {
			return nil, nil, err
		} else if err != nil {
			s.log.Warn("recording session activity failed", "error", err)
		}
		cookies = touched
	}
	if e, ok := s.refreshed.get(sess.ID); ok {
		switch {
		case e.failed(sess):
			s.refreshed.remove(sess.ID)
			return nil, append(cookies, s.endSession(ctx, r)...), fmt.Errorf("%w: the session could not be refreshed", session.ErrExpired)
		case e.sess != nil && e.sess.TokenExpiry.After(sess.TokenExpiry):
			var applied []*http.Cookie
			if sess, applied, err = s.apply(ctx, r, e.sess); err != nil {
				return nil, cookies, err
			}
			cookies = append(cookies, applied...)
		}
	}

	if sess.TokenExpiry.IsZero() {
		return sess.Identity, cookies, nil
	}
	remaining := sess.TokenExpiry.Sub(now)
	if remaining > 0 {
		if sess.RefreshToken != "" && remaining <= s.refreshAhead(sess) && !s.refreshed.backingOff(sess.ID, now) {
			s.flight.DoChan(sess.ID, s.refreshFunc(sess, slices.Clone(r.Header["Cookie"])))
		}
		return sess.Identity, cookies, nil
	}

	// The token has expired: without a fresh one the session ends, since
	// the provider is no longer vouching for this user.
	if sess.RefreshToken == "" {
		return nil, append(cookies, s.endSession(ctx, r)...), fmt.Errorf("%w: tokens expired and there is no refresh token", session.ErrExpired)
	}
	if s.refreshed.backingOff(sess.ID, now) {
		return nil, cookies, fmt.Errorf("%w: refreshing expired tokens failed recently", session.ErrUnavailable)
	}
	t := time.NewTimer(refreshTimeout)
	defer t.Stop()
	select {
	case res := <-s.flight.DoChan(sess.ID, s.refreshFunc(sess, slices.Clone(r.Header["Cookie"]))):
		if res.Err != nil {
			if errors.Is(res.Err, session.ErrExpired) {
				return nil, append(cookies, s.endSession(ctx, r)...), res.Err
			}
			return nil, cookies, fmt.Errorf("%w: refreshing expired tokens: %w", session.ErrUnavailable, res.Err)
		}
		sess, applied, err := s.apply(ctx, r, res.Val.(*session.Session))
		if err != nil {
			return nil, cookies, err
		}
		return sess.Identity, append(cookies, applied...), nil
	case <-t.C:
		return nil, cookies, fmt.Errorf("%w: refreshing expired tokens timed out", session.ErrUnavailable)
	case <-ctx.Done():
		return nil, cookies, ctx.Err()
	}
}

// persist writes a refreshed session to a store shared by all replicas
// (Redis) right away, so that a browser's next request finds it whichever
// replica serves it; otherwise another replica would redeem the rotated
// refresh token again and end the session. The session's ticket cookie does
// not change, so no response is needed. The cookie store has nothing shared
// to update: its refreshed cookie is written on the browser's next request.
func (s *Service) persist(ctx context.Context, refreshed *session.Session, cookies []string) {
	shared, ok := s.store.(interface{ Shared() bool })
	if !ok || !shared.Shared() || len(cookies) == 0 {
		return
	}
	cp := *refreshed
	r := &http.Request{Header: http.Header{"Cookie": cookies}}
	// The ticket is the request's, so the store updates in place and has
	// no cookie to return; there is no browser to give one to anyway.
	if _, err := s.store.Save(ctx, r, &cp); err != nil {
		s.log.Warn("storing the refreshed session failed; it is written on the browser's next request", "provider", cp.Provider, "error", err)
	}
}

// apply writes a refreshed session to the store and returns it with the
// browser's cookie updates. A session revoked meanwhile stays revoked; any
// other failed write is logged and the refreshed session is used anyway:
// it stays cached and is written on the next request.
func (s *Service) apply(ctx context.Context, r *http.Request, refreshed *session.Session) (*session.Session, []*http.Cookie, error) {
	cp := *refreshed // Save may fill in fields; the cached one is shared
	cookies, err := s.store.Save(ctx, r, &cp)
	if err != nil {
		if errors.Is(err, session.ErrRevoked) {
			s.refreshed.remove(cp.ID)
			return nil, nil, err
		}
		s.log.Warn("saving the refreshed session failed; will retry on the next request", "provider", cp.Provider, "error", err)
	}
	return &cp, cookies, nil
}

// endSession clears the browser's session and returns the cookies that
// expire it; failures are only logged, as the caller is already answering
// "no session".
func (s *Service) endSession(ctx context.Context, r *http.Request) []*http.Cookie {
	cookies, err := s.store.Delete(ctx, r)
	if err != nil {
		s.log.Warn("clearing an ended session failed", "error", err)
	}
	return cookies
}

// refreshAhead is the window before token expiry in which a refresh starts.
// Without a configured value it is a quarter of the token lifetime. The
// session records no token issue time; LastSeen is set whenever tokens are
// written and only ever moves forward, so TokenExpiry-LastSeen never
// overstates the lifetime: the estimate can only make refreshes later
// (down to the 30s floor), never make every request refresh.
func (s *Service) refreshAhead(sess *session.Session) time.Duration {
	if s.ahead > 0 {
		return s.ahead
	}
	return max(sess.TokenExpiry.Sub(sess.LastSeen)/4, minRefreshAhead)
}

// refreshFunc is one refresh of sess, shared through the singleflight
// group by every request of that session while it runs. It runs detached
// from any request, so a request that gives up does not cancel it.
func (s *Service) refreshFunc(sess *session.Session, cookies []string) func() (any, error) {
	return func() (any, error) {
		ctx, cancel := context.WithTimeout(oidc.ClientContext(s.ctx, s.client), refreshTimeout)
		defer cancel()
		ns, err := s.refresh(ctx, sess)
		s.refreshed.record(sess, ns, err, s.now())
		if err == nil {
			s.persist(ctx, ns, cookies)
		}
		if err != nil {
			s.log.Warn("token refresh failed", "provider", sess.Provider, "subject", sess.Identity.Subject,
				"ends_session", errors.Is(err, session.ErrExpired), "error", err)
		}
		if s.onRefresh != nil {
			s.onRefresh(sess.ID, err)
		}
		if err != nil {
			return nil, err
		}
		return ns, nil
	}
}

// refresh redeems sess's refresh token. Errors wrapping session.ErrExpired
// are final (the provider said invalid_grant, or the claim rules now
// reject the user); others are transient.
func (s *Service) refresh(ctx context.Context, sess *session.Session) (*session.Session, error) {
	p := s.byName[sess.Provider]
	d := p.disc.Load()
	if d == nil {
		return nil, errors.New("provider not discovered yet")
	}
	tok, err := d.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: sess.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, fmt.Errorf("%w: provider rejected the refresh token (invalid_grant)", session.ErrExpired)
		}
		return nil, fmt.Errorf("refresh: %s", tokenError(err))
	}
	v, err := s.verifyTokens(ctx, p, d, tok, "", sess)
	if err != nil {
		var ve *verifyError
		if errors.As(err, &ve) && ve.status == http.StatusForbidden {
			return nil, fmt.Errorf("%w: %w", session.ErrExpired, err)
		}
		return nil, err
	}
	ns := *sess
	ns.Identity = v.id
	ns.SID = v.sid
	ns.IDToken = v.rawIDToken
	ns.AccessToken = tok.AccessToken
	if tok.RefreshToken != "" {
		ns.RefreshToken = tok.RefreshToken
	}
	ns.TokenExpiry = v.expiry
	ns.LastSeen = s.now()
	return &ns, nil
}

// refreshEntry is the outcome of the last refresh of one session.
type refreshEntry struct {
	// sess is the refreshed session, handed to every request that still
	// carries an older one (other tabs, requests in flight), so that none
	// of them redeems the already-rotated refresh token again.
	sess *session.Session
	// failedToken is the hash of a refresh token the provider rejected;
	// the session ends only for a browser still holding that token.
	failedToken [sha256.Size]byte
	fatal       bool
	// retryAt delays the next background attempt after a transient failure.
	retryAt time.Time
}

func (e refreshEntry) failed(sess *session.Session) bool {
	return e.fatal && e.failedToken == sha256.Sum256([]byte(sess.RefreshToken))
}

// refreshCache holds refresh outcomes by session ID until the browser's
// next request picks them up. It is bounded: when full, an arbitrary entry
// is dropped (Go map order), which at worst costs that browser one more
// refresh. Entries are values, so a reader never sees one half-updated.
type refreshCache struct {
	mu  sync.Mutex
	m   map[string]refreshEntry
	max int
}

func newRefreshCache(size int) *refreshCache {
	return &refreshCache{m: make(map[string]refreshEntry), max: size}
}

func (c *refreshCache) get(id string) (refreshEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	return e, ok
}

func (c *refreshCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func (c *refreshCache) backingOff(id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return now.Before(c.m[id].retryAt)
}

// record stores the outcome of refreshing from.
func (c *refreshCache) record(from, refreshed *session.Session, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, exists := c.m[from.ID]
	if !exists && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	switch {
	case err == nil:
		e = refreshEntry{sess: refreshed}
	case errors.Is(err, session.ErrExpired):
		e.fatal = true
		e.failedToken = sha256.Sum256([]byte(from.RefreshToken))
	default:
		e.retryAt = now.Add(refreshRetry)
	}
	c.m[from.ID] = e
}
