package devidp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	authRequestTTL  = 10 * time.Minute // time to fill in the login form
	codeTTL         = time.Minute
	refreshTokenTTL = 24 * time.Hour // outlives a working day of development
)

var errNotFound = errors.New("not found or expired")

// storage is the in-memory op.Storage. Everything is lost on restart, which
// is what a development provider wants.
type storage struct {
	users     *userDB
	clients   map[string]*client
	key       *signingKey
	now       func() time.Time
	accessTTL time.Duration

	mu            sync.Mutex
	authRequests  map[string]*authRequest
	codes         map[string]*codeGrant
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken // keyed by the token itself
	deviceCodes   map[string]*deviceAuth   // by device code
	userCodes     map[string]*deviceAuth   // by normalized user code
	deviceGrants  map[*op.DeviceAuthorizationState]deviceGrant
}

var _ op.Storage = (*storage)(nil)

// grant is what a login established, carried from the auth request through
// every token issued for it. sid names it so one login can be revoked whole.
type grant struct {
	userID   string
	clientID string
	sid      string
	scopes   []string
	amr      []string
	authTime time.Time
}

// authRequest is op.AuthRequest: a pending authorization, done once the
// login form has authenticated a user.
type authRequest struct {
	grant
	id           string
	redirectURI  string
	state        string
	nonce        string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	expires      time.Time
	done         bool
	redeemed     bool // tokens were issued for its code
}

// codeGrant remembers an issued code until it expires, so a use after the
// code was redeemed is recognised as a replay (RFC 6749 §4.1.2) rather than
// as an unknown code.
type codeGrant struct {
	authRequestID string
	sid           string
	expires       time.Time
	used          bool
}

type accessToken struct {
	grant
	id      string
	expires time.Time
}

// refreshToken is op.RefreshTokenRequest; current narrows the scopes for one
// refresh without changing what the grant allows.
type refreshToken struct {
	grant
	token   string
	expires time.Time
	current []string
}

func newStorage(users *userDB, clients map[string]*client, key *signingKey, now func() time.Time, accessTTL time.Duration) *storage {
	return &storage{
		users: users, clients: clients, key: key, now: now, accessTTL: accessTTL,
		authRequests:  map[string]*authRequest{},
		codes:         map[string]*codeGrant{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		deviceCodes:   map[string]*deviceAuth{},
		userCodes:     map[string]*deviceAuth{},
		deviceGrants:  map[*op.DeviceAuthorizationState]deviceGrant{},
	}
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return a.amr }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.userID }
func (a *authRequest) Done() bool                            { return a.done }

func (r *refreshToken) GetAMR() []string       { return r.amr }
func (r *refreshToken) GetAudience() []string  { return []string{r.clientID} }
func (r *refreshToken) GetAuthTime() time.Time { return r.authTime }
func (r *refreshToken) GetClientID() string    { return r.clientID }
func (r *refreshToken) GetSubject() string     { return r.userID }
func (r *refreshToken) GetScopes() []string {
	if r.current != nil {
		return r.current
	}
	return r.scopes
}
func (r *refreshToken) SetCurrentScopes(s []string) { r.current = s }

// sessionID lets the claim code find the sid of whatever op hands it.
func (g *grant) sessionID() string { return g.sid }

// CreateAuthRequest stores a validated authorization request. op has already
// checked client, redirect URI, response type and scopes; the rules that are
// ours are added here.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	// PKCE S256 is mandatory: a leaked code is then useless without the verifier.
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	// There is no provider-side session to reuse, so a silent login can never succeed.
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	now := s.now()
	a := &authRequest{
		grant:        grant{clientID: req.ClientID, scopes: slices.Clone(req.Scopes)},
		id:           rand.Text(),
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
		expires:      now.Add(authRequestTTL),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.authRequests[a.id] = a
	return a, nil
}

