// Package jwtauth authenticates bearer JWTs from configured issuers. It is
// pure — token in, identity or error out — so that the gateway, the decision
// service and the Kubernetes TokenReview webhook share one implementation.
//
// Keys stay off the request path: each issuer's JWKS is fetched at start and
// refreshed in the background, and a verified token is cached until it
// expires, so its signature is checked once.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/identity"
)

// ErrInvalidToken is wrapped by every authentication failure, so callers can
// answer 401 with errors.Is. The wrapped message is a short reason that is
// safe to log and never contains the token.
var ErrInvalidToken = errors.New("invalid token")

// Failure reasons, allocated once: rejecting garbage must be cheap.
var (
	errEmpty         = invalid("empty token")
	errTooLarge      = invalid("token too large")
	errMalformed     = invalid("malformed token or algorithm not allowed")
	errUnknownIssuer = invalid("unknown issuer")
	errAlgorithm     = invalid("algorithm not allowed for this issuer")
	errNoKeys        = invalid("issuer keys not available")
	errUnknownKey    = invalid("unknown signing key")
	errSignature     = invalid("signature verification failed")
	errClaims        = invalid("malformed claims")
	errNoExpiry      = invalid("token has no exp claim")
	errExpired       = invalid("token expired")
	errNotYetValid   = invalid("token not valid yet")
	errIssuedFuture  = invalid("token issued in the future")
	errAudience      = invalid("audience not accepted")
)

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }

// firstKeysWait is how long a request waits for an issuer whose keys have
// never been fetched (just after start). Once an issuer has keys, requests
// never wait for the network: an unknown kid fails at once with 401 and
// only schedules background refreshes (see refresh.go). Not even a fetch
// already in flight is waited for: a JWKS that lags behind its issuer
// usually answers that fetch with the old keys, and a wait would let
// every request with a made-up kid hold a connection for its length.
const firstKeysWait = 2 * time.Second

// Options tunes the authenticator; the zero value is ready for production.
type Options struct {
	// HTTPClient fetches discovery documents and JWKS; default
	// http.DefaultClient. Each fetch is bounded to 10s.
	HTTPClient *http.Client
	// RefreshInterval is the time between regular refreshes when the JWKS
	// response has no Cache-Control max-age (or says no-store or
	// no-cache); a max-age sets it instead, clamped to 1m..24h. Default 10m.
	RefreshInterval time.Duration
	// KIDRetryMin is the first backoff step of the refreshes an unknown kid
	// schedules; each fetch that does not find the kid doubles it, up to
	// KIDRetryMax. Default 1s.
	KIDRetryMin time.Duration
	// KIDRetryMax caps that backoff: it bounds what made-up kids can cost
	// the issuer to one fetch per KIDRetryMax. Default 30s.
	KIDRetryMax time.Duration
	// CacheSize bounds the verified-token cache in entries; default
	// DefaultCacheEntries.
	CacheSize int
	// CacheBytes bounds it in bytes (a token counts its length twice plus
	// a fixed overhead, about what its decoded claims take); default
	// DefaultCacheBytes.
	CacheBytes int64
	// OnCache is called for every verified-token cache hit, miss and
	// eviction (CacheHit, CacheMiss, CacheEviction; metrics). It runs on
	// the request path and must be cheap.
	OnCache func(event string)
	// MaxTokenBytes rejects larger tokens before any parsing; default 16 KiB.
	MaxTokenBytes int
	// Logger receives key refresh events; default slog.Default().
	Logger *slog.Logger
	// Now is the clock for exp, nbf, iat and cache expiry; default
	// time.Now. Refresh scheduling uses the real clock.
	Now func() time.Time
	// OnUnknownKID is called for every token refused because its issuer's
	// keys have no key with its kid (metrics). It runs on the request path
	// and must be cheap.
	OnUnknownKID func(issuer string)
	// OnKeyRefresh is called after every JWKS fetch attempt with its result:
	// "updated", "unchanged" or "failed" (metrics).
	OnKeyRefresh func(issuer, result string)

	// onRefresh is called after every fetch attempt (tests synchronize on it).
	onRefresh func(issuer string, err error)
	// clock schedules refreshes; default the real clock (tests replace it).
	clock clock
}

// Authenticator verifies bearer JWTs against a fixed set of issuers. It is
// safe for concurrent use; configuration changes build a new one.
type Authenticator struct {
	issuers         map[string]*issuer
	algs            []jose.SignatureAlgorithm // union over issuers, for parsing
	cache           *tokenCache
	client          *http.Client
	log             *slog.Logger
	now             func() time.Time
	refreshInterval time.Duration
	kidRetryMin     time.Duration
	kidRetryMax     time.Duration
	maxTokenBytes   int
	onRefresh       func(string, error)
	onUnknownKID    func(string)
	onKeyRefresh    func(string, string)
	clock           clock

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// keysReady is closed once every issuer that fetches a JWKS has keys;
	// pending counts those still without.
	keysReady chan struct{}
	pending   atomic.Int32
}

