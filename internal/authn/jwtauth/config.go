package jwtauth

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/identity"
)

// IssuerConfig is one entry of the `jwt:` list: an issuer whose bearer
// tokens are accepted without a browser login.
type IssuerConfig struct {
	// Issuer must equal the token's "iss" claim exactly.
	Issuer string `yaml:"issuer"`
	// JWKSURL is where the issuer's public keys are. When empty it is read
	// from OIDC discovery (Issuer + /.well-known/openid-configuration),
	// whose "issuer" must equal Issuer.
	JWKSURL string `yaml:"jwks_url"`
	// Audiences lists the accepted "aud" values; at least one is required
	// so that a token minted for another service is not accepted here.
	Audiences []string `yaml:"audiences"`
	// Algorithms is the allow-list of "alg" values; default [RS256, ES256].
	// "none" is never accepted, and HS256/384/512 only with HMACSecretFile.
	Algorithms []string `yaml:"algorithms"`
	// HMACSecretFile holds the shared secret for HS* tokens. A trailing
	// newline is removed; the secret must be at least as long as the hash
	// output of every HS algorithm allowed (32 bytes for HS256).
	HMACSecretFile string `yaml:"hmac_secret_file"`
	// ClockSkew is the tolerance for exp, nbf and iat; default 60s.
	ClockSkew time.Duration          `yaml:"clock_skew"`
	Claims    identity.ClaimsConfig  `yaml:"claims"`
	Prefix    identity.PrefixConfig  `yaml:"prefix"`
	Rules     []identity.Rule        `yaml:"rules"`
	Mappings  identity.MappingConfig `yaml:"mappings"`
	// CAFile is a PEM bundle of the CAs trusted for discovery and JWKS
	// fetches instead of the system roots, for an issuer behind a private
	// CA.
	CAFile string `yaml:"ca_file"`
	// Kubernetes makes this entry the cluster's service-account token
	// issuer (see KubernetesConfig); nil for any other issuer.
	Kubernetes *KubernetesConfig `yaml:"kubernetes"`
}

const defaultClockSkew = 60 * time.Second

var defaultAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// asymmetricAlgs are verified with keys from the issuer's JWKS.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// hmacMinBytes is the shortest secret each HS algorithm accepts (its hash
// output size, as RFC 7518 section 3.2 requires).
var hmacMinBytes = map[jose.SignatureAlgorithm]int{jose.HS256: 32, jose.HS384: 48, jose.HS512: 64}

// issuer is one compiled IssuerConfig plus its live key state.
type issuer struct {
	name      string
	audiences jwt.Audience
	algs      []jose.SignatureAlgorithm
	skew      time.Duration
	mapper    *identity.Mapper
	prefix    identity.PrefixConfig
	// hmacSecret verifies HS* tokens and nothing else; JWKS keys never
	// verify HS* tokens (no algorithm confusion).
	hmacSecret []byte
	// jwksURL is configured or found by discovery; empty until then.
	jwksURL   string
	needsJWKS bool

	// client fetches this issuer's discovery document and JWKS: the
	// Authenticator's, or one trusting the issuer's own CA.
	client *http.Client
	// rootCAs is the pool read from ca_file; nil for the system roots. For
	// a Kubernetes issuer it applies to hosts other than the API server.
	rootCAs *x509.CertPool
	// kube is set for a Kubernetes service-account issuer.
	kube *kubeIssuer

	keys      atomic.Pointer[keySet] // nil until the first successful fetch
	ready     chan struct{}          // closed on the first successful fetch
	readyOnce sync.Once
	kick      chan string // unknown kids, for the refresh goroutine
}

