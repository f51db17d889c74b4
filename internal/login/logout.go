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
	if err := s.store.Delete(ctx, w, r); err != nil {
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

// crossOrigin reports a sign-out POST sent from another site.
func crossOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	case "same-origin", "none":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return true // includes "null"
	}
	from, ok := targetOrigin(o, u)
	return !ok || from != requestOrigin(origin(r))
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
	p, issuer, sid, sub, err := s.verifyLogoutToken(r, raw)
	if err != nil {
		s.log.Info("back-channel logout rejected", "error", err)
		logoutError(w, "invalid_request", "the logout token is not valid")
		return
	}
	if sid != "" {
		err = s.store.RevokeSID(ctx, issuer, sid)
	} else {
		err = s.store.RevokeSubject(ctx, issuer, sub)
	}
	if err != nil {
		s.log.Error("back-channel logout could not revoke sessions", "provider", p.name, "error", err)
		logoutError(w, "logout_failed", "the sessions could not be revoked")
		return
	}
	s.log.Info("back-channel logout", "provider", p.name, "by_sid", sid != "")
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken picks the provider by the token's (unverified) issuer
// and verifies it with that provider's keys: go-oidc checks the signature,
// iss, aud = client_id, exp, jti, the back-channel logout event, no nonce,
// and sid or sub; the iat check is added here.
func (s *Service) verifyLogoutToken(r *http.Request, raw string) (p *provider, issuer, sid, sub string, err error) {
	tok, err := jwt.ParseSigned(raw, logoutAlgs)
	if err != nil {
		return nil, "", "", "", errors.New("malformed logout token")
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, "", "", "", errors.New("malformed logout token claims")
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
		if lt.IssuedAt.IsZero() || lt.IssuedAt.After(s.now().Add(logoutClockSkew)) {
			return nil, "", "", "", errors.New("logout token has no iat or is issued in the future")
		}
		return cand, cand.issuer, lt.SessionID, lt.Subject, nil
	}
	return nil, "", "", "", err
}

// logoutError answers a back-channel logout with 400 and the JSON error
// body the specification describes.
func logoutError(w http.ResponseWriter, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// serveUserinfo returns the identity the gateway sees for this session,
// for applications and for debugging policies. It never includes tokens.
func (s *Service) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	id, err := s.Authenticate(r.Context(), w, r)
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
