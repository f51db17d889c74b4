// Package login is the OpenID Connect browser login of the gateway: the
// authorization code flow with PKCE, state and nonce, the session it
// creates, token refresh ahead of expiry, sign-out (RP-initiated logout)
// and back-channel logout.
//
// ID tokens and logout tokens are verified with go-oidc's IDTokenVerifier,
// not the bearer-JWT authenticator (internal/authn/jwtauth): the login flow
// needs what that authenticator does not expose — the nonce, the at_hash
// check against the access token (which needs the signing algorithm), the
// claims before mapping so that userinfo can be merged in, and logout
// tokens, which have no username to map. go-oidc also does discovery, so
// one library serves the whole flow.
package login

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/sekisho/sekisho/internal/expset"
	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/session"
)

// Options configures the login service; Store and Codec are required.
type Options struct {
	// PathPrefix is where the login endpoints live (default "/.sekisho"):
	// sign_in, start, callback, sign_out, signed_out, backchannel_logout
	// and userinfo.
	PathPrefix string
	// AllowedRedirectDomains are hosts (and their subdomains) that post-login
	// and post-logout redirects may go to besides the request's own origin,
	// each on the default ports only unless it names a port
	// ("example.com:8443"); see ParseRedirectDomain.
	AllowedRedirectDomains []string
	// PostLogoutRedirect is where sign-out finally lands: a path on the
	// request's host or an absolute URL on an allowed domain
	// (default PathPrefix+"/signed_out").
	PostLogoutRedirect string
	Store              session.Store
	// Codec seals the short-lived login state cookie.
	Codec *session.Codec
	// SessionTTL is the absolute session lifetime (default 12h).
	SessionTTL time.Duration
	// IdleTimeout ends a session unused for this long (0: never). The store
	// enforces it on load; Authenticate moves LastSeen forward in coarse
	// steps so an active session is not rewritten on every request.
	IdleTimeout time.Duration
	// RefreshAhead refreshes tokens expiring within this much time, in the
	// background; default a quarter of the token lifetime, at least 30s.
	RefreshAhead time.Duration
	// HTTPClient is used for discovery, token, userinfo and key requests.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time

	// Test hooks.
	retryMin    time.Duration                     // first discovery retry delay (default 1s)
	onRefresh   func(sessionID string, err error) // after every refresh attempt
	logoutLimit *rate.Limiter                     // replaces the back-channel logout limit
}

// Service serves the login endpoints and authenticates session cookies.
// It is safe for concurrent use; a configuration change builds a new one.
type Service struct {
	prefix       string
	callbackPath string
	allowed      []RedirectDomain
	postLogout   string
	store        session.Store
	codec        *session.Codec
	ttl          time.Duration
	idle         time.Duration
	ahead        time.Duration
	client       *http.Client
	log          *slog.Logger
	now          func() time.Time

	providers []*provider // in configuration order, for the sign-in page
	byName    map[string]*provider

	ctx       context.Context // ends background discovery and refreshes
	flight    singleflight.Group
	refreshed *refreshCache

	logoutSeen  *expset.Set   // jti of logout tokens acted on, until they expire
	logoutLimit *rate.Limiter // back-channel logout requests

	retryMin  time.Duration
	onRefresh func(sessionID string, err error)

	// discovered is closed once every provider is discovered; undiscovered
	// counts those not yet.
	discovered   chan struct{}
	undiscovered atomic.Int32
}

// Endpoint names under PathPrefix.
const (
	pathSignIn      = "/sign_in"
	pathStart       = "/start"
	pathCallback    = "/callback"
	pathSignOut     = "/sign_out"
	pathSignedOut   = "/signed_out"
	pathBackchannel = "/backchannel_logout"
	pathUserinfo    = "/userinfo"
)

// DefaultPathPrefix is where sekisho's own endpoints live when
// login.path_prefix does not say; the built-in providers are served under
// it too.
const DefaultPathPrefix = "/.sekisho"

// ProviderError is a problem with one entry of the providers given to New.
// It carries the entry's index so that a config checker can point at the
// line the entry was written on; Err starts with the entry's key
// ("client_id: ...") when the problem is about one of its settings.
type ProviderError struct {
	Index int
	Name  string
	Err   error
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("providers[%d] (%s): %v", e.Index, e.Name, e.Err)
}

func (e *ProviderError) Unwrap() error { return e.Err }

