package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// RelyingPartyScopes are the scopes sekisho's login asks the built-in
// provider for: offline_access makes it issue a refresh token, without
// which the session would end with the first access token (minutes), not
// at the session lifetime. Scopes a configuration lists are kept, and
// offline_access is added to them (see WithOfflineAccess).
var RelyingPartyScopes = []string{oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile, oidc.ScopeOfflineAccess}

// WithOfflineAccess returns the scopes to request from the built-in
// provider: RelyingPartyScopes when none are configured, else the
// configured ones with offline_access added when missing.
func WithOfflineAccess(configured []string) []string {
	if len(configured) == 0 {
		return append([]string(nil), RelyingPartyScopes...)
	}
	out := append([]string(nil), configured...)
	for _, s := range out {
		if s == oidc.ScopeOfflineAccess {
			return out
		}
	}
	return append(out, oidc.ScopeOfflineAccess)
}

// scopeGroups is accepted so relying parties that ask for a groups scope
// (as many IdPs want) are not refused; the groups claim is sent either way.
const scopeGroups = "groups"

// client adapts a Client to op.Client: a confidential web client, or a
// public native one, using the code flow with refresh tokens, and nothing else.
type client struct {
	id         string
	public     bool
	secretHash [32]byte
	redirects  []string
	postLogout []string
	loginPath  string
	idTokenTTL time.Duration
}

func newClients(clients []Client, loginPath string, idTokenTTL time.Duration) (map[string]*client, error) {
	if len(clients) == 0 {
		return nil, errors.New("devidp: no clients: the provider needs at least sekisho's own client")
	}
	out := make(map[string]*client, len(clients))
	for i, c := range clients {
		switch {
		case c.ID == "":
			return nil, fmt.Errorf("devidp: clients[%d]: id is required", i)
		case out[c.ID] != nil:
			return nil, fmt.Errorf("devidp: clients[%d]: duplicate id %q", i, c.ID)
		case c.Public && c.Secret != "":
			return nil, fmt.Errorf("devidp: client %q: a public client has no secret", c.ID)
		case !c.Public && c.Secret == "":
			return nil, fmt.Errorf("devidp: client %q: secret is required", c.ID)
		case len(c.RedirectURIs) == 0:
			return nil, fmt.Errorf("devidp: client %q: at least one redirect URI is required", c.ID)
		}
		for _, u := range append(append([]string{}, c.RedirectURIs...), c.PostLogoutRedirectURIs...) {
			if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				return nil, fmt.Errorf("devidp: client %q: %q is not an absolute http(s) URL", c.ID, u)
			}
		}
		if c.Public {
			for _, u := range c.RedirectURIs {
				if _, ok := op.HTTPLoopbackOrLocalhost(u); !ok {
					return nil, fmt.Errorf("devidp: client %q: a public client redirects only to a loopback address, not %q", c.ID, u)
				}
			}
		}
		out[c.ID] = &client{
			id:         c.ID,
			public:     c.Public,
			secretHash: sha256.Sum256([]byte(c.Secret)),
			redirects:  append([]string(nil), c.RedirectURIs...),
			postLogout: append([]string(nil), c.PostLogoutRedirectURIs...),
			loginPath:  loginPath,
			idTokenTTL: idTokenTTL,
		}
	}
	return out, nil
}

// secretMatches compares hashes so neither content nor length leaks through
// timing. A public client has no secret, so none matches.
func (c *client) secretMatches(secret string) bool {
	if c.public {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], c.secretHash[:]) == 1
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string { return c.postLogout }

// ApplicationType is native for a public client: op then accepts its
// loopback redirect URIs on any port (RFC 8252, section 7.3), as a command
// line program picks a free port each time it signs in.
func (c *client) ApplicationType() op.ApplicationType {
	if c.public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// AuthMethod is none for a public client: PKCE (required for every client
// here) binds the code to the program that asked for it instead.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.idTokenTTL }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(scope string) bool     { return scope == scopeGroups }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true } // relying parties read email and groups from the ID token

// GrantTypes adds the device code grant for public clients: a command
// line program may run where no browser does.
func (c *client) GrantTypes() []oidc.GrantType {
	if c.public {
		return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
	}
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

func (c *client) LoginURL(authRequestID string) string {
	return c.loginPath + "?authRequestID=" + url.QueryEscape(authRequestID)
}

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// KubectlClientID is the public client `sekisho kube login` uses against
// the built-in provider: `--client-id=kubectl` with no secret.
const KubectlClientID = "kubectl"

// KubectlRedirectPath is the loopback callback path of `sekisho kube login`.
const KubectlRedirectPath = "/callback"

// KubectlClient is the public native client for kubectl's credential
// plugin: it redirects to http://127.0.0.1:PORT/callback (or localhost) on
// any port, and gets refresh tokens (offline_access) like any client.
func KubectlClient() Client {
	return Client{
		ID:           KubectlClientID,
		Public:       true,
		RedirectURIs: []string{"http://127.0.0.1" + KubectlRedirectPath, "http://localhost" + KubectlRedirectPath},
	}
}
