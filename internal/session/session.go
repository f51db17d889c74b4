// Package session keeps a browser's login between requests: in an encrypted
// cookie (the default: replicas stay stateless) or in Redis behind an opaque
// ticket (small cookies, server-side revocation).
package session

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
)

// Session is one login. It is what the store keeps; the gateway turns it
// into an Identity for policy on every request.
type Session struct {
	// ID is random and unique per login: a new one on every login, so a
	// session cookie planted before login is never reused (fixation).
	ID       string             `json:"id"`
	Provider string             `json:"provider"`
	Identity *identity.Identity `json:"identity"`
	// SID is the OIDC session id ("sid" claim) for back-channel logout.
	SID string `json:"sid,omitempty"`

	IDToken      string    `json:"id_token,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenExpiry  time.Time `json:"token_expiry"` // when the access/ID token expires

	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	// ExpiresAt is the absolute end of the session (created + lifetime).
	ExpiresAt time.Time `json:"expires_at"`
}

// Errors a Store returns. ErrUnavailable means the store cannot answer (Redis
// down): protected routes must fail closed with 503, not treat the user as
// anonymous and not as logged in.
var (
	ErrNoSession   = errors.New("no session")
	ErrInvalid     = errors.New("invalid session")
	ErrExpired     = errors.New("session expired")
	ErrRevoked     = errors.New("session revoked")
	ErrUnavailable = errors.New("session store unavailable")
)

// Store saves and loads sessions through the request's cookies. Save and
// Delete return the Set-Cookie updates for the browser instead of writing
// them, so the caller decides where they go: the login handler's
// response, the gateway's, or a decision service's answer.
type Store interface {
	// Load returns the session the request's cookies point to.
	Load(ctx context.Context, r *http.Request) (*Session, error)
	// Save writes s and returns the cookies that point to it, replacing
	// (and expiring leftover chunks of) any previous session cookie. A
	// store that updates the request's session in place may return none.
	Save(ctx context.Context, r *http.Request, s *Session) ([]*http.Cookie, error)
	// Delete removes the request's session (server-side when there is one,
	// else on the cookie store's revocation list, so a copy of the cookie
	// stops working) and returns cookies that expire every session cookie
	// chunk. The cookies are returned even with an error: the browser's
	// copy is cleared whatever happened to the server-side one.
	Delete(ctx context.Context, r *http.Request) ([]*http.Cookie, error)
	// RevokeSID revokes every session of the given issuer and OIDC sid
	// (back-channel logout); RevokeSubject every session of a subject when
	// the logout token has no sid. The cookie store cannot revoke and
	// returns an error saying so.
	RevokeSID(ctx context.Context, issuer, sid string) error
	RevokeSubject(ctx context.Context, issuer, subject string) error
}
