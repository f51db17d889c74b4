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
	"github.com/sekisho/sekisho/internal/authn/jwtauth"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
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
	SourceSession
)

// ErrUnavailable means the session store, or the Kubernetes API server
// checking a service-account token, cannot answer: the request must be
// refused with 503, neither treated as anonymous nor let through.
var ErrUnavailable = errors.New("credential check unavailable")

// SessionAuthenticator authenticates a browser session (internal/login). It
// returns the session cookie updates for the browser (activity, refreshed
// tokens, an ended session cleared), with an error too, for the caller to
// relay on whatever it answers.
type SessionAuthenticator interface {
	Authenticate(ctx context.Context, r *http.Request) (*identity.Identity, []*http.Cookie, error)
}

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
	// Session authenticates browser sessions when no bearer credential is
	// presented; nil without browser login.
	Session SessionAuthenticator
	// SessionCookie is the session cookie's name (chunks add _1, _2, ...),
	// never forwarded upstream.
	SessionCookie string
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

// Authenticate returns the identity behind r's credential: a bearer
// credential first, else the browser session. (nil, SourceNone, nil) means
// anonymous; an error wraps ErrInvalidCredentials when a credential was
// presented but does not verify, or ErrUnavailable when the session store
// (or the API server reviewing a service-account token) cannot answer.
// The error's text is safe to log. cookies are the session cookie updates
// for the browser, whatever the outcome.
func (c *Chain) Authenticate(ctx context.Context, r *http.Request) (id *identity.Identity, src Source, cookies []*http.Cookie, err error) {
	token, src := c.Credential(r)
	if src != SourceNone {
		id, err := c.Token(ctx, token)
		return id, src, nil, err
	}
	if c.Session == nil {
		return nil, SourceNone, nil, nil
	}
	id, cookies, err = c.Session.Authenticate(ctx, r)
	switch {
	case err == nil:
		return id, SourceSession, cookies, nil
	case errors.Is(err, session.ErrUnavailable):
		return nil, SourceNone, cookies, fmt.Errorf("%w: %w", ErrUnavailable, err)
	default:
		// No, expired, revoked or unreadable session: sign in again.
		return nil, SourceNone, cookies, nil
	}
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
		if errors.Is(err, jwtauth.ErrUnavailable) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
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

// CredentialHeader is the request header that carried a credential found
// at src, which an upstream that did not ask for it must not get: "" for a
// cookie (see UpstreamCookies) or no credential.
func (c *Chain) CredentialHeader(src Source) string {
	switch src {
	case SourceAuthorization:
		return "Authorization"
	case SourceHeader:
		return http.CanonicalHeaderKey(c.Header)
	}
	return ""
}

// UpstreamCookies returns the Cookie header lines as an upstream may see
// them: without sekisho's own session cookies (every chunk), which an
// upstream has no use for, and without the token cookie when consumed is
// SourceCookie (the credential sekisho consumed). changed is false, and
// lines returned as they are, when nothing is dropped; an empty result
// means no Cookie header is left.
func (c *Chain) UpstreamCookies(lines []string, consumed Source) (out []string, changed bool) {
	dropToken := consumed == SourceCookie && c.Cookie != ""
	base := c.SessionCookie
	dropSession := false
	if base != "" {
		for _, line := range lines {
			if strings.Contains(line, base) {
				dropSession = true
				break
			}
		}
	}
	if !dropToken && !dropSession {
		return lines, false
	}
	return removeCookies(lines, func(name string) bool {
		if dropToken && name == c.Cookie {
			return true
		}
		if !dropSession {
			return false
		}
		if name == base {
			return true
		}
		rest, ok := strings.CutPrefix(name, base+"_")
		return ok && rest != "" && strings.Trim(rest, "0123456789") == ""
	})
}

// removeCookies returns the Cookie header lines without the cookies drop
// names. It works on the text (name=value pairs separated by ';') rather
// than parsing and re-serializing every cookie: it runs on every request of
// a signed-in browser, whose session cookie is several kilobytes.
func removeCookies(lines []string, drop func(name string) bool) ([]string, bool) {
	out := make([]string, 0, len(lines))
	changed := false
	for _, line := range lines {
		var b strings.Builder
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if drop(strings.TrimSpace(name)) {
				changed = true
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p)
		}
		if b.Len() > 0 {
			out = append(out, b.String())
		}
	}
	if !changed {
		return lines, false
	}
	return out, true
}
