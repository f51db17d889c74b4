package login

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/authn/jwtauth"
	"github.com/sekisho/sekisho/internal/identity"
)

// ProviderConfig is one entry of the `providers:` list: an OpenID Connect
// provider users sign in with.
type ProviderConfig struct {
	// Name identifies the provider in URLs and on the sign-in page.
	Name string `yaml:"name"`
	// Issuer must equal the "issuer" of the provider's discovery document.
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret, so that the config file
	// never carries it. Empty means a public client (PKCE only).
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientSecret is set in code only, for the built-in provider whose
	// secret is made at start; config files name a file instead.
	ClientSecret string `yaml:"-"`
	// Scopes default to [openid, email, profile]; "openid" is always sent.
	// The seed's Envoy OAuth2 filter could not change them; here they are
	// the operator's choice.
	Scopes []string `yaml:"scopes"`
	// AuthParams are extra authorization request parameters (hd, prompt,
	// login_hint, ...). Parameters the flow itself sets are refused.
	AuthParams map[string]string `yaml:"auth_params"`
	// RedirectURL fixes the callback URL registered at the provider. Empty
	// derives it from each request (scheme://authority + callback path).
	// Its path must be the callback path. When its host is not the
	// request's, the login hops to that host first, so the login state
	// cookie is set where the callback will read it.
	RedirectURL string `yaml:"redirect_url"`
	// Userinfo merges the userinfo endpoint's claims over the ID token's
	// (protocol claims such as sub, iss and aud always come from the ID
	// token), for providers that keep email or groups out of the ID token.
	Userinfo bool                   `yaml:"userinfo"`
	Claims   identity.ClaimsConfig  `yaml:"claims"`
	Prefix   identity.PrefixConfig  `yaml:"prefix"`
	Rules    []identity.Rule        `yaml:"rules"`
	Mappings identity.MappingConfig `yaml:"mappings"`
}

var defaultScopes = []string{oidc.ScopeOpenID, "email", "profile"}

// reservedParams are set by the flow itself; letting config override them
// would switch off state, nonce or PKCE, or redirect the code elsewhere.
var reservedParams = []string{
	"state", "nonce", "redirect_uri", "client_id", "client_secret",
	"response_type", "response_mode", "scope", "code_verifier",
}

var providerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

const (
	// fetchTimeout bounds one discovery, token, or userinfo request.
	fetchTimeout = 10 * time.Second
	// discoveryRetryMax caps the backoff between discovery attempts.
	discoveryRetryMax = time.Minute
)

// provider is one compiled ProviderConfig plus what discovery found.
type provider struct {
	name         string
	issuer       string
	clientID     string
	clientSecret string
	scopes       []string
	authParams   []oauth2.AuthCodeOption
	redirectURL  *url.URL // nil: derived from the request
	userinfo     bool
	mapper       *identity.Mapper

	disc  atomic.Pointer[discovered] // nil until discovery succeeds
	ready chan struct{}              // closed when disc is set
}

// discovered is what the provider's discovery document says; it is
// immutable once stored.
type discovered struct {
	op         *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config // RedirectURL is filled in per request
	endSession string        // "" when the provider has no RP-initiated logout
}

