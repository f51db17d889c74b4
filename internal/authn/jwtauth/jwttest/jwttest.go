// Package jwttest is a minimal but real OIDC issuer for tests: it serves a
// discovery document and a JWKS over HTTP and signs tokens with go-jose, so
// tests of anything that accepts bearer tokens exercise the same fetch and
// verify path as production. Tests can rotate its keys, take it down, and
// hold its JWKS responses to observe refresh behaviour deterministically.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Key is a signing key of the test issuer. Its fields are exported so tests
// can forge tokens: reuse a published kid with another private key, or sign
// with the private key under a different algorithm.
type Key struct {
	Kid     string
	Alg     jose.SignatureAlgorithm
	Private crypto.Signer
}

// NewKey creates a key for alg (RS*/PS* use RSA 2048; ES256/384/512; EdDSA).
// It is not published until Issuer.Publish, so tests can model a key the
// verifier has not seen yet.
func NewKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("jwttest.NewKey: unsupported algorithm %s", alg)
	}
	if err != nil {
		t.Fatalf("jwttest.NewKey %s: %v", alg, err)
	}
	return &Key{Kid: kid, Alg: alg, Private: priv}
}

// Issuer is a running test issuer; URL is its issuer identifier and base URL.
type Issuer struct {
	URL string

	srv *httptest.Server
	key *Key

	mu           sync.Mutex
	published    []*Key
	down         bool
	cacheControl string
	discoveryIss string        // issuer named in discovery; default URL
	gate         chan struct{} // closed by Release; nil when nothing is held
	entered      chan struct{} // closed when the held request arrives; nil when no hold is armed

	discoveryHits atomic.Int32
	jwksHits      atomic.Int32
}

// NewIssuer starts an issuer serving GET /.well-known/openid-configuration
// and GET /keys, publishing one RS256 key "k1" (see Key) so that Token works
// without setup. It is closed when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{key: NewKey(t, "k1", jose.RS256)}
	i.published = []*Key{i.key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET /keys", i.serveJWKS)
	i.srv = httptest.NewServer(mux)
	i.URL = i.srv.URL
	t.Cleanup(func() {
		i.Release() // a held request would keep Close waiting
		i.srv.Close()
	})
	return i
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	i.discoveryHits.Add(1)
	i.mu.Lock()
	down, iss := i.down, i.discoveryIss
	i.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if iss == "" {
		iss = i.URL
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              i.URL + "/keys",
		"authorization_endpoint":                i.URL + "/authorize",
		"token_endpoint":                        i.URL + "/token",
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	i.jwksHits.Add(1)
	i.mu.Lock()
	entered, gate := i.entered, i.gate
	i.entered = nil // only the next request is held
	i.mu.Unlock()
	if entered != nil {
		close(entered)
		<-gate
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var set jose.JSONWebKeySet
	for _, k := range i.published {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.Kid, Algorithm: string(k.Alg), Use: "sig"})
	}
	if i.cacheControl != "" {
		w.Header().Set("Cache-Control", i.cacheControl)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// Key returns the RS256 key "k1" published at start, the one Token signs
// with.
func (i *Issuer) Key() *Key { return i.key }

// Publish adds keys to the JWKS, as an issuer does ahead of a rotation.
func (i *Issuer) Publish(keys ...*Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, keys...)
}

// Unpublish removes every published key with kid, as an issuer does at the
// end of a rotation or when a key is compromised.
func (i *Issuer) Unpublish(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	var kept []*Key
	for _, k := range i.published {
		if k.Kid != kid {
			kept = append(kept, k)
		}
	}
	i.published = kept
}

// SetDown makes every endpoint answer 503 (or serve again), to test that
// verifiers keep their last good keys through an outage.
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// SetCacheControl sets the Cache-Control header of JWKS responses ("" for
// none), to test that verifiers honour max-age.
func (i *Issuer) SetCacheControl(v string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.cacheControl = v
}

// SetDiscoveryIssuer makes the discovery document name iss instead of URL
// ("" restores URL), to test that a mismatching document is refused.
func (i *Issuer) SetDiscoveryIssuer(iss string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.discoveryIss = iss
}

// Hold makes the next JWKS request block until Release, so a test can
// observe what a verifier does while a key fetch is in flight. The returned
// channel is closed when that request has arrived.
func (i *Issuer) Hold() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.gate == nil {
		i.gate = make(chan struct{})
	}
	i.entered = make(chan struct{})
	return i.entered
}

// Release lets a held JWKS request complete and disarms a Hold that no
// request has reached yet.
func (i *Issuer) Release() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.gate != nil {
		close(i.gate)
		i.gate = nil
	}
	i.entered = nil
}

// DiscoveryHits counts discovery requests, to test that verifiers fetch
// only when they should.
func (i *Issuer) DiscoveryHits() int { return int(i.discoveryHits.Load()) }

// JWKSHits counts JWKS requests, held and failed ones included.
func (i *Issuer) JWKSHits() int { return int(i.jwksHits.Load()) }

// Claims returns valid claims: iss=URL, aud="api", sub="alice-id",
// email="alice@example.com", email_verified=true, groups=[admin dev],
// iat=now, exp=now+1h. The kv pairs (name, value, ...) override claims, and
// a nil value deletes the claim, so each test states only what it varies.
func (i *Issuer) Claims(now time.Time, kv ...any) map[string]any {
	if len(kv)%2 != 0 {
		panic("jwttest: Claims needs name/value pairs")
	}
	c := map[string]any{
		"iss":            i.URL,
		"aud":            "api",
		"sub":            "alice-id",
		"email":          "alice@example.com",
		"email_verified": true,
		"groups":         []string{"admin", "dev"},
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
	}
	for n := 0; n < len(kv); n += 2 {
		name, ok := kv[n].(string)
		if !ok {
			panic("jwttest: Claims names must be strings")
		}
		if kv[n+1] == nil {
			delete(c, name)
		} else {
			c[name] = kv[n+1]
		}
	}
	return c
}

// Token signs Claims(time.Now(), kv...) with Key(), for tests whose
// verifier uses the real clock.
func (i *Issuer) Token(t testing.TB, kv ...any) string {
	t.Helper()
	return Sign(t, i.key, i.Claims(time.Now(), kv...))
}

// Sign signs claims with key, naming its kid; mod shapes the header (extra
// headers, embedded JWK) so tests can build attack tokens.
func Sign(t testing.TB, key *Key, claims map[string]any, mod ...func(*jose.SignerOptions)) string {
	t.Helper()
	return SignWith(t, key.Alg, jose.JSONWebKey{Key: key.Private, KeyID: key.Kid}, claims, mod...)
}

// SignWith signs claims with any go-jose signing key under alg, for tokens
// no published key could produce: HMAC secrets, algorithm confusion, no kid.
func SignWith(t testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any, mod ...func(*jose.SignerOptions)) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for _, m := range mod {
		m(opts)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("jwttest: signer %s: %v", alg, err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("jwttest: sign: %v", err)
	}
	return tok
}