func compileIssuer(c IssuerConfig) (*issuer, error) {
	if c.Kubernetes != nil && c.Issuer == "" {
		c.Issuer = DefaultKubernetesIssuer
	}
	if c.Issuer == "" {
		return nil, errors.New("issuer: is required")
	}
	iss := &issuer{
		name:    c.Issuer,
		skew:    c.ClockSkew,
		jwksURL: c.JWKSURL,
		ready:   make(chan struct{}),
		kick:    make(chan string, kickQueue),
	}
	if iss.skew < 0 {
		return nil, fmt.Errorf("clock_skew: %s must not be negative", c.ClockSkew)
	}
	if iss.skew == 0 {
		iss.skew = defaultClockSkew
	}
	if len(c.Audiences) == 0 {
		return nil, errors.New("audiences: at least one is required")
	}
	for _, a := range c.Audiences {
		if a == "" {
			return nil, errors.New("audiences: empty audience")
		}
	}
	iss.audiences = jwt.Audience(slices.Clone(c.Audiences))

	iss.algs = defaultAlgorithms
	if len(c.Algorithms) > 0 {
		iss.algs = nil
		for _, name := range c.Algorithms {
			alg := jose.SignatureAlgorithm(name)
			_, isHMAC := hmacMinBytes[alg]
			if !isHMAC && !slices.Contains(asymmetricAlgs, alg) {
				return nil, fmt.Errorf("algorithms: %q is not supported (use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512)", name)
			}
			if !slices.Contains(iss.algs, alg) {
				iss.algs = append(iss.algs, alg)
			}
		}
	}

	var err error
	if iss.hmacSecret, err = loadHMACSecret(c.HMACSecretFile, iss.algs); err != nil {
		return nil, err
	}
	iss.needsJWKS = slices.ContainsFunc(iss.algs, func(a jose.SignatureAlgorithm) bool {
		return slices.Contains(asymmetricAlgs, a)
	})
	if c.CAFile != "" {
		if iss.rootCAs, err = loadCAFile(c.CAFile); err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
	}
	if c.Kubernetes != nil {
		if iss.kube, err = compileKube(c); err != nil {
			return nil, err
		}
		if iss.kube.review != nil {
			iss.needsJWKS = false // the API server checks the signature
		}
	}
	if iss.needsJWKS && iss.kube == nil {
		if c.JWKSURL != "" {
			if err := CheckFetchURL(c.JWKSURL); err != nil {
				return nil, fmt.Errorf("jwks_url: %w", err)
			}
		} else if err := CheckFetchURL(c.Issuer); err != nil {
			return nil, fmt.Errorf("issuer: %w (it is used for discovery because jwks_url is not set)", err)
		}
	}

	iss.prefix = c.Prefix
	if iss.mapper, err = identity.NewMapper(c.Claims, c.Prefix, c.Rules, c.Mappings); err != nil {
		return nil, err
	}
	return iss, nil
}

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

func loadHMACSecret(file string, algs []jose.SignatureAlgorithm) ([]byte, error) {
	need := 0
	for _, a := range algs {
		need = max(need, hmacMinBytes[a])
	}
	switch {
	case need == 0 && file == "":
		return nil, nil
	case need == 0:
		return nil, errors.New("hmac_secret_file is set but no HS256/HS384/HS512 algorithm is allowed")
	case file == "":
		return nil, errors.New("algorithms: HS256/HS384/HS512 require hmac_secret_file")
	}
	secret, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("hmac_secret_file: %w", err)
	}
	secret = bytes.TrimRight(secret, "\r\n")
	if len(secret) < need {
		return nil, fmt.Errorf("hmac_secret_file: secret is %d bytes, the allowed HS algorithms need at least %d", len(secret), need)
	}
	return secret, nil
}

// CheckFetchURL requires https for anything keys are fetched from, so
// that keys cannot be replaced in transit; plain http is allowed only for
// loopback addresses (local development and tests).
func CheckFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || net.ParseIP(h).IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: keys must be fetched over https (http is allowed only for loopback)", raw)
	}
	return fmt.Errorf("%q: scheme must be https", raw)
}

func (iss *issuer) allows(alg jose.SignatureAlgorithm) bool {
	return slices.Contains(iss.algs, alg)
}
