// Package authn is the pipeline's authenticate stage: it finds the
// credential a request carries and asks the authenticator for its kind
// (bearer JWT, API token; sessions come with browser login) who it belongs to.
package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/authn/apitoken"
	jwtauth "github.com/sekisho/sekisho/internal/authn/jwt"
	"github.com/sekisho/sekisho/internal/identity"
)

// ErrInvalidCredentials means a credential was presented and rejected: the
// answer is 401 with error="invalid_token", never anonymous access.
var ErrInvalidCredentials = errors.New("invalid credentials")

// Source says where the credential was found, so the gateway can remove
// exactly that credential before forwarding.
type Source int

// Credential sources.
const (
	SourceNone Source = iota
	SourceAuthorization
	SourceHeader
	SourceCookie
)

// Chain authenticates bearer credentials. It is immutable and part of a
// config snapshot.
type Chain struct {
	// JWT verifies bearer JWTs; nil when no issuer is configured.
	JWT *jwtauth.Authenticator
	// Tokens verifies API tokens; nil when none are configured.
	Tokens *apitoken.Store
	// Header and Cookie name extra places a raw token may be sent in.
	Header string
	Cookie string
	// Now is the clock for API token expiry; default time.Now.
	Now func() time.Time
}

// Credential extracts the bearer credential from r: the Authorization
// header's Bearer token first, then the configured header, then the cookie.
func (c *Chain) Credential(r *http.Request) (string, Source) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token), SourceAuthorization
		}
	}
	if c.Header != "" {
		if v := r.Header.Get(c.Header); v != "" {
			return strings.TrimSpace(v), SourceHeader
		}
	}
	if c.Cookie != "" {
		if ck, err := r.Cookie(c.Cookie); err == nil && ck.Value != "" {
			return ck.Value, SourceCookie
		}
	}
	return "", SourceNone
}

// Authenticate returns the identity behind r's credential: (nil, SourceNone,
// nil) when there is none, an error wrapping ErrInvalidCredentials when one
// was presented but does not verify. The error's text is safe to log.
func (c *Chain) Authenticate(ctx context.Context, r *http.Request) (*identity.Identity, Source, error) {
	token, src := c.Credential(r)
	if src == SourceNone {
		return nil, SourceNone, nil
	}
	id, err := c.Token(ctx, token)
	return id, src, err
}

// Token authenticates a bare token: a JWT (three dot-separated parts) by
// its issuer, anything else as an API token.
func (c *Chain) Token(ctx context.Context, token string) (*identity.Identity, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidCredentials)
	}
	if strings.Count(token, ".") == 2 {
		if c.JWT == nil {
			return nil, fmt.Errorf("%w: no JWT issuer is configured", ErrInvalidCredentials)
		}
		id, err := c.JWT.Authenticate(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidCredentials, err)
		}
		return id, nil
	}
	if c.Tokens == nil {
		return nil, fmt.Errorf("%w: no API tokens are configured", ErrInvalidCredentials)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	id, err := c.Tokens.Authenticate(token, now())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCredentials, err)
	}
	return id, nil
}

// RemoveCredential deletes the credential found at src from r, so that a
// token sekisho consumed is not passed on to an upstream that did not ask
// for it.
func (c *Chain) RemoveCredential(r *http.Request, src Source) {
	switch src {
	case SourceAuthorization:
		r.Header.Del("Authorization")
	case SourceHeader:
		r.Header.Del(c.Header)
	case SourceCookie:
		removeCookie(r, c.Cookie)
	}
}

// removeCookie rewrites the Cookie header without the named cookie.
func removeCookie(r *http.Request, name string) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, ck := range cookies {
		if ck.Name != name {
			r.AddCookie(ck)
		}
	}
}
