package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

const (
	// fetchTimeout bounds one discovery or JWKS request.
	fetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds the JWKS document read into memory.
	maxJWKSBytes = 1 << 20
	// retryMin and retryMax bound the backoff after a failed fetch.
	retryMin = time.Second
	retryMax = time.Minute
)

// keySet is an immutable snapshot of an issuer's signing keys. Its pointer
// identity stands for its content: a refresh that returns the same keys
// keeps the old pointer, so cached verifications stay valid, and a change
// installs a new pointer, which invalidates them.
type keySet struct {
	byKID map[string][]jose.JSONWebKey
	all   []jose.JSONWebKey
	// fingerprint is the sorted (kid, alg, use, thumbprint) list.
	fingerprint string
}

// newKeySet keeps the public signature keys of a JWKS: symmetric keys,
// encryption keys and unknown types are dropped.
func newKeySet(set jose.JSONWebKeySet) (*keySet, error) {
	ks := &keySet{byKID: make(map[string][]jose.JSONWebKey)}
	var prints []string
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		switch pub.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			continue
		}
		ks.all = append(ks.all, pub)
		ks.byKID[pub.KeyID] = append(ks.byKID[pub.KeyID], pub)
		prints = append(prints, strconv.Quote(pub.KeyID)+" "+pub.Algorithm+" "+pub.Use+" "+hex.EncodeToString(tp))
	}
	if len(ks.all) == 0 {
		return nil, errors.New("JWKS has no usable public signature keys")
	}
	slices.Sort(prints)
	ks.fingerprint = strings.Join(prints, "\n")
	return ks, nil
}

// candidates returns the keys that may verify a token with this kid and
// alg. An empty kid tries every key of the set (issuers with a single key
// often omit it); a kid absent from the set matches nothing.
func (ks *keySet) candidates(kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	keys := ks.all
	if kid != "" {
		keys = ks.byKID[kid]
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if keyFits(k, alg) {
			out = append(out, k)
		}
	}
	return out
}

// keyFits reports whether k may verify alg: the JWK's own "alg", when
// present, must match, and the key type must be the one alg is defined for.
func keyFits(k jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return key.Curve == elliptic.P256()
		case jose.ES384:
			return key.Curve == elliptic.P384()
		case jose.ES512:
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// fetchKeys downloads the issuer's JWKS, discovering its URL first when it
// is not configured. maxAge is the Cache-Control max-age, or -1 if absent.
func (a *Authenticator) fetchKeys(ctx context.Context, iss *issuer) (ks *keySet, maxAge time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if iss.jwksURL == "" {
		u, err := a.discover(ctx, iss.name)
		if err != nil {
			return nil, -1, err
		}
		iss.jwksURL = u
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, iss.jwksURL, nil)
	if err != nil {
		return nil, -1, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, -1, fmt.Errorf("JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, -1, fmt.Errorf("JWKS fetch %s: status %s", iss.jwksURL, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, -1, fmt.Errorf("JWKS %s: decode: %w", iss.jwksURL, err)
	}
	ks, err = newKeySet(set)
	if err != nil {
		return nil, -1, fmt.Errorf("JWKS %s: %w", iss.jwksURL, err)
	}
	return ks, cacheMaxAge(resp.Header.Get("Cache-Control")), nil
}

// discover reads jwks_uri from the issuer's OIDC discovery document using
// go-oidc, which also checks that the document names the same issuer.
func (a *Authenticator) discover(ctx context.Context, issuerURL string) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, a.client), issuerURL)
	if err != nil {
		return "", fmt.Errorf("OIDC discovery: %w", err)
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		return "", fmt.Errorf("OIDC discovery: %w", err)
	}
	if err := CheckFetchURL(meta.JWKSURL); err != nil {
		return "", fmt.Errorf("OIDC discovery: jwks_uri: %w", err)
	}
	return meta.JWKSURL, nil
}

// cacheMaxAge returns the max-age of a Cache-Control value, 0 for no-store
// or no-cache, and -1 when the header says nothing about lifetime.
func cacheMaxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "no-store" || d == "no-cache" {
			return 0
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			secs, err := strconv.ParseInt(v, 10, 64)
			if err != nil || secs < 0 {
				return -1
			}
			return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
		}
	}
	return -1
}

// refreshLoop keeps the issuer's keys current until ctx ends: it fetches at
// once, then again before the keys' cache lifetime (or RefreshInterval)
// runs out, retries failures with backoff, and fetches early when kicked
// by an unknown kid. A failed fetch never removes keys: the last good set
// stays in use.
func (a *Authenticator) refreshLoop(ctx context.Context, iss *issuer) {
	delay := time.Duration(0)
	backoff := retryMin
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-iss.kick:
			t.Stop()
		}
		ks, maxAge, err := a.fetchKeys(ctx, iss)
		if err != nil {
			delay = backoff
			backoff = min(backoff*2, retryMax)
			if ctx.Err() == nil {
				a.log.Warn("jwt issuer keys not refreshed; last good keys stay in use",
					"issuer", iss.name, "error", err, "retry_in", delay, "have_keys", iss.keys.Load() != nil)
			}
		} else {
			backoff = retryMin
			delay = a.refreshInterval
			if maxAge >= 0 && maxAge < delay {
				delay = maxAge
			}
			delay = max(delay, a.minRefreshGap)
			a.install(iss, ks)
		}
		if a.onRefresh != nil {
			a.onRefresh(iss.name, err)
		}
	}
}

// install swaps in ks unless it has the same keys as the current set.
func (a *Authenticator) install(iss *issuer, ks *keySet) {
	if old := iss.keys.Load(); old == nil || old.fingerprint != ks.fingerprint {
		iss.keys.Store(ks)
		a.log.Info("jwt issuer keys updated", "issuer", iss.name, "keys", len(ks.all))
	}
	iss.readyOnce.Do(func() { close(iss.ready) })
}

// requestRefresh asks for an early fetch, at most once per minRefreshGap,
// so that a stream of tokens with made-up kids cannot hammer the issuer.
func (a *Authenticator) requestRefresh(iss *issuer) {
	now := time.Now().UnixNano()
	last := iss.lastKick.Load()
	if now-last < int64(a.minRefreshGap) || !iss.lastKick.CompareAndSwap(last, now) {
		return
	}
	select {
	case iss.kick <- struct{}{}:
	default:
	}
}