// sweep drops expired state; called with mu held on every new auth request,
// which bounds memory by the login rate.
func (s *storage) sweep(now time.Time) {
	for k, v := range s.authRequests {
		if now.After(v.expires) {
			delete(s.authRequests, k)
		}
	}
	for k, v := range s.codes {
		if now.After(v.expires) {
			delete(s.codes, k)
		}
	}
	for k, v := range s.accessTokens {
		if now.After(v.expires) {
			delete(s.accessTokens, k)
		}
	}
	for k, v := range s.refreshTokens {
		if now.After(v.expires) {
			delete(s.refreshTokens, k)
		}
	}
	for k, v := range s.deviceCodes {
		if now.After(v.expires) {
			delete(s.deviceCodes, k)
			delete(s.userCodes, v.userCode)
		}
	}
	for k, v := range s.deviceGrants {
		if now.After(v.expires) {
			delete(s.deviceGrants, k)
		}
	}
}

// pendingAuthRequest returns an auth request still waiting for a login.
func (s *storage) pendingAuthRequest(id string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok || a.done || s.now().After(a.expires) {
		return nil, errNotFound
	}
	return a, nil
}

// completeLogin marks the auth request as authenticated by u and starts a
// new session (sid) for it.
func (s *storage) completeLogin(id string, u *user, amr []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	now := s.now()
	if !ok || a.done || now.After(a.expires) {
		return errNotFound
	}
	a.userID, a.amr, a.authTime, a.sid, a.done = u.sub, amr, now, rand.Text(), true
	return nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok || s.now().After(a.expires) {
		return nil, fmt.Errorf("auth request: %w", errNotFound)
	}
	c := *a // a copy: completeLogin may write the stored one concurrently
	return &c, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok {
		return fmt.Errorf("auth request: %w", errNotFound)
	}
	s.codes[code] = &codeGrant{authRequestID: id, sid: a.sid, expires: s.now().Add(codeTTL)}
	return nil
}

// AuthRequestByCode looks the code up without spending it: op checks the
// client and PKCE afterwards, and a failed attempt (or x/oauth2's retry with
// another client auth style) must not burn the code. It is spent by redeem.
// A replay of a spent code revokes what the first use issued.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	if !ok || s.now().After(c.expires) {
		return nil, fmt.Errorf("code: %w", errNotFound)
	}
	if c.used {
		s.revokeSession(c.sid)
		return nil, errors.New("code already used: tokens issued for it are revoked")
	}
	a, ok := s.authRequests[c.authRequestID]
	if !ok || !a.done {
		return nil, fmt.Errorf("auth request: %w", errNotFound)
	}
	cp := *a
	return &cp, nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	return nil
}

// revokeSession drops every token of one login; called with mu held.
func (s *storage) revokeSession(sid string) {
	for k, v := range s.accessTokens {
		if v.sid == sid {
			delete(s.accessTokens, k)
		}
	}
	for k, v := range s.refreshTokens {
		if v.sid == sid {
			delete(s.refreshTokens, k)
		}
	}
}

// redeem spends the codes of an auth request as tokens are issued for it,
// exactly once even when exchanges race; called with mu held.
func (s *storage) redeem(a *authRequest) error {
	stored, ok := s.authRequests[a.id]
	if !ok || stored.redeemed {
		s.revokeSession(a.sid)
		return oidc.ErrInvalidGrant().WithDescription("authorization code already used")
	}
	stored.redeemed = true
	for _, c := range s.codes {
		if c.authRequestID == a.id {
			c.used = true
		}
	}
	return nil
}

// grantFor extracts the grant behind a token request op hands back to us,
// redeeming it if it is an auth request; called with mu held.
func (s *storage) grantFor(req op.TokenRequest) (grant, error) {
	switch r := req.(type) {
	case *authRequest:
		return r.grant, s.redeem(r)
	case *refreshToken:
		g := r.grant
		g.scopes = r.GetScopes()
		return g, nil
	case *op.DeviceAuthorizationState:
		// Handed over once by GetDeviceAuthorizatonState.
		dg, ok := s.deviceGrants[r]
		if !ok {
			return grant{}, oidc.ErrInvalidGrant().WithDescription("device code already used")
		}
		delete(s.deviceGrants, r)
		return dg.grant, nil
	default:
		return grant{}, fmt.Errorf("unsupported token request %T", req)
	}
}