func compileProvider(c ProviderConfig, callbackPath string) (*provider, error) {
	if c.Name == "" {
		return nil, errors.New("name: is required")
	}
	if !providerName.MatchString(c.Name) {
		return nil, fmt.Errorf("name: %q must be 1-63 letters, digits, '.', '_' or '-'", c.Name)
	}
	p := &provider{
		name:     c.Name,
		issuer:   c.Issuer,
		clientID: c.ClientID,
		userinfo: c.Userinfo,
		ready:    make(chan struct{}),
	}
	if c.Issuer == "" {
		return nil, errors.New("issuer: is required")
	}
	if err := jwtauth.CheckFetchURL(c.Issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if c.ClientID == "" {
		return nil, errors.New("client_id: is required")
	}
	if c.ClientSecretFile != "" {
		secret, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("client_secret_file: %w", err)
		}
		secret = bytes.TrimRight(secret, "\r\n")
		if len(secret) == 0 {
			return nil, fmt.Errorf("client_secret_file: %s is empty", c.ClientSecretFile)
		}
		p.clientSecret = string(secret)
	} else {
		p.clientSecret = c.ClientSecret
	}

	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	p.scopes = []string{oidc.ScopeOpenID}
	for _, sc := range scopes {
		if sc == "" || strings.ContainsFunc(sc, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r > '~' }) {
			return nil, fmt.Errorf("scopes: %q is not a valid scope", sc)
		}
		if !slices.Contains(p.scopes, sc) {
			p.scopes = append(p.scopes, sc)
		}
	}

	keys := make([]string, 0, len(c.AuthParams))
	for k := range c.AuthParams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if slices.Contains(reservedParams, lk) || strings.HasPrefix(lk, "code_challenge") {
			return nil, fmt.Errorf("auth_params: %q is set by the login flow and cannot be configured", k)
		}
		if k == "" {
			return nil, errors.New("auth_params: empty parameter name")
		}
		p.authParams = append(p.authParams, oauth2.SetAuthURLParam(k, c.AuthParams[k]))
	}

	if c.RedirectURL != "" {
		u, err := url.Parse(c.RedirectURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("redirect_url: %q must be an absolute http(s) URL without query or fragment", c.RedirectURL)
		}
		if u.Path != callbackPath {
			return nil, fmt.Errorf("redirect_url: path %q must be the callback path %q", u.Path, callbackPath)
		}
		p.redirectURL = u
	}

	var err error
	if p.mapper, err = identity.NewMapper(c.Claims, c.Prefix, c.Rules, c.Mappings); err != nil {
		return nil, err
	}
	return p, nil
}

// discoverLoop fetches the provider's discovery document until it succeeds
// or ctx ends. An unreachable provider does not stop the gateway: its
// logins answer 503 until this succeeds.
func (s *Service) discoverLoop(ctx context.Context, p *provider) {
	backoff := s.retryMin
	for {
		err := s.discover(ctx, p)
		if err == nil {
			s.log.Info("OIDC provider discovered", "provider", p.name, "issuer", p.issuer)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("OIDC discovery failed; sign-in with this provider answers 503 until it succeeds",
			"provider", p.name, "issuer", p.issuer, "error", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, discoveryRetryMax)
	}
}

func (s *Service) discover(ctx context.Context, p *provider) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	// The discovery context carries only the HTTP client into go-oidc's
	// key set; its deadline bounds this fetch, not later key fetches.
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, s.client), p.issuer)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	ep := op.Endpoint()
	if ep.AuthURL == "" || ep.TokenURL == "" {
		return errors.New("discovery: document has no authorization_endpoint or token_endpoint")
	}
	var meta struct {
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if meta.EndSession != "" {
		if u, err := url.Parse(meta.EndSession); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			s.log.Warn("ignoring invalid end_session_endpoint; sign-out will not log out at the provider",
				"provider", p.name)
			meta.EndSession = ""
		}
	}
	ep.AuthStyle = authStyle(p.clientSecret != "", meta.AuthMethods)
	d := &discovered{
		op:       op,
		verifier: op.Verifier(&oidc.Config{ClientID: p.clientID, Now: s.now}),
		oauth: oauth2.Config{
			ClientID:     p.clientID,
			ClientSecret: p.clientSecret,
			Endpoint:     ep,
			Scopes:       p.scopes,
		},
		endSession: meta.EndSession,
	}
	p.disc.Store(d)
	close(p.ready)
	if s.undiscovered.Add(-1) == 0 {
		close(s.discovered)
	}
	return nil
}

// authStyle picks how the client authenticates at the token endpoint from
// what the provider supports, instead of oauth2's auto-detection, which
// sends a failing request twice. Discovery's default is client_secret_basic.
func authStyle(hasSecret bool, supported []string) oauth2.AuthStyle {
	if !hasSecret {
		return oauth2.AuthStyleInParams // a public client sends only client_id
	}
	if len(supported) == 0 || slices.Contains(supported, "client_secret_basic") || !slices.Contains(supported, "client_secret_post") {
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleInParams
}
