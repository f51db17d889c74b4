// Package assertion signs the short-lived JWT that sekisho sends upstream
// with each forwarded request, so that an upstream can verify who the caller
// is (against sekisho's JWKS) instead of trusting plain identity headers.
package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/identity"
)

// DefaultTTL is the assertion lifetime when none is configured: long
// enough for one upstream request, short enough that a leaked assertion is
// of little use.
const DefaultTTL = 60 * time.Second

// DefaultHeader is the request header the assertion travels in when
// upstream_identity.assertion.header does not say.
const DefaultHeader = "X-Sekisho-Assertion"

// maxCached bounds the per-(identity, audience) assertion cache.
const maxCached = 10000

// jwksMaxAge lets verifiers cache the key set; a restart with an ephemeral
// key publishes a new kid, which verifiers fetch on their first miss.
const jwksMaxAge = "public, max-age=300"

// Signer issues ES256 assertions. With no key file the key is generated at
// start: fine for one replica, but replicas behind one Service must share a
// key file, or upstreams would see kids that only some replicas publish.
type Signer struct {
	issuer string
	ttl    time.Duration
	signer jose.Signer
	jwks   []byte

	mu    sync.RWMutex
	cache map[cacheKey]signed
}

// cacheKey is what an assertion says: subject and audience, with email and
// groups checked on a hit. Keying by content rather than by identity
// pointer lets sessions that rebuild their identity per request (Redis)
// reuse assertions too.
type cacheKey struct {
	subject  string
	audience string
}

type signed struct {
	token  string
	iat    time.Time
	email  string
	groups []string
}

// NewSigner loads the P-256 key from keyFile (PEM, SEC1 "EC PRIVATE KEY" or
// PKCS#8 "PRIVATE KEY"), or generates one when keyFile is empty. The kid is
// the RFC 7638 thumbprint, so it is stable for a key across restarts.
func NewSigner(keyFile string, issuer string, ttl time.Duration) (*Signer, error) {
	if issuer == "" {
		return nil, errors.New("assertion: issuer is required")
	}
	if ttl < 0 {
		return nil, fmt.Errorf("assertion: ttl %s must not be negative", ttl)
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	key, err := loadKey(keyFile)
	if err != nil {
		return nil, err
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("assertion: key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("assertion: signer: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, fmt.Errorf("assertion: JWKS: %w", err)
	}
	return &Signer{
		issuer: issuer,
		ttl:    ttl,
		signer: signer,
		jwks:   jwks,
		cache:  make(map[cacheKey]signed),
	}, nil
}

func loadKey(file string) (*ecdsa.PrivateKey, error) {
	if file == "" {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("assertion: generate key: %w", err)
		}
		return key, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("assertion: key file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("assertion: key file %s: no PEM block", file)
	}
	var parsed any
	switch block.Type {
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("assertion: key file %s: PEM type %q, want EC PRIVATE KEY or PRIVATE KEY", file, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("assertion: key file %s: %w", file, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("assertion: key file %s: want a P-256 ECDSA key (ES256)", file)
	}
	return key, nil
}

// Sign returns an assertion for id addressed to audience (the upstream),
// carrying iss, sub, aud, iat, exp, email and groups. Assertions are cached
// per (identity, audience) and reused for the first half of their lifetime,
// so the request path signs once per identity and upstream rather than per
// request, and an upstream always gets at least ttl/2 of validity.
func (s *Signer) Sign(id *identity.Identity, audience string, now time.Time) (string, error) {
	if id == nil {
		return "", errors.New("assertion: no identity")
	}
	if audience == "" {
		return "", errors.New("assertion: audience is required")
	}
	k := cacheKey{subject: id.Subject, audience: audience}
	s.mu.RLock()
	c, ok := s.cache[k]
	s.mu.RUnlock()
	if ok && s.fresh(c, now) && c.email == id.Email && slices.Equal(c.groups, id.Groups) {
		return c.token, nil
	}

	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	claims := struct {
		jwt.Claims
		Email  string   `json:"email,omitempty"`
		Groups []string `json:"groups"`
	}{
		Claims: jwt.Claims{
			Issuer:   s.issuer,
			Subject:  id.Subject,
			Audience: jwt.Audience{audience},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(s.ttl)),
		},
		Email:  id.Email,
		Groups: groups,
	}
	token, err := jwt.Signed(s.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}

	s.mu.Lock()
	if _, exists := s.cache[k]; !exists && len(s.cache) >= maxCached {
		s.evictOne(now)
	}
	s.cache[k] = signed{token: token, iat: now, email: id.Email, groups: slices.Clone(id.Groups)}
	s.mu.Unlock()
	return token, nil
}

// fresh reports whether a cached assertion is in the first half of its
// lifetime at now (a clock that went backwards also re-signs).
func (s *Signer) fresh(c signed, now time.Time) bool {
	return !now.Before(c.iat) && now.Before(c.iat.Add(s.ttl/2))
}

// evictOne drops a stale entry if one of the first few looked at is stale,
// otherwise an arbitrary one (map iteration order is random). Callers hold mu.
func (s *Signer) evictOne(now time.Time) {
	var victim cacheKey
	n := 0
	for k, c := range s.cache {
		if n == 0 {
			victim = k
		}
		if !s.fresh(c, now) {
			victim = k
			break
		}
		if n++; n == 8 {
			break
		}
	}
	delete(s.cache, victim)
}

// JWKSHandler serves the public key set, for upstreams to verify
// assertions (mounted at /.well-known/sekisho/jwks.json).
func (s *Signer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httperr.Write(w, r, http.StatusMethodNotAllowed, "the key set is read-only")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", jwksMaxAge)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(s.jwks)
	})
}
