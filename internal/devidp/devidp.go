// Package devidp is sekisho's built-in development OpenID Connect provider:
// the embedded default identity provider, so that `sekisho serve` on a fresh
// machine has a working browser login without an external IdP.
//
// It is a real OIDC issuer built on github.com/zitadel/oidc/v3/pkg/op, which
// speaks the protocol (discovery, JWKS, authorize, token, userinfo,
// end_session, revocation, device authorization). This package only adds
// what op leaves to its user: an in-memory store of users, clients, auth
// requests and tokens, a login form, and a page for device codes. It is meant for a developer's loopback listener, never for
// production: users and passwords come from the config file.
package devidp

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is one account of the development provider (providers[].builtin.users[]).
type User struct {
	Email string `yaml:"email"`
	Name  string `yaml:"name"`
	// Password is a plaintext password, accepted only because this provider is
	// for development; it is bcrypt-hashed at startup and a warning is logged.
	Password string `yaml:"password"`
	// PasswordHash is a bcrypt hash, so a shared config file need not hold
	// the password itself.
	PasswordHash string   `yaml:"password_hash"`
	Groups       []string `yaml:"groups"`
	// TOTPSecret, a base32 RFC 6238 secret, makes the login ask for a
	// one-time code so MFA-dependent policies can be exercised locally; the
	// ID token's amr is then ["pwd", "otp"].
	TOTPSecret string `yaml:"totp_secret"`
}

// Config is the builtin provider's block of the config file (providers[].builtin).
type Config struct {
	Users []User `yaml:"users"`
	// AllowNonLoopback lets the provider run on a listener reachable from
	// other machines; see CheckListener.
	AllowNonLoopback bool `yaml:"allow_non_loopback"`
}

// Client is a relying party allowed to use the provider: sekisho's own
// login flow (confidential: PKCE with S256 is required on top of the
// secret), and kubectl's credential plugin (public, see Public).
type Client struct {
	ID     string
	Secret string
	// Public makes a native client without a secret (RFC 8252) for command
	// line programs such as `sekisho kube login`: its redirect URIs must be
	// loopback ones, and a request may use any port on them.
	Public                 bool
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
}

// Options are the knobs a caller or test may turn; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// SigningKey signs ID tokens: an *rsa.PrivateKey (RS256, at least 2048
	// bits) or a P-256 *ecdsa.PrivateKey (ES256). Nil generates an RSA 2048
	// key at start, so tokens do not survive a restart.
	SigningKey crypto.Signer
	// Now is the clock for login, rate limiting, one-time codes and token
	// expiry (op itself stamps iat/exp on ID tokens with the real clock).
	Now func() time.Time
	// AccessTokenTTL and IDTokenTTL default to 5 minutes so that sekisho's
	// refresh path runs within a short development session.
	AccessTokenTTL time.Duration
	IDTokenTTL     time.Duration
}

// Provider is a running development issuer.
type Provider struct {
	issuer  string
	handler http.Handler
}

// New validates the users and clients and builds the provider for issuer,
// e.g. "http://127.0.0.1:8080/.sekisho/dev". ctx is used for startup logging.
func New(ctx context.Context, issuer string, cfg Config, clients []Client, opts Options) (*Provider, error) {
	iss, err := parseIssuer(issuer)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = 5 * time.Minute
	}
	if opts.IDTokenTTL <= 0 {
		opts.IDTokenTTL = 5 * time.Minute
	}
	users, err := newUserDB(ctx, cfg.Users, opts.Logger)
	if err != nil {
		return nil, err
	}
	key, err := newSigningKey(opts.SigningKey)
	if err != nil {
		return nil, err
	}
	loginPath := iss.Path + "/login"
	cs, err := newClients(clients, loginPath, opts.IDTokenTTL)
	if err != nil {
		return nil, err
	}
	st := newStorage(users, cs, key, opts.Now, opts.AccessTokenTTL)

	opCfg := &op.Config{
		DefaultLogoutRedirectURI: iss.String() + "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedClaims:          append(append([]string{}, op.DefaultSupportedClaims...), "groups", "sid"),
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess, scopeGroups},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     deviceCodeTTL,
			PollInterval: devicePollInterval,
			UserFormPath: iss.Path + devicePath,
			UserCode:     op.UserCodeBase20,
		},
	}
	// Authorization codes and opaque access tokens are sealed with this key;
	// a fresh one per start is right for an in-memory provider.
	rand.Read(opCfg.CryptoKey[:])
	var opOpts []op.Option
	if iss.Scheme == "http" {
		opOpts = append(opOpts, op.WithAllowInsecure())
	}
	oidcProvider, err := op.NewProvider(opCfg, st, op.StaticIssuer(iss.String()), opOpts...)
	if err != nil {
		return nil, fmt.Errorf("devidp: building OpenID provider for %s: %w", iss, err)
	}
	lh := newLoginHandler(st, users, opts.Logger, opts.Now, op.AuthCallbackURL(oidcProvider), loginPath, iss.Scheme == "https")
	login := op.NewIssuerInterceptor(oidcProvider.IssuerFromRequest).Handler(lh)
	device := &deviceHandler{loginHandler: lh, path: iss.Path + devicePath}
	// A plain switch rather than a ServeMux: the mux's clean-path redirects
	// would point outside the issuer path once the prefix is stripped.
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			login.ServeHTTP(w, r)
		case devicePath:
			device.ServeHTTP(w, r)
		case "/logged-out":
			loggedOut(w, r)
		default:
			oidcProvider.ServeHTTP(w, r)
		}
	})
	return &Provider{issuer: iss.String(), handler: http.StripPrefix(iss.Path, routes)}, nil
}

// Handler serves the provider. It expects the full request path including
// the issuer's path, so it is mounted as is (no StripPrefix) under that path,
// e.g. mux.Handle("/.sekisho/dev/", p.Handler()).
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer is the canonical issuer URL (no trailing slash): relying parties
// must be configured with exactly this value for ID token checks to pass.
func (p *Provider) Issuer() string { return p.issuer }

// CheckListener refuses to run the provider on a listener reachable from
// other machines, since its users and passwords live in a config file: addr's
// host must be a loopback IP or "localhost" (":8080" listens on every
// interface and is refused) unless allow is set.
func CheckListener(addr string, allow bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("devidp: listen address %q: %w", addr, err)
	}
	if allow || strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		host = "all interfaces"
	}
	return fmt.Errorf("devidp: the development identity provider only runs on a loopback listener, but %q listens on %s; "+
		"listen on 127.0.0.1 or set allow_non_loopback", addr, host)
}

func parseIssuer(issuer string) (*url.URL, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("devidp: issuer %q: %w", issuer, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		err = errors.New("scheme must be http or https")
	case u.Host == "":
		err = errors.New("host is missing")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		err = errors.New("must not have user info, query or fragment")
	}
	if err != nil {
		return nil, fmt.Errorf("devidp: issuer %q: %w", issuer, err)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/")}, nil
}

func loggedOut(w http.ResponseWriter, _ *http.Request) {
	setPageHeaders(w.Header())
	_ = pages.ExecuteTemplate(w, "logged-out", nil)
}