// newAccessToken is called with mu held.
func (s *storage) newAccessToken(g grant, now time.Time) *accessToken {
	t := &accessToken{grant: g, id: rand.Text(), expires: now.Add(s.accessTTL)}
	s.accessTokens[t.id] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.grantFor(req)
	if err != nil {
		return "", time.Time{}, err
	}
	t := s.newAccessToken(g, s.now())
	return t.id, t.expires, nil
}

// CreateAccessAndRefreshTokens issues tokens for a code exchange with
// offline_access, or rotates a refresh token: the old one stops working.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.grantFor(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	now := s.now()
	rg := g
	if current != "" {
		old, ok := s.refreshTokens[current]
		if !ok || now.After(old.expires) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used or revoked")
		}
		delete(s.refreshTokens, current)
		rg.scopes = old.scopes // RFC 6749 §6: the new token keeps the old one's scope
	}
	rt := &refreshToken{grant: rg, token: rand.Text(), expires: now.Add(refreshTokenTTL)}
	s.refreshTokens[rt.token] = rt
	at := s.newAccessToken(g, now)
	return at.id, rt.token, at.expires, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok || s.now().After(rt.expires) {
		return nil, fmt.Errorf("refresh token: %w", errNotFound)
	}
	c := *rt // op may narrow the scopes of this one request
	return &c, nil
}

// TerminateSession ends every login of the user at the client (RP-initiated logout).
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.accessTokens {
		if v.userID == userID && v.clientID == clientID {
			delete(s.accessTokens, k)
		}
	}
	for k, v := range s.refreshTokens {
		if v.userID == userID && v.clientID == clientID {
			delete(s.refreshTokens, k)
		}
	}
	return nil
}

// RevokeToken receives an access token id or a refresh token (RFC 7009).
// Revoking a refresh token revokes the whole login, as §2.1 suggests.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.accessTokens[tokenOrID]; ok {
		if at.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	if rt, ok := s.refreshTokens[tokenOrID]; ok {
		if rt.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		s.revokeSession(rt.sid)
	}
	return nil // unknown tokens are not an error (RFC 7009 §2.2)
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok || rt.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.userID, rt.token, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("unknown client %q", id)
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || !c.secretMatches(secret) {
		return errors.New("unknown client or wrong secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op in favour of SetUserinfoFromRequest.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's user claims, plus sid.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	u, ok := s.users.bySub[req.GetSubject()]
	if !ok {
		return fmt.Errorf("user %q: %w", req.GetSubject(), errNotFound)
	}
	setUserClaims(info, u, scopes)
	if sr, ok := req.(interface{ sessionID() string }); ok {
		info.AppendClaims("sid", sr.sessionID())
	}
	return nil
}

// SetUserinfoFromToken answers the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	at, ok := s.accessTokens[tokenID]
	expired := ok && s.now().After(at.expires)
	s.mu.Unlock()
	if !ok || expired || at.userID != subject {
		return errors.New("access token is invalid or expired")
	}
	u, ok := s.users.bySub[subject]
	if !ok {
		return fmt.Errorf("user %q: %w", subject, errNotFound)
	}
	setUserClaims(info, u, at.scopes)
	return nil
}

func setUserClaims(info *oidc.UserInfo, u *user, scopes []string) {
	info.Subject = u.sub
	if slices.Contains(scopes, oidc.ScopeEmail) {
		info.Email = u.email
		info.EmailVerified = true
	}
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.Name = u.name
	}
	if len(u.groups) > 0 {
		info.AppendClaims("groups", u.groups)
	}
}

// Token introspection and JWT-profile client authentication are not offered.
func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported by the development provider")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile client authentication is not supported by the development provider")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grant is not supported by the development provider")
}

func (s *storage) Health(context.Context) error { return nil }
