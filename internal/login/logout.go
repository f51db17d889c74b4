package login

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/session"
)

const (
	// maxLogoutForm bounds a back-channel logout request body.
	maxLogoutForm = 64 << 10
	// logoutClockSkew tolerates an OP clock slightly ahead for "iat".
	logoutClockSkew = time.Minute
	// maxLogoutTokenAge is how old (by "iat") a logout token may be. A
	// token's jti is remembered until it could no longer be accepted, so
	// this also bounds how long a replay is refused for.
	maxLogoutTokenAge = 10 * time.Minute
	// logoutReplayCacheSize bounds the remembered jti values.
	logoutReplayCacheSize = 10000
	// Back-channel logout requests are limited (before any parsing or
	// signature check) to this rate and burst, across all providers.
	logoutRate  = 20
	logoutBurst = 40
)

// logoutAlgs are the signature algorithms a logout token may use before
// the provider's verifier narrows them down.
var logoutAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// serveSignOut shows a confirmation form on GET and signs out on POST, so
// that a link or an image elsewhere cannot sign a user out.
func (s *Service) serveSignOut(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		renderPage(w, r, http.StatusOK, signOutPage, page{Title: "Sign out", Action: s.prefix + pathSignOut})
		return
	}
	if crossOrigin(r) {
		s.fail(w, r, http.StatusForbidden, "Sign-out must be confirmed on this site.", s.prefix+pathSignOut)
		return
	}
	ctx := r.Context()
	sess, err := s.store.Load(ctx, r)
	if errors.Is(err, session.ErrUnavailable) {
		s.fail(w, r, http.StatusServiceUnavailable, "You could not be signed out right now. Please try again.", s.prefix+pathSignOut)
		return
	}
	cookies, err := s.store.Delete(ctx, r)
	setCookies(w, cookies)
	if err != nil {
		s.log.Error("sign-out could not delete the session", "error", err)
		s.fail(w, r, http.StatusServiceUnavailable, "You could not be signed out right now. Please try again.", s.prefix+pathSignOut)
		return
	}
	target := s.postLogoutTarget(r)
	if sess == nil {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	s.refreshed.remove(sess.ID)
	s.log.Info("signed out", "provider", sess.Provider, "subject", sess.Identity.Subject)
	if end := s.endSessionURL(sess, target); end != "" {
		http.Redirect(w, r, end, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// crossOrigin reports a sign-out POST sent from another site: by
// Sec-Fetch-Site when the browser sends it, else by Origin, else by
// Referer (an older browser that sends no Origin still sends where the
// form was). A request with none of the three is allowed: browsers send at
// least one on a cross-site form POST unless the page asked for no
// Referer, and a non-browser client (curl, a script) sends none and needs
// no protection from forged requests, holding its own cookies.
func crossOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	case "same-origin", "none":
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		return !sameOrigin(r, o)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return !sameOrigin(r, ref)
	}
	return false
}

// sameOrigin reports whether the absolute URL raw (an Origin or a Referer)
// has the request's own scheme, host and port; "null" and anything that
// does not parse is another origin.
func sameOrigin(r *http.Request, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	from, ok := targetOrigin(raw, u)
	return ok && from == requestOrigin(origin(r))
}

// postLogoutTarget is the absolute URL sign-out ends on; the signed-out
// page when the configured one is not allowed for this request's host.
func (s *Service) postLogoutTarget(r *http.Request) string {
	scheme, authority := origin(r)
	target := s.postLogout
	if strings.HasPrefix(target, "/") {
		target = absolute(r, target)
	}
	if _, ok := SafeRedirect(target, scheme, authority, s.allowed); !ok {
		s.log.Warn("post-logout redirect is not allowed for this host; using the signed-out page", "host", authority)
		target = absolute(r, s.prefix+pathSignedOut)
	}
	return target
}

// endSessionURL is the provider's RP-initiated logout URL for sess, or ""
// when the provider has none (or is not discovered).
func (s *Service) endSessionURL(sess *session.Session, postLogout string) string {
	p := s.byName[sess.Provider]
	if p == nil {
		return ""
	}
	d := p.disc.Load()
	if d == nil || d.endSession == "" {
		return ""
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("client_id", p.clientID)
	q.Set("post_logout_redirect_uri", postLogout)
	if sess.IDToken != "" {
		q.Set("id_token_hint", sess.IDToken)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// serveBackchannel implements OpenID Connect Back-Channel Logout 1.0: the
// provider posts a signed logout token, and the sessions it names are
// revoked in the store.
func (s *Service) serveBackchannel(w http.ResponseWriter, r *http.Request) {
	// The endpoint takes no credentials; the token's signature is the
	// check, and checking costs. A flood is refused before it is read.
	if !s.logoutLimit.Allow() {
		w.Header().Set("Retry-After", "1")
		logoutErrorStatus(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many logout requests; retry later")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutForm)
	if err := r.ParseForm(); err != nil {
		logoutError(w, "invalid_request", "the request body is not a valid form")
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		logoutError(w, "invalid_request", "logout_token is required")
		return
	}
	ctx := r.Context()
	lt, err := s.verifyLogoutToken(r, raw)
	if err != nil {
		s.log.Info("back-channel logout rejected", "error", err)
		logoutError(w, "invalid_request", "the logout token is not valid")
		return
	}
	// Section 2.6: a token whose jti was seen recently is refused, so a
	// captured token cannot end sessions signed in after it was used.
	replayKey := lt.issuer + "\x00" + lt.jti
	if s.logoutSeen.Has(replayKey) {
		s.log.Info("back-channel logout rejected", "provider", lt.p.name, "error", "logout token replayed (jti already used)")
		logoutError(w, "invalid_request", "the logout token was already used")
		return
	}
	if lt.sid != "" {
		err = s.store.RevokeSID(ctx, lt.issuer, lt.sid)
	} else {
		err = s.store.RevokeSubject(ctx, lt.issuer, lt.sub)
	}
	if err != nil {
		s.log.Error("back-channel logout could not revoke sessions", "provider", lt.p.name, "error", err)
		logoutError(w, "logout_failed", "the sessions could not be revoked")
		return
	}
	// Remembered only once it has worked, so that the provider may retry a
	// logout that failed here; racing duplicates both revoke, which is harmless.
	if _, evicted := s.logoutSeen.AddNew(replayKey, lt.replayUntil); evicted {
		s.log.Warn("the back-channel logout replay cache is full; the oldest entry was dropped", "size", logoutReplayCacheSize)
	}
	s.log.Info("back-channel logout", "provider", lt.p.name, "by_sid", lt.sid != "")
	w.WriteHeader(http.StatusOK)
}

// logoutToken is what a verified logout token asks for.
type logoutToken struct {
	p                *provider
	issuer, sid, sub string
	jti              string
	replayUntil      time.Time // until when a replay must be refused
}

// verifyLogoutToken picks the provider by the token's (unverified) issuer
// and verifies it with that provider's keys: go-oidc checks the signature,
// iss, aud = client_id, exp, jti, the back-channel logout event, no nonce,
// and sid or sub; the iat checks (not in the future, not older than
// maxLogoutTokenAge) are added here.
func (s *Service) verifyLogoutToken(r *http.Request, raw string) (*logoutToken, error) {
	tok, err := jwt.ParseSigned(raw, logoutAlgs)
	if err != nil {
		return nil, errors.New("malformed logout token")
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, errors.New("malformed logout token claims")
	}
	err = errors.New("no provider has the token's issuer")
	for _, cand := range s.providers {
		if cand.issuer != unverified.Issuer {
			continue
		}
		d := cand.disc.Load()
		if d == nil {
			err = errors.New("provider " + cand.name + " is not discovered yet")
			continue
		}
		lt, verr := d.verifier.VerifyLogout(r.Context(), raw)
		if verr != nil {
			err = verr
			continue
		}
		now := s.now()
		if lt.IssuedAt.IsZero() || lt.IssuedAt.After(now.Add(logoutClockSkew)) {
			return nil, errors.New("logout token has no iat or is issued in the future")
		}
		oldest := lt.IssuedAt.Add(maxLogoutTokenAge)
		if now.After(oldest) {
			return nil, errors.New("logout token is too old (iat more than 10 minutes ago)")
		}
		until := lt.Expiry
		if oldest.Before(until) {
			until = oldest
		}
		return &logoutToken{
			p: cand, issuer: cand.issuer, sid: lt.SessionID, sub: lt.Subject, jti: lt.TokenID,
			replayUntil: until.Add(logoutClockSkew),
		}, nil
	}
	return nil, err
}

// logoutError answers a back-channel logout with 400 and the JSON error
// body the specification describes.
func logoutError(w http.ResponseWriter, code, description string) {
	logoutErrorStatus(w, http.StatusBadRequest, code, description)
}

func logoutErrorStatus(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// serveUserinfo returns the identity the gateway sees for this session,
// for applications and for debugging policies. It never includes tokens.
func (s *Service) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	id, cookies, err := s.Authenticate(r.Context(), r)
	setCookies(w, cookies)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		httperr.Write(w, r, http.StatusServiceUnavailable, "the session store is unavailable")
		return
	case err != nil:
		httperr.Write(w, r, http.StatusUnauthorized, "not signed in")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(id)
}