// New validates the configuration and starts discovering the providers in
// the background. Configuration errors name the provider and the key. An
// unreachable provider does not fail New: discovery is retried with
// backoff until ctx ends, and until it succeeds signing in with that
// provider answers 503.
func New(ctx context.Context, providers []ProviderConfig, o Options) (*Service, error) {
	s := &Service{
		prefix:    o.PathPrefix,
		store:     o.Store,
		codec:     o.Codec,
		ttl:       o.SessionTTL,
		idle:      o.IdleTimeout,
		ahead:     o.RefreshAhead,
		client:    o.HTTPClient,
		log:       o.Logger,
		now:       o.Now,
		byName:    make(map[string]*provider, len(providers)),
		refreshed: newRefreshCache(refreshCacheSize),
		retryMin:  o.retryMin,
		onRefresh: o.onRefresh,
	}
	if s.retryMin <= 0 {
		s.retryMin = time.Second
	}
	var errs []error
	if s.prefix == "" {
		s.prefix = DefaultPathPrefix
	}
	if !strings.HasPrefix(s.prefix, "/") || strings.HasSuffix(s.prefix, "/") || strings.ContainsAny(s.prefix, "?#%\\ ") {
		errs = append(errs, fmt.Errorf("login: path prefix %q must start with '/', not end with '/', and hold no '?', '#', '%%', '\\' or spaces", s.prefix))
	}
	s.callbackPath = s.prefix + pathCallback
	if s.store == nil {
		errs = append(errs, errors.New("login: a session store is required"))
	}
	if s.codec == nil {
		errs = append(errs, errors.New("login: a cookie codec is required for the login state"))
	}
	if s.ttl < 0 || s.ahead < 0 {
		errs = append(errs, errors.New("login: session TTL and refresh-ahead must not be negative"))
	}
	if s.ttl == 0 {
		s.ttl = session.DefaultTTL
	}
	for i, raw := range o.AllowedRedirectDomains {
		d, err := ParseRedirectDomain(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("login: allowed redirect domain [%d] %q %w", i, raw, err))
			continue
		}
		s.allowed = append(s.allowed, d)
	}
	s.postLogout = o.PostLogoutRedirect
	if s.postLogout == "" {
		s.postLogout = s.prefix + pathSignedOut
	} else if !wellFormedRedirect(s.postLogout) {
		errs = append(errs, fmt.Errorf("login: post-logout redirect %q must be a path such as /bye or an absolute http(s) URL", s.postLogout))
	}
	if s.client == nil {
		s.client = http.DefaultClient
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.logoutSeen = expset.New(logoutReplayCacheSize, s.now)
	s.logoutLimit = rate.NewLimiter(logoutRate, logoutBurst)
	if o.logoutLimit != nil {
		s.logoutLimit = o.logoutLimit
	}

	if len(providers) == 0 {
		errs = append(errs, errors.New("providers: at least one is required"))
	}
	for i, c := range providers {
		p, err := compileProvider(c, s.callbackPath)
		if err != nil {
			errs = append(errs, &ProviderError{Index: i, Name: c.Name, Err: err})
			continue
		}
		if _, dup := s.byName[p.name]; dup {
			errs = append(errs, &ProviderError{Index: i, Name: c.Name, Err: errors.New("name: is used twice")})
			continue
		}
		s.byName[p.name] = p
		s.providers = append(s.providers, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	s.ctx = ctx
	s.discovered = make(chan struct{})
	s.undiscovered.Store(int32(len(s.providers)))
	if len(s.providers) == 0 {
		close(s.discovered)
	}
	for _, p := range s.providers {
		go s.discoverLoop(ctx, p)
	}
	return s, nil
}

// Ready reports whether every provider's discovery document has been
// fetched, so that a login can start. Readiness waits for it (bounded):
// built-in providers are discovered in-process at once.
func (s *Service) Ready() bool {
	for _, p := range s.providers {
		if p.disc.Load() == nil {
			return false
		}
	}
	return true
}

// Discovered is closed once every provider is discovered, so that start
// and reload wait on it instead of polling Ready.
func (s *Service) Discovered() <-chan struct{} {
	return s.discovered
}

// PathPrefix is where the login endpoints live, for links to them.
func (s *Service) PathPrefix() string { return s.prefix }

// Owns reports whether path is one of the login endpoints, so the gateway
// can hand the request over before routing and authorization.
func (s *Service) Owns(path string) bool {
	return path == s.prefix || strings.HasPrefix(path, s.prefix+"/")
}

// ServeHTTP serves the login endpoints under PathPrefix.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	// same-origin, not no-referrer: with no-referrer browsers send
	// "Origin: null" on the sign-out form's POST, which the cross-site check
	// must refuse.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	switch strings.TrimPrefix(r.URL.Path, s.prefix) {
	case pathSignIn:
		if allow(w, r, http.MethodGet) {
			s.serveSignIn(w, r)
		}
	case pathStart:
		if allow(w, r, http.MethodGet) {
			s.serveStart(w, r)
		}
	case pathCallback:
		if allow(w, r, http.MethodGet) {
			s.serveCallback(w, r)
		}
	case pathSignOut:
		if allow(w, r, http.MethodGet, http.MethodPost) {
			s.serveSignOut(w, r)
		}
	case pathSignedOut:
		if allow(w, r, http.MethodGet) {
			renderPage(w, r, http.StatusOK, signedOutPage, page{Title: "Signed out"})
		}
	case pathBackchannel:
		if allow(w, r, http.MethodPost) {
			s.serveBackchannel(w, r)
		}
	case pathUserinfo:
		if allow(w, r, http.MethodGet) {
			s.serveUserinfo(w, r)
		}
	default:
		httperr.Write(w, r, http.StatusNotFound, "no such sign-in endpoint")
	}
}

// allow answers 405 unless r uses one of methods (HEAD counts as GET).
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	httperr.Write(w, r, http.StatusMethodNotAllowed, "method not allowed here")
	return false
}

// origin returns the scheme and authority the client used, as the
// normalize stage recorded them (trusted X-Forwarded-* applied), or as the
// request shows them when it did not run.
func origin(r *http.Request) (scheme, authority string) {
	scheme, authority = "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if info := reqinfo.From(r.Context()); info != nil {
		if info.Proto != "" {
			scheme = info.Proto
		}
		if info.Host != "" {
			authority = info.Host
		}
	}
	return scheme, authority
}

// absolute turns a path on the request's own host into an absolute URL.
func absolute(r *http.Request, path string) string {
	scheme, authority := origin(r)
	return scheme + "://" + authority + path
}

// hostname strips the port (and IPv6 brackets) from an authority.
func hostname(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		authority = h
	}
	return strings.ToLower(strings.Trim(authority, "[]"))
}

// setCookies writes cookie updates (a session store's, Authenticate's) on
// the response.
func setCookies(w http.ResponseWriter, cookies []*http.Cookie) {
	for _, c := range cookies {
		http.SetCookie(w, c)
	}
}
