package login

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/session"
)

// StartLogin sends the browser to sign in and remembers r's URL to come
// back to: straight to the provider when there is one, to the sign-in
// page when there are several.
func (s *Service) StartLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ret := absolute(r, r.URL.RequestURI())
	if len(s.providers) == 1 {
		s.startProvider(w, r, s.providers[0], ret)
		return
	}
	http.Redirect(w, r, s.prefix+pathSignIn+"?rd="+url.QueryEscape(ret), http.StatusFound)
}

// LoginURL is where to send a browser that must sign in before returning
// to returnTo (absolute), for callers that answer for another proxy (the
// decision service): the start endpoint with one provider, the sign-in page
// with several, on returnTo's own origin. The proxy must route PathPrefix to
// sekisho's gateway listener. ok is false when returnTo is not a safe
// target for a request to host: host is the request's authority
// ("app.example.com", "app.example.com:8443"; no port means the default
// port of returnTo's scheme) or, when the caller knows the scheme, its
// origin ("https://app.example.com"), so that returnTo on another port or
// scheme of the same host name is refused.
func (s *Service) LoginURL(returnTo, host string) (string, bool) {
	scheme, authority := "", host
	if sch, rest, ok := strings.Cut(host, "://"); ok {
		scheme, authority = sch, rest
	}
	target, ok := SafeRedirect(returnTo, scheme, authority, s.allowed)
	if !ok {
		return "", false
	}
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return "", false
	}
	path := pathSignIn
	if len(s.providers) == 1 {
		path = pathStart
	}
	return u.Scheme + "://" + u.Host + s.prefix + path + "?" + url.Values{"rd": {target}}.Encode(), true
}

// returnTarget reads and checks the "rd" parameter; "/" when absent.
func (s *Service) returnTarget(r *http.Request) (string, bool) {
	rd := r.URL.Query().Get("rd")
	if rd == "" {
		return "/", true
	}
	scheme, authority := origin(r)
	return SafeRedirect(rd, scheme, authority, s.allowed)
}

func (s *Service) serveSignIn(w http.ResponseWriter, r *http.Request) {
	rd, ok := s.returnTarget(r)
	if !ok {
		s.fail(w, r, http.StatusBadRequest, "The address to return to after signing in is not allowed.", "")
		return
	}
	data := page{Title: "Sign in"}
	for _, p := range s.providers {
		q := url.Values{"provider": {p.name}, "rd": {rd}}
		data.Providers = append(data.Providers, providerLink{Name: p.name, URL: s.prefix + pathStart + "?" + q.Encode()})
	}
	renderPage(w, r, http.StatusOK, signInPage, data)
}

func (s *Service) serveStart(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("provider")
	if name == "" && len(s.providers) == 1 {
		name = s.providers[0].name
	}
	p := s.byName[name]
	if p == nil {
		s.fail(w, r, http.StatusBadRequest, "Unknown sign-in provider.", s.prefix+pathSignIn)
		return
	}
	rd, ok := s.returnTarget(r)
	if !ok {
		s.fail(w, r, http.StatusBadRequest, "The address to return to after signing in is not allowed.", "")
		return
	}
	s.startProvider(w, r, p, rd)
}

// startProvider redirects to p's authorization endpoint with a fresh
// state, nonce and PKCE verifier sealed into this login's state cookie.
func (s *Service) startProvider(w http.ResponseWriter, r *http.Request, p *provider, ret string) {
	d := p.disc.Load()
	if d == nil {
		w.Header().Set("Retry-After", "5")
		s.fail(w, r, http.StatusServiceUnavailable,
			"The identity provider "+p.name+" cannot be reached yet. Please try again in a moment.", "")
		return
	}
	scheme, authority := origin(r)
	redirectURI := scheme + "://" + authority + s.callbackPath
	if p.redirectURL != nil {
		redirectURI = p.redirectURL.String()
		if !strings.EqualFold(p.redirectURL.Hostname(), hostname(authority)) {
			// The callback is on another host: start there, so the state
			// cookie is set where the callback can read it.
			q := url.Values{"provider": {p.name}, "rd": {ret}}
			hop := p.redirectURL.Scheme + "://" + p.redirectURL.Host + s.prefix + pathStart + "?" + q.Encode()
			http.Redirect(w, r, hop, http.StatusFound)
			return
		}
	}
	st := &loginState{
		State:    rand.Text(),
		Nonce:    rand.Text(),
		Verifier: oauth2.GenerateVerifier(),
		Provider: p.name,
		Return:   ret,
		Redirect: redirectURI,
		Created:  s.now().Unix(),
	}
	if err := s.setStateCookie(w, st, strings.HasPrefix(redirectURI, "https:")); err != nil {
		s.log.Error("sign-in could not start", "provider", p.name, "error", err)
		s.fail(w, r, http.StatusInternalServerError, "Sign-in could not be started.", "")
		return
	}
	cfg := d.oauth
	cfg.RedirectURL = redirectURI
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}, p.authParams...)
	http.Redirect(w, r, cfg.AuthCodeURL(st.State, opts...), http.StatusFound)
}

