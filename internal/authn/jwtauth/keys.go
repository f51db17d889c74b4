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
	// kids holds the hash of every kid, for the refresh schedule.
	kids map[kidHash]struct{}
	// fingerprint is the sorted (kid, alg, use, thumbprint) list.
	fingerprint string
}

// newKeySet keeps the public signature keys of a JWKS: symmetric keys,
// encryption keys and unknown types are dropped.
func newKeySet(set jose.JSONWebKeySet) (*keySet, error) {
	ks := &keySet{byKID: make(map[string][]jose.JSONWebKey), kids: make(map[kidHash]struct{})}
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
		ks.kids[hashKID(pub.KeyID)] = struct{}{}
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

// jwksAccept is the Accept header of a JWKS request.
const jwksAccept = "application/jwk-set+json, application/json"

// fetchKeys downloads the issuer's JWKS, discovering its URL first when it
// is not configured. lifetime is how long the response stays fresh by its
// Cache-Control and Age headers, or -1 when they do not say.
func (a *Authenticator) fetchKeys(ctx context.Context, iss *issuer) (ks *keySet, lifetime time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if iss.jwksURL == "" {
		var u string
		if iss.kube != nil {
			u, err = a.discoverKube(ctx, iss)
		} else {
			u, err = a.discover(ctx, iss)
		}
		if err != nil {
			return nil, -1, err
		}
		iss.jwksURL = u
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, iss.jwksURL, nil)
	if err != nil {
		return nil, -1, fmt.Errorf("JWKS request: %w", err)
	}
	// kube-apiserver serves its keys only as application/jwk-set+json (RFC
	// 7517's type) and answers 406 to a request that accepts JSON alone;
	// other issuers serve application/json.
	req.Header.Set("Accept", jwksAccept)
	resp, err := iss.client.Do(req)
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
	return ks, freshness(resp.Header), nil
}

// discover reads jwks_uri from the issuer's OIDC discovery document using
// go-oidc, which also checks that the document names the same issuer.
func (a *Authenticator) discover(ctx context.Context, iss *issuer) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, iss.client), iss.name)
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

// freshness is the remaining lifetime of a JWKS response by RFC 9111: the
// first Cache-Control max-age (s-maxage is for shared caches, which this is
// not) minus the Age a cache in front of the issuer added. It is -1 when
// the response gives no lifetime or forbids reuse (no-store, no-cache): the
// caller then uses its default interval. The headers come from the network,
// so anything malformed counts as absent.
func freshness(h http.Header) time.Duration {
	maxAge := cacheMaxAge(strings.Join(h.Values("Cache-Control"), ","))
	if maxAge < 0 {
		return -1
	}
	if age := h.Get("Age"); age != "" {
		if secs, ok := deltaSeconds(age); ok {
			return max(maxAge-secs, 0)
		}
	}
	return maxAge
}

// cacheMaxAge returns the first max-age of a Cache-Control value, or -1
// when there is none or the value says no-store or no-cache.
func cacheMaxAge(cc string) time.Duration {
	maxAge := time.Duration(-1)
	for d := range strings.SplitSeq(cc, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "no-store", "no-cache":
			return -1
		case "max-age":
			if maxAge >= 0 {
				continue // the first occurrence counts
			}
			secs, ok := deltaSeconds(strings.Trim(strings.TrimSpace(value), `"`))
			if !ok {
				return -1
			}
			maxAge = secs
		}
	}
	return maxAge
}

// maxDelta caps delta-seconds values; RFC 9111 section 1.2.2 allows treating
// anything larger as this much (and the refresh clamps far lower anyway).
const maxDelta = time.Duration(1<<31-1) * time.Second

// deltaSeconds parses a non-negative decimal number of seconds.
func deltaSeconds(v string) (time.Duration, bool) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs > int64(maxDelta/time.Second) {
		return maxDelta, true // only overflow is left: all digits
	}
	return time.Duration(secs) * time.Second, true
}
