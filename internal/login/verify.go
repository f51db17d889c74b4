package login

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

// verified is what a token response proved about the user.
type verified struct {
	id         *identity.Identity
	rawIDToken string
	sid        string
	expiry     time.Time // when the tokens expire; zero when unknown
}

// verifyError is a failed login or refresh: status and msg are for the
// page, err (never holding a token) for the log.
type verifyError struct {
	status int
	msg    string
	err    error
}

func (e *verifyError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// protocolClaims always come from the verified ID token: userinfo may not
// replace them.
var protocolClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"nonce": true, "azp": true, "at_hash": true, "c_hash": true, "auth_time": true,
	"sid": true, "acr": true, "amr": true, "jti": true,
}

// verifyTokens validates a token response and maps it to an identity. At
// login (prev nil) the ID token is required and its nonce must be
// wantNonce. At refresh (prev set) a new ID token must be for the same
// subject, and without one the previous claims are kept. In both cases
// at_hash is checked when present, userinfo is merged when configured, and
// the provider's claim rules run again on the result.
func (s *Service) verifyTokens(ctx context.Context, p *provider, d *discovered, tok *oauth2.Token, wantNonce string, prev *session.Session) (*verified, error) {
	v := &verified{}
	var claims map[string]any
	var idExpiry time.Time
	raw, _ := tok.Extra("id_token").(string)
	switch {
	case raw != "":
		idt, err := d.verifier.Verify(ctx, raw)
		if err != nil {
			return nil, &verifyError{http.StatusUnauthorized, "The identity provider's ID token is not valid.", err}
		}
		if prev == nil && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(wantNonce)) != 1 {
			return nil, &verifyError{http.StatusUnauthorized, "The ID token does not belong to this sign-in.", errors.New("nonce mismatch")}
		}
		if prev != nil && idt.Subject != prev.Identity.Subject {
			return nil, &verifyError{http.StatusUnauthorized, "The refreshed ID token is for another user.", errors.New("refreshed ID token subject differs")}
		}
		if idt.AccessTokenHash != "" {
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				return nil, &verifyError{http.StatusUnauthorized, "The access token does not match the ID token.", err}
			}
		}
		if err := idt.Claims(&claims); err != nil {
			return nil, &verifyError{http.StatusUnauthorized, "The identity provider's ID token is not valid.", err}
		}
		v.rawIDToken = raw
		idExpiry = idt.Expiry
	case prev != nil:
		claims = maps.Clone(prev.Identity.Claims)
		v.rawIDToken = prev.IDToken
	default:
		return nil, &verifyError{http.StatusBadGateway, "The identity provider sent no ID token.", errors.New("token response has no id_token")}
	}
	if claims == nil {
		claims = map[string]any{}
	}
	if p.userinfo {
		if err := mergeUserinfo(ctx, d, tok, claims); err != nil {
			return nil, &verifyError{http.StatusBadGateway, "Your user information could not be read from the identity provider.", err}
		}
	}
	id, err := p.mapper.Map(p.issuer, identity.MethodSession, claims)
	if err != nil {
		return nil, &verifyError{http.StatusForbidden, "Your account may not sign in here: " + err.Error() + ".", err}
	}
	v.id = id
	v.sid, _ = claims["sid"].(string)
	if v.sid == "" && prev != nil {
		v.sid = prev.SID
	}
	v.expiry = tokenExpiry(tok, idExpiry, s.now())
	return v, nil
}

// mergeUserinfo adds the userinfo endpoint's claims to claims, after
// checking they are about the same subject (OIDC Core 5.3.4).
func mergeUserinfo(ctx context.Context, d *discovered, tok *oauth2.Token, claims map[string]any) error {
	ui, err := d.op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return fmt.Errorf("userinfo: %w", err)
	}
	if sub, _ := claims["sub"].(string); ui.Subject != sub {
		return errors.New("userinfo: subject does not match the ID token")
	}
	var uc map[string]any
	if err := ui.Claims(&uc); err != nil {
		return fmt.Errorf("userinfo: %w", err)
	}
	for k, val := range uc {
		if !protocolClaims[k] {
			claims[k] = val
		}
	}
	return nil
}

// tokenExpiry is when the access token expires, measured on the service's
// clock from expires_in; the ID token's expiry when there is no access
// token lifetime.
func tokenExpiry(tok *oauth2.Token, idExpiry, now time.Time) time.Time {
	switch {
	case tok.ExpiresIn > 0:
		return now.Add(time.Duration(tok.ExpiresIn) * time.Second)
	case !tok.Expiry.IsZero():
		return tok.Expiry
	}
	return idExpiry
}

// failVerify answers a login whose tokens did not verify.
func (s *Service) failVerify(w http.ResponseWriter, r *http.Request, p *provider, err error, retry string) {
	var ve *verifyError
	if !errors.As(err, &ve) {
		ve = &verifyError{http.StatusInternalServerError, "Sign-in failed.", err}
	}
	s.log.Warn("sign-in rejected", "provider", p.name, "reason", ve.msg, "error", ve.err)
	s.fail(w, r, ve.status, ve.msg, retry)
}