// IssuerError is a problem with one entry of the issuer list given to New.
// It carries the entry's index so that a config checker can point at the
// line the entry was written on; Err starts with the entry's key ("audiences:
// ...") when the problem is about one of its settings.
type IssuerError struct {
	Index int
	Err   error
}

func (e *IssuerError) Error() string { return fmt.Sprintf("jwt[%d]: %v", e.Index, e.Err) }

func (e *IssuerError) Unwrap() error { return e.Err }

// New validates the issuers and starts fetching their keys in the
// background. An unreachable issuer does not fail New: it is retried with
// backoff, and its tokens get ErrInvalidToken until its keys arrive, while
// other issuers work normally. Background work ends with Close or ctx.
func New(ctx context.Context, issuers []IssuerConfig, opts Options) (*Authenticator, error) {
	if len(issuers) == 0 {
		return nil, errors.New("jwt: at least one issuer is required")
	}
	if opts.RefreshInterval < 0 || opts.KIDRetryMin < 0 || opts.KIDRetryMax < 0 || opts.CacheSize < 0 || opts.CacheBytes < 0 || opts.MaxTokenBytes < 0 {
		return nil, errors.New("jwt: options must not be negative")
	}
	a := &Authenticator{
		issuers:         make(map[string]*issuer, len(issuers)),
		client:          opts.HTTPClient,
		log:             opts.Logger,
		now:             opts.Now,
		refreshInterval: orDefault(opts.RefreshInterval, 10*time.Minute),
		kidRetryMin:     orDefault(opts.KIDRetryMin, time.Second),
		kidRetryMax:     orDefault(opts.KIDRetryMax, 30*time.Second),
		maxTokenBytes:   orDefault(opts.MaxTokenBytes, 16<<10),
		onRefresh:       opts.onRefresh,
		onUnknownKID:    opts.OnUnknownKID,
		onKeyRefresh:    opts.OnKeyRefresh,
		clock:           opts.clock,
	}
	if a.kidRetryMin > a.kidRetryMax || a.kidRetryMax > maxRegular {
		return nil, fmt.Errorf("jwt: need KIDRetryMin (%s) <= KIDRetryMax (%s) <= %s", a.kidRetryMin, a.kidRetryMax, maxRegular)
	}
	if a.clock == nil {
		a.clock = realClock{}
	}
	if a.client == nil {
		a.client = http.DefaultClient
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.cache = newTokenCache(cache.Limits{
		MaxEntries: orDefault(opts.CacheSize, DefaultCacheEntries),
		MaxBytes:   orDefault(opts.CacheBytes, DefaultCacheBytes),
	}, a.now, opts.OnCache)
	var errs []error
	for i, c := range issuers {
		iss, err := compileIssuer(c)
		if err != nil {
			errs = append(errs, &IssuerError{Index: i, Err: err})
			continue
		}
		if _, dup := a.issuers[iss.name]; dup {
			errs = append(errs, &IssuerError{Index: i, Err: fmt.Errorf("issuer: %q is configured twice", iss.name)})
			continue
		}
		iss.client = issuerClient(a.client, iss)
		a.issuers[iss.name] = iss
		for _, alg := range iss.algs {
			if !slices.Contains(a.algs, alg) {
				a.algs = append(a.algs, alg)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	a.keysReady = make(chan struct{})
	for _, iss := range a.issuers {
		if iss.needsJWKS {
			a.pending.Add(1)
		}
	}
	if a.pending.Load() == 0 {
		close(a.keysReady)
	}
	ctx, a.cancel = context.WithCancel(ctx)
	for _, iss := range a.issuers {
		if iss.needsJWKS {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.refreshLoop(ctx, iss)
			}()
		}
	}
	return a, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Authenticate returns the identity a valid token stands for. Any failure
// wraps ErrInvalidToken, except a token that a Kubernetes API server did
// not answer about (TokenReview mode), which wraps ErrUnavailable. A token seen before and not yet expired is answered
// from the cache without parsing or signature checks.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*identity.Identity, error) {
	if token == "" {
		return nil, errEmpty
	}
	if len(token) > a.maxTokenBytes {
		return nil, errTooLarge
	}
	now := a.now()
	key := keyOf(token)
	if id, ok := a.cache.get(key, now.UnixNano()); ok {
		return id, nil
	}
	e, err := a.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if now.UnixNano() < e.exp {
		a.cache.put(key, e, entryCost(len(token)))
	}
	return e.id, nil
}

// verify is the uncached path: parse, pick the issuer by the unverified
// "iss", verify with that issuer's keys only, validate, map.
func (a *Authenticator) verify(ctx context.Context, token string, now time.Time) (cacheEntry, error) {
	tok, err := jwt.ParseSigned(token, a.algs)
	if err != nil {
		return cacheEntry{}, errMalformed
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if tok.UnsafeClaimsWithoutVerification(&unverified) != nil {
		return cacheEntry{}, errMalformed
	}
	iss := a.issuers[unverified.Issuer]
	if iss == nil {
		return cacheEntry{}, errUnknownIssuer
	}
	if iss.kube != nil && iss.kube.review != nil {
		return a.review(ctx, iss, tok, token, now)
	}
	ks, err := a.verifySignature(ctx, iss, tok)
	if err != nil {
		return cacheEntry{}, err
	}

	// The signature covers the payload, so from here on it is trusted.
	var std jwt.Claims
	var claims map[string]any
	if tok.UnsafeClaimsWithoutVerification(&std, &claims) != nil {
		return cacheEntry{}, errClaims
	}
	if std.Expiry == nil {
		return cacheEntry{}, errNoExpiry
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: iss.name, AnyAudience: iss.audiences, Time: now}, iss.skew)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return cacheEntry{}, errExpired
	case errors.Is(err, jwt.ErrNotValidYet):
		return cacheEntry{}, errNotYetValid
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return cacheEntry{}, errIssuedFuture
	case errors.Is(err, jwt.ErrInvalidAudience):
		return cacheEntry{}, errAudience
	default:
		return cacheEntry{}, errClaims
	}
	id, err := iss.mapper.Map(iss.name, identity.MethodJWT, claims)
	if err != nil {
		return cacheEntry{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if iss.kube != nil {
		if err := withKube(id, claims, iss.prefix.Groups); err != nil {
			return cacheEntry{}, err
		}
	}
	return cacheEntry{id: id, exp: std.Expiry.Time().UnixNano(), iss: iss, keys: ks}, nil
}

// verifySignature checks the signature with the issuer's own key material
// and returns the key set in use (for cache invalidation on rotation). Key
// hints in the token other than "kid" (jku, x5u, an embedded jwk) are never
// looked at; HS* tokens are checked only against the configured secret.
func (a *Authenticator) verifySignature(ctx context.Context, iss *issuer, tok *jwt.JSONWebToken) (*keySet, error) {
	h := tok.Headers[0]
	alg := jose.SignatureAlgorithm(h.Algorithm)
	if !iss.allows(alg) {
		return nil, errAlgorithm
	}
	if _, isHMAC := hmacMinBytes[alg]; isHMAC {
		if tok.Claims(iss.hmacSecret) != nil {
			return nil, errSignature
		}
		return iss.keys.Load(), nil
	}
	ks := iss.keys.Load()
	if ks == nil {
		if ks = a.awaitFirstKeys(ctx, iss); ks == nil {
			return nil, errNoKeys
		}
	}
	candidates := ks.candidates(h.KeyID, alg)
	if len(candidates) == 0 {
		// A kid the set has, with an algorithm its keys do not fit, is
		// not a rotation: only a missing kid (or a kid-less token no key
		// fits) asks the refresh goroutine to look again.
		if h.KeyID == "" || len(ks.byKID[h.KeyID]) == 0 {
			a.unknownKID(iss, h.KeyID)
		}
		return nil, errUnknownKey
	}
	for _, k := range candidates {
		if tok.Claims(k.Key) == nil {
			return ks, nil
		}
	}
	return nil, errSignature
}

// awaitFirstKeys waits, at most firstKeysWait, for an issuer that has never
// had keys (start-up, or an issuer that was down at start).
func (a *Authenticator) awaitFirstKeys(ctx context.Context, iss *issuer) *keySet {
	select {
	case iss.kick <- "": // ask for a fetch now, within the backoff bound
	default:
	}
	t := time.NewTimer(firstKeysWait)
	defer t.Stop()
	select {
	case <-iss.ready:
	case <-t.C:
	case <-ctx.Done():
	}
	return iss.keys.Load()
}

// Ready reports whether every issuer has keys, for the readiness probe: a
// replica that cannot verify tokens of some issuer should not get traffic.
func (a *Authenticator) Ready() bool {
	for _, iss := range a.issuers {
		if iss.needsJWKS && iss.keys.Load() == nil {
			return false
		}
	}
	return true
}

// KeysReady is closed once every issuer has keys (at once when none
// fetches a JWKS), so that start and reload wait on it instead of polling
// Ready.
func (a *Authenticator) KeysReady() <-chan struct{} {
	return a.keysReady
}

// Close stops the background key refresh and waits for it to end.
func (a *Authenticator) Close() {
	a.cancel()
	a.wg.Wait()
}