// providerErrors are the authorization error codes (RFC 6749 4.1.2.1,
// OIDC Core 3.1.2.6) shown by name; anything else is shown as unknown, so
// a crafted callback URL cannot put its own words on the page.
var providerErrors = map[string]int{
	"access_denied":              http.StatusForbidden,
	"unauthorized_client":        http.StatusBadGateway,
	"invalid_request":            http.StatusBadGateway,
	"unsupported_response_type":  http.StatusBadGateway,
	"invalid_scope":              http.StatusBadGateway,
	"server_error":               http.StatusBadGateway,
	"temporarily_unavailable":    http.StatusServiceUnavailable,
	"interaction_required":       http.StatusForbidden,
	"login_required":             http.StatusForbidden,
	"account_selection_required": http.StatusForbidden,
	"consent_required":           http.StatusForbidden,
}

func (s *Service) serveCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	st, stateErr := s.openState(r, state)
	s.clearStateCookies(w, r, state)
	retry := s.prefix + pathSignIn
	if st != nil {
		retry += "?rd=" + url.QueryEscape(st.Return)
	}

	// An error from the provider ends this login with a page, never a new
	// redirect to the provider: that could loop forever.
	if code := q.Get("error"); code != "" {
		status, known := providerErrors[code]
		if !known {
			code, status = "unknown_error", http.StatusBadGateway
		}
		s.log.Info("sign-in refused by the provider", "error_code", code, "state_ok", stateErr == nil)
		s.fail(w, r, status, "The identity provider did not sign you in ("+code+").", retry)
		return
	}
	if stateErr != nil {
		s.log.Info("sign-in callback rejected", "reason", stateErr.Error())
		s.fail(w, r, http.StatusBadRequest, stateErr.Error(), retry)
		return
	}
	p := s.byName[st.Provider]
	if p == nil {
		s.fail(w, r, http.StatusBadRequest, "Unknown sign-in provider.", retry)
		return
	}
	// RFC 9207: a response naming another issuer is a mix-up attack.
	if q.Has("iss") && q.Get("iss") != p.issuer {
		s.fail(w, r, http.StatusBadRequest, "The sign-in response comes from another identity provider.", retry)
		return
	}
	d := p.disc.Load()
	if d == nil {
		s.fail(w, r, http.StatusServiceUnavailable, "The identity provider cannot be reached. Please try again in a moment.", retry)
		return
	}
	code := q.Get("code")
	if code == "" {
		s.fail(w, r, http.StatusBadRequest, "The sign-in response has no authorization code.", retry)
		return
	}

	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), s.client), fetchTimeout)
	defer cancel()
	cfg := d.oauth
	cfg.RedirectURL = st.Redirect
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			s.log.Warn("authorization code rejected", "provider", p.name, "error_code", re.ErrorCode, "description", re.ErrorDescription)
			s.fail(w, r, http.StatusBadRequest, "The sign-in code was not accepted (already used or expired).", retry)
			return
		}
		s.log.Warn("token exchange failed", "provider", p.name, "error", tokenError(err))
		s.fail(w, r, http.StatusBadGateway, "The identity provider could not complete the sign-in.", retry)
		return
	}
	v, err := s.verifyTokens(ctx, p, d, tok, st.Nonce, nil)
	if err != nil {
		s.failVerify(w, r, p, err, retry)
		return
	}

	now := s.now()
	sess := &session.Session{
		// A new ID on every login: a session cookie planted before the
		// login (fixation) is replaced, never adopted.
		ID:           rand.Text(),
		Provider:     p.name,
		Identity:     v.id,
		SID:          v.sid,
		IDToken:      v.rawIDToken,
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenExpiry:  v.expiry,
		CreatedAt:    now,
		LastSeen:     now,
		ExpiresAt:    now.Add(s.ttl),
	}
	cookies, err := s.store.Save(r.Context(), r, sess)
	if err != nil {
		s.log.Error("saving the new session failed", "provider", p.name, "error", err)
		status := http.StatusInternalServerError
		if errors.Is(err, session.ErrUnavailable) {
			status = http.StatusServiceUnavailable
		}
		s.fail(w, r, status, "Your session could not be saved. Please try again.", retry)
		return
	}
	setCookies(w, cookies)
	s.log.Info("signed in", "provider", p.name, "subject", v.id.Subject, "username", v.id.Username)

	scheme, authority := origin(r)
	target, ok := SafeRedirect(st.Return, scheme, authority, s.allowed)
	if !ok {
		target = "/"
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// tokenError describes a token endpoint failure for the log without the
// response body.
func tokenError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		desc := "status " + strconv.Itoa(re.Response.StatusCode)
		if re.ErrorCode != "" {
			desc += ", error " + re.ErrorCode
		}
		return desc
	}
	return err.Error()
}
