package jwtauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/identity"
)

func TestAuthenticateValid(t *testing.T) {
	tests := []struct {
		name string
		alg  jose.SignatureAlgorithm
		algs []string
	}{
		{"RS256 default", jose.RS256, nil},
		{"ES256 default", jose.ES256, nil},
		{"PS256", jose.PS256, []string{"PS256"}},
		{"ES384", jose.ES384, []string{"ES384"}},
		{"EdDSA", jose.EdDSA, []string{"EdDSA"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := jwttest.NewKey(t, "k1", tt.alg)
			ti := newIssuerWith(t, key)
			h := newHarness(t, []IssuerConfig{issuerConfig(ti, func(c *IssuerConfig) {
				c.Algorithms = tt.algs
				c.Claims = identity.ClaimsConfig{Username: "email"}
				c.Prefix = identity.PrefixConfig{Groups: "gid:"}
			})}, Options{})
			h.mustRefreshOK(t)
			if !h.Ready() {
				t.Fatal("not ready after keys were fetched")
			}
			id, err := h.Authenticate(context.Background(), jwttest.Sign(t, key, ti.Claims(t0, "amr", []string{"pwd", "otp"})))
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.Username != "alice@example.com" || id.Subject != "alice-id" || id.Issuer != ti.URL ||
				id.Method != identity.MethodJWT || !id.MFA || id.Kind != identity.KindUser ||
				!reflect.DeepEqual(id.Groups, []string{"gid:admin", "gid:dev"}) {
				t.Errorf("identity = %+v", id)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	t.Run("jwks_uri from discovery", func(t *testing.T) {
		key := jwttest.NewKey(t, "k1", jose.ES256)
		ti := newIssuerWith(t, key)
		h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{})
		h.mustRefreshOK(t)
		if ti.DiscoveryHits() != 1 || ti.JWKSHits() != 1 {
			t.Errorf("discovery hits %d, jwks hits %d; want 1, 1", ti.DiscoveryHits(), ti.JWKSHits())
		}
		if _, err := h.Authenticate(context.Background(), jwttest.Sign(t, key, ti.Claims(t0))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("configured jwks_url skips discovery", func(t *testing.T) {
		ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
		h := newHarness(t, []IssuerConfig{issuerConfig(ti, func(c *IssuerConfig) { c.JWKSURL = ti.URL + "/keys" })}, Options{})
		h.mustRefreshOK(t)
		if ti.DiscoveryHits() != 0 {
			t.Errorf("discovery was fetched although jwks_url is set")
		}
	})
	t.Run("issuer mismatch in discovery is refused", func(t *testing.T) {
		key := jwttest.NewKey(t, "k1", jose.ES256)
		ti := newIssuerWith(t, key)
		ti.SetDiscoveryIssuer("https://evil.example")
		h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{})
		err := h.nextRefresh(t)
		if err == nil || !strings.Contains(err.Error(), "did not match") {
			t.Fatalf("refresh error = %v, want issuer mismatch", err)
		}
		if h.Ready() || ti.JWKSHits() != 0 {
			t.Errorf("keys fetched from a discovery document naming another issuer")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = h.Authenticate(ctx, jwttest.Sign(t, key, ti.Claims(t0)))
		wantInvalid(t, err, "issuer keys not available", "")
	})
}

// TestRejects covers the bad tokens: every one must fail with
// ErrInvalidToken, the right reason, and without echoing the token.
func TestRejects(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	good := ti.Key() // RS256 "k1"
	otherKey := jwttest.NewKey(t, "other-k", jose.ES256)
	other := newIssuerWith(t, otherKey) // a second, legitimate issuer
	evil := jwttest.NewKey(t, "evil", jose.RS256)
	attacker := newIssuerWith(t, evil) // serves the attacker's JWKS
	evilSameKid := &jwttest.Key{Kid: good.Kid, Alg: jose.RS256, Private: evil.Private}

	h := newHarness(t, []IssuerConfig{
		issuerConfig(ti, func(c *IssuerConfig) {
			c.Rules = []identity.Rule{{Expr: "claims.sub != 'blocked'", Message: "subject is blocked"}}
		}),
		issuerConfig(other, func(c *IssuerConfig) { c.Algorithms = []string{"ES256"} }),
	}, Options{MaxTokenBytes: 4096, KIDRetryMin: time.Hour, KIDRetryMax: time.Hour})
	h.mustRefreshOK(t)
	h.mustRefreshOK(t)

	pubDER, err := x509.MarshalPKIXPublicKey(good.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubJWK, _ := json.Marshal(jose.JSONWebKey{Key: good.Private.Public(), KeyID: good.Kid})
	valid := jwttest.Sign(t, good, ti.Claims(t0))
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	skew := defaultClockSkew

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"empty", "", "empty token"},
		{"garbage", "not a jwt at all", "malformed"},
		{"one segment", "abc", "malformed"},
		{"four segments", valid + ".x", "malformed"},
		{"bad base64", "!!!.@@@.###", "malformed"},
		{"bad base64 payload", parts[0] + ".*" + parts[1] + "." + parts[2], "malformed"},
		{"header not json", b64([]byte("nope")) + "." + parts[1] + "." + parts[2], "malformed"},
		{"payload not json", parts[0] + "." + b64([]byte("[1,2")) + "." + parts[2], "malformed"},
		{"too large", valid + strings.Repeat("A", 4096), "token too large"},
		{"alg none", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".", "malformed"},
		{"alg none with signature", b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + parts[1] + "." + parts[2], "malformed"},
		{"HS256 with RSA public key PEM as secret", jwttest.SignWith(t, jose.HS256, pubPEM, ti.Claims(t0),
			func(o *jose.SignerOptions) { o.WithHeader("kid", good.Kid) }), "malformed"},
		{"HS256 with RSA public JWK as secret", jwttest.SignWith(t, jose.HS256, pubJWK, ti.Claims(t0)), "malformed"},
		{"tampered payload", parts[0] + "." + b64(mustJSON(t, ti.Claims(t0, "sub", "root"))) + "." + parts[2], "signature verification failed"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flipLastChar(parts[2]), "signature verification failed"},
		{"signature from another token", parts[0] + "." + strings.Split(jwttest.Sign(t, good, ti.Claims(t0, "sub", "bob")), ".")[1] + "." + parts[2], "signature verification failed"},
		{"jku to attacker JWKS", jwttest.Sign(t, evil, ti.Claims(t0), func(o *jose.SignerOptions) {
			o.WithHeader("jku", attacker.URL+"/keys")
		}), "unknown signing key"},
		{"jku to attacker JWKS with known kid", jwttest.Sign(t, evilSameKid, ti.Claims(t0), func(o *jose.SignerOptions) {
			o.WithHeader("jku", attacker.URL+"/keys")
		}), "signature verification failed"},
		{"x5u to attacker", jwttest.Sign(t, evilSameKid, ti.Claims(t0), func(o *jose.SignerOptions) {
			o.WithHeader("x5u", attacker.URL+"/cert.pem")
		}), "signature verification failed"},
		{"embedded jwk of attacker", jwttest.SignWith(t, jose.RS256, evil.Private, ti.Claims(t0), func(o *jose.SignerOptions) { o.EmbedJWK = true }), "signature verification failed"},
		{"embedded jwk of attacker with its kid", jwttest.Sign(t, evil, ti.Claims(t0), func(o *jose.SignerOptions) {
			o.EmbedJWK = true
			o.WithHeader("kid", evil.Kid)
		}), "unknown signing key"},
		{"key of another issuer", jwttest.Sign(t, otherKey, ti.Claims(t0)), "unknown signing key"},
		{"kid of another issuer", jwttest.Sign(t, &jwttest.Key{Kid: otherKey.Kid, Alg: jose.RS256, Private: evil.Private}, ti.Claims(t0)), "unknown signing key"},
		{"algorithm of another issuer", jwttest.Sign(t, jwttest.NewKey(t, "other-k", jose.RS256), other.Claims(t0)), "algorithm not allowed for this issuer"},
		{"unknown kid", jwttest.Sign(t, evil, ti.Claims(t0)), "unknown signing key"},
		{"unknown issuer", jwttest.Sign(t, good, ti.Claims(t0, "iss", attacker.URL)), "unknown issuer"},
		{"no issuer", jwttest.Sign(t, good, ti.Claims(t0, "iss", nil)), "unknown issuer"},
		{"issuer not a string", jwttest.Sign(t, good, ti.Claims(t0, "iss", 42)), "malformed"},
		{"wrong audience", jwttest.Sign(t, good, ti.Claims(t0, "aud", "other-api")), "audience not accepted"},
		{"no audience", jwttest.Sign(t, good, ti.Claims(t0, "aud", nil)), "audience not accepted"},
		{"audience wrong type", jwttest.Sign(t, good, ti.Claims(t0, "aud", 7)), "malformed claims"},
		{"expired beyond skew", jwttest.Sign(t, good, ti.Claims(t0, "exp", t0.Add(-skew-time.Second).Unix())), "token expired"},
		{"no exp", jwttest.Sign(t, good, ti.Claims(t0, "exp", nil)), "no exp claim"},
		{"nbf beyond skew", jwttest.Sign(t, good, ti.Claims(t0, "nbf", t0.Add(skew+time.Second).Unix())), "not valid yet"},
		{"iat beyond skew", jwttest.Sign(t, good, ti.Claims(t0, "iat", t0.Add(skew+time.Second).Unix())), "issued in the future"},
		{"validation rule", jwttest.Sign(t, good, ti.Claims(t0, "sub", "blocked")), "validation rule 0 failed: subject is blocked"},
		{"no username", jwttest.Sign(t, otherKey, other.Claims(t0, "sub", nil)), `username claim "sub"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := h.Authenticate(context.Background(), tt.token)
			if id != nil {
				t.Errorf("identity returned with error")
			}
			wantInvalid(t, err, tt.reason, tt.token)
		})
	}
	if n := attacker.JWKSHits() + attacker.DiscoveryHits(); n != 0 {
		t.Errorf("attacker server was contacted %d times", n)
	}
	if logs := h.logs.String(); strings.Contains(logs, parts[2]) {
		t.Errorf("logs contain a token signature: %s", logs)
	}

	accepted := []struct {
		name  string
		token string
	}{
		{"expired within skew", jwttest.Sign(t, good, ti.Claims(t0, "exp", t0.Add(-skew+time.Second).Unix()))},
		{"nbf within skew", jwttest.Sign(t, good, ti.Claims(t0, "nbf", t0.Add(skew-time.Second).Unix()))},
		{"iat within skew", jwttest.Sign(t, good, ti.Claims(t0, "iat", t0.Add(skew-time.Second).Unix()))},
		{"audience list containing ours", jwttest.Sign(t, good, ti.Claims(t0, "aud", []string{"x", "api"}))},
		{"no kid tries the issuer's keys", jwttest.SignWith(t, jose.RS256, good.Private, ti.Claims(t0))},
		{"second issuer", jwttest.Sign(t, otherKey, other.Claims(t0))},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := h.Authenticate(context.Background(), tt.token); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

// TestAlgorithmConfusionWithHMACAllowed: even when the issuer accepts HS256
// with its own secret, a token MACed with the issuer's RSA public key fails.
func TestAlgorithmConfusionWithHMACAllowed(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	key := ti.Key() // RS256 "k1"
	secret := []byte(strings.Repeat("s", 32))
	h := newHarness(t, []IssuerConfig{issuerConfig(ti, func(c *IssuerConfig) {
		c.Algorithms = []string{"RS256", "HS256"}
		c.HMACSecretFile = writeFile(t, string(secret)+"\n")
	})}, Options{})
	h.mustRefreshOK(t)

	pubDER, _ := x509.MarshalPKIXPublicKey(key.Private.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	confused := jwttest.SignWith(t, jose.HS256, pubPEM, ti.Claims(t0), func(o *jose.SignerOptions) { o.WithHeader("kid", "k1") })
	_, err := h.Authenticate(context.Background(), confused)
	wantInvalid(t, err, "signature verification failed", confused)

	// The configured secret (trailing newline removed) does verify.
	if _, err := h.Authenticate(context.Background(), jwttest.SignWith(t, jose.HS256, secret, ti.Claims(t0))); err != nil {
		t.Fatalf("HS256 with the configured secret: %v", err)
	}
	if _, err := h.Authenticate(context.Background(), jwttest.Sign(t, key, ti.Claims(t0))); err != nil {
		t.Fatalf("RS256 next to HS256: %v", err)
	}
}

func TestHMACOnlyIssuer(t *testing.T) {
	secret := []byte(strings.Repeat("k", 64))
	h := newHarness(t, []IssuerConfig{{
		Issuer: "ci-system", Audiences: []string{"api"}, Algorithms: []string{"HS512"},
		HMACSecretFile: writeFile(t, string(secret)),
	}}, Options{})
	if !h.Ready() {
		t.Error("an HMAC-only issuer needs no JWKS and is ready at once")
	}
	select {
	case <-h.KeysReady():
	default:
		t.Error("KeysReady is not closed for an HMAC-only issuer, which needs no JWKS")
	}
	claims := map[string]any{"iss": "ci-system", "aud": "api", "sub": "ci", "exp": t0.Add(time.Minute).Unix()}
	if _, err := h.Authenticate(context.Background(), jwttest.SignWith(t, jose.HS512, secret, claims)); err != nil {
		t.Fatalf("valid HS512: %v", err)
	}
	wrong := jwttest.SignWith(t, jose.HS512, []byte(strings.Repeat("x", 64)), claims)
	_, err := h.Authenticate(context.Background(), wrong)
	wantInvalid(t, err, "signature verification failed", wrong)
	hs256 := jwttest.SignWith(t, jose.HS256, secret, claims)
	_, err = h.Authenticate(context.Background(), hs256)
	wantInvalid(t, err, "malformed token or algorithm not allowed", hs256)
}

// TestKeyRotation: a new kid verifies after the refresh its first token
// triggers (that first token fails fast), and a removed key stops working,
// cached verifications included, at the first refresh that no longer lists
// it.
func TestKeyRotation(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	k1 := ti.Key() // RS256 "k1"
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{})
	h.mustRefreshOK(t)
	ctx := context.Background()

	old := jwttest.Sign(t, k1, ti.Claims(t0))
	if _, err := h.Authenticate(ctx, old); err != nil {
		t.Fatal(err)
	}

	k2 := jwttest.NewKey(t, "k2", jose.RS256)
	ti.Publish(k2)
	fresh := jwttest.Sign(t, k2, ti.Claims(t0))
	_, err := h.Authenticate(ctx, fresh)
	wantInvalid(t, err, "unknown signing key", fresh)
	h.mustRefreshOK(t) // the refresh that token triggered
	if _, err := h.Authenticate(ctx, fresh); err != nil {
		t.Fatalf("new kid after refresh: %v", err)
	}
	if _, err := h.Authenticate(ctx, old); err != nil {
		t.Fatalf("old key still published: %v", err)
	}

	ti.Unpublish("k1")
	_, err = h.Authenticate(ctx, old)
	if err != nil {
		t.Fatalf("removed key must keep working until a refresh drops it: %v", err)
	}
	probe := jwttest.Sign(t, jwttest.NewKey(t, "k3", jose.RS256), ti.Claims(t0))
	_, err = h.Authenticate(ctx, probe) // unknown kid: triggers a refresh
	wantInvalid(t, err, "unknown signing key", probe)
	h.mustRefreshOK(t)
	_, err = h.Authenticate(ctx, old)
	wantInvalid(t, err, "unknown signing key", old)
	if _, err := h.Authenticate(ctx, fresh); err != nil {
		t.Fatalf("k2 after k1 removal: %v", err)
	}
}

// TestUnknownKidFailsFast: with keys present, a request with an unknown kid
// does not wait for the refresh it triggers.
func TestUnknownKidFailsFast(t *testing.T) {
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{})
	h.mustRefreshOK(t)

	k2 := jwttest.NewKey(t, "k2", jose.ES256)
	ti.Publish(k2)
	entered := ti.Hold()
	tok := jwttest.Sign(t, k2, ti.Claims(t0))
	_, err := h.Authenticate(context.Background(), tok) // returns while the JWKS request is held
	wantInvalid(t, err, "unknown signing key", tok)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("unknown kid did not trigger a refresh")
	}
	ti.Release()
	h.mustRefreshOK(t)
	if _, err := h.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("after refresh: %v", err)
	}
}

// TestIssuerDown: when the issuer becomes unreachable the last good keys
// stay in use, and an unknown kid is a plain 401.
func TestIssuerDown(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	k1 := ti.Key() // RS256 "k1"
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{})
	h.mustRefreshOK(t)

	ti.SetDown(true)
	unknown := jwttest.Sign(t, jwttest.NewKey(t, "k9", jose.RS256), ti.Claims(t0))
	_, err := h.Authenticate(context.Background(), unknown)
	wantInvalid(t, err, "unknown signing key", unknown)
	if err := h.nextRefresh(t); err == nil {
		t.Fatal("refresh against a down issuer succeeded")
	}
	// A token never seen before (not cached) verifies with the last good keys.
	if _, err := h.Authenticate(context.Background(), jwttest.Sign(t, k1, ti.Claims(t0, "sub", "new-user"))); err != nil {
		t.Fatalf("last good keys not used while issuer is down: %v", err)
	}
	if !h.Ready() {
		t.Error("issuer with last good keys reported not ready")
	}
	if logs := h.logs.String(); !strings.Contains(logs, "last good keys stay in use") {
		t.Errorf("failed refresh not logged: %s", logs)
	}
}

// TestIssuerUnreachableAtStart: New succeeds, tokens of that issuer are
// rejected while other issuers work, and keys arriving later are used.
func TestIssuerUnreachableAtStart(t *testing.T) {
	key := jwttest.NewKey(t, "k1", jose.ES256)
	down := newIssuerWith(t, key)
	down.SetDown(true)
	upKey := jwttest.NewKey(t, "u1", jose.ES256)
	up := newIssuerWith(t, upKey)

	h := newHarness(t, []IssuerConfig{issuerConfig(down), issuerConfig(up)}, Options{})
	for range 2 {
		h.nextRefresh(t)
	}
	if h.Ready() {
		t.Fatal("ready although one issuer has no keys")
	}
	select {
	case <-h.KeysReady():
		t.Fatal("KeysReady is closed although one issuer has no keys")
	default:
	}
	if _, err := h.Authenticate(context.Background(), jwttest.Sign(t, upKey, up.Claims(t0))); err != nil {
		t.Fatalf("reachable issuer: %v", err)
	}
	tok := jwttest.Sign(t, key, down.Claims(t0))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := h.Authenticate(ctx, tok)
	cancel()
	wantInvalid(t, err, "issuer keys not available", tok)

	down.SetDown(false)
	// With no keys ever fetched, the request waits (bounded) for the fetch it triggers.
	if _, err := h.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("after issuer came up: %v", err)
	}
	if !h.Ready() {
		t.Error("not ready after keys arrived")
	}
	select {
	case <-h.KeysReady():
	case <-time.After(5 * time.Second):
		t.Error("KeysReady is not closed after every issuer has keys")
	}
}

func TestIssuerNeverReachable(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	h := newHarness(t, []IssuerConfig{{Issuer: closed.URL, Audiences: []string{"api"}}}, Options{})
	if err := h.nextRefresh(t); err == nil {
		t.Fatal("fetch from a closed server succeeded")
	}
	if h.Ready() {
		t.Error("ready without keys")
	}
}

func TestCacheMaxAge(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", -1},
		{"public", -1},
		{"public, max-age=300", 300 * time.Second},
		{"Max-Age=60, must-revalidate", 60 * time.Second},
		{`max-age="120"`, 120 * time.Second},
		{"max-age=60, max-age=600", 60 * time.Second}, // the first counts
		{"s-maxage=600", -1},                          // for shared caches only
		{"max-age=0", 0},
		{"no-store", -1},
		{"no-cache, max-age=60", -1},
		{"max-age=60, no-cache", -1},
		{"max-age=abc", -1},
		{"max-age=-5", -1},
		{"max-age=+5", -1},
		{"max-age=", -1},
		{"max-age=99999999999999999999999", maxDelta},
	}
	for _, tt := range tests {
		if got := cacheMaxAge(tt.header); got != tt.want {
			t.Errorf("cacheMaxAge(%q) = %s, want %s", tt.header, got, tt.want)
		}
	}
}

// TestUnchangedKeysKeepCache: a refresh returning the same keys keeps the
// key set, so cached verifications survive routine refreshes.
func TestUnchangedKeysKeepCache(t *testing.T) {
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{clock: newFakeClock()})
	h.mustRefreshOK(t)
	iss := h.issuers[ti.URL]
	before := iss.keys.Load()
	h.fake.AdvanceTo(h.nextArmed(t)) // the regular refresh
	h.mustRefreshOK(t)
	if iss.keys.Load() != before {
		t.Error("identical JWKS replaced the key set")
	}
	ti.Publish(jwttest.NewKey(t, "k2", jose.ES256))
	h.fake.AdvanceTo(h.nextArmed(t))
	h.mustRefreshOK(t)
	if iss.keys.Load() == before {
		t.Error("changed JWKS did not replace the key set")
	}
}

func TestCacheHit(t *testing.T) {
	ti := jwttest.NewIssuer(t)
	key := ti.Key() // RS256 "k1"
	h := newHarness(t, []IssuerConfig{issuerConfig(ti, func(c *IssuerConfig) { c.ClockSkew = time.Nanosecond })}, Options{})
	h.mustRefreshOK(t)
	ctx := context.Background()
	tok := jwttest.Sign(t, key, ti.Claims(t0, "exp", t0.Add(10*time.Minute).Unix()))

	first, err := h.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("second call did not come from the cache")
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = h.Authenticate(ctx, tok) }); allocs > 2 {
		t.Errorf("cache hit allocates %.0f times, want <= 2", allocs)
	}

	h.clock.set(t0.Add(10*time.Minute - time.Second))
	if _, err := h.Authenticate(ctx, tok); err != nil {
		t.Fatalf("just before exp: %v", err)
	}
	h.clock.set(t0.Add(10*time.Minute + time.Second))
	_, err = h.Authenticate(ctx, tok)
	wantInvalid(t, err, "token expired", tok)
}

func testCache(entries int) *tokenCache {
	return newTokenCache(cache.Limits{MaxEntries: entries, MaxBytes: DefaultCacheBytes}, func() time.Time { return t0 }, nil)
}

func TestCacheBounded(t *testing.T) {
	c := testCache(32)
	iss := &issuer{}
	live := t0.Add(time.Hour).UnixNano()
	for i := range 500 {
		c.put(keyOf(string(rune(i))+"token"), cacheEntry{exp: live, iss: iss}, entryOverhead)
	}
	if n := c.len(); n > 32 {
		t.Errorf("cache holds %d entries, bound is 32", n)
	}
}

// TestCacheBoundedInBytes: large tokens fill the byte bound long before
// the entry bound.
func TestCacheBoundedInBytes(t *testing.T) {
	c := newTokenCache(cache.Limits{MaxEntries: 100_000, MaxBytes: 1 << 20}, func() time.Time { return t0 }, nil)
	iss := &issuer{}
	live := t0.Add(time.Hour).UnixNano()
	const tokenLen = 8 << 10
	for i := range 1000 {
		c.put(keyOf(fmt.Sprint(i, "token")), cacheEntry{exp: live, iss: iss}, entryCost(tokenLen))
	}
	if max := int((1 << 20) / entryCost(tokenLen)); c.len() > max+16 {
		t.Errorf("cache holds %d tokens of %d bytes, the 1 MiB bound allows about %d", c.len(), tokenLen, max)
	}
}

func TestCacheEvictsExpiredFirst(t *testing.T) {
	const shards = 16          // internal/cache's
	c := testCache(shards * 2) // two entries per shard
	iss := &issuer{}
	now := t0.UnixNano()
	// Find three keys in shard 0.
	var keys []tokenKey
	for i := 0; len(keys) < 3; i++ {
		if k := keyOf(string(rune(i))); shardHash(k)%shards == 0 {
			keys = append(keys, k)
		}
	}
	c.put(keys[0], cacheEntry{exp: now + 1e12, iss: iss}, entryOverhead)
	c.put(keys[1], cacheEntry{exp: now - 1, iss: iss}, entryOverhead) // expired
	c.get(keys[0], now)                                               // both live entries in use
	c.put(keys[2], cacheEntry{exp: now + 1e12, iss: iss}, entryOverhead)
	if _, ok := c.get(keys[0], now); !ok {
		t.Error("live entry evicted while an expired one was present")
	}
	if _, ok := c.get(keys[2], now); !ok {
		t.Error("new entry missing")
	}
	if _, ok := c.get(keys[1], now); ok {
		t.Error("expired entry returned")
	}
}

func TestNewErrors(t *testing.T) {
	shortSecret := writeFile(t, strings.Repeat("s", 40))
	okSecret := writeFile(t, strings.Repeat("s", 64))
	base := IssuerConfig{Issuer: "https://issuer.example", Audiences: []string{"api"}}
	with := func(mod func(*IssuerConfig)) []IssuerConfig {
		c := base
		mod(&c)
		return []IssuerConfig{c}
	}
	tests := []struct {
		name    string
		issuers []IssuerConfig
		opts    Options
		wantErr string
	}{
		{"no issuers", nil, Options{}, "at least one issuer"},
		{"empty issuer", with(func(c *IssuerConfig) { c.Issuer = "" }), Options{}, "jwt[0]: issuer: is required"},
		{"no audiences", with(func(c *IssuerConfig) { c.Audiences = nil }), Options{}, "jwt[0]: audiences: at least one is required"},
		{"empty audience", with(func(c *IssuerConfig) { c.Audiences = []string{""} }), Options{}, "empty audience"},
		{"alg none", with(func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "none"} }), Options{}, `"none" is not supported`},
		{"unknown alg", with(func(c *IssuerConfig) { c.Algorithms = []string{"RS257"} }), Options{}, `"RS257" is not supported`},
		{"HS256 without secret", with(func(c *IssuerConfig) { c.Algorithms = []string{"HS256"} }), Options{}, "require hmac_secret_file"},
		{"secret without HS alg", with(func(c *IssuerConfig) { c.HMACSecretFile = okSecret }), Options{}, "no HS256/HS384/HS512 algorithm is allowed"},
		{"secret too short for HS512", with(func(c *IssuerConfig) {
			c.Algorithms = []string{"HS256", "HS512"}
			c.HMACSecretFile = shortSecret
		}), Options{}, "secret is 40 bytes, the allowed HS algorithms need at least 64"},
		{"secret file missing", with(func(c *IssuerConfig) {
			c.Algorithms = []string{"HS256"}
			c.HMACSecretFile = filepath.Join(t.TempDir(), "nope")
		}), Options{}, "hmac_secret_file"},
		{"negative skew", with(func(c *IssuerConfig) { c.ClockSkew = -time.Second }), Options{}, "clock_skew"},
		{"plain http issuer", with(func(c *IssuerConfig) { c.Issuer = "http://issuer.example" }), Options{}, "must be fetched over https"},
		{"plain http jwks", with(func(c *IssuerConfig) { c.JWKSURL = "http://10.0.0.1/keys" }), Options{}, "jwks_url"},
		{"relative jwks", with(func(c *IssuerConfig) { c.JWKSURL = "/keys" }), Options{}, "not an absolute URL"},
		{"issuer not a URL needs jwks_url", with(func(c *IssuerConfig) { c.Issuer = "my-issuer" }), Options{}, "used for discovery"},
		{"bad rule", with(func(c *IssuerConfig) { c.Rules = []identity.Rule{{Expr: "claims.x =="}} }), Options{}, `rules[0] "claims.x =="`},
		{"bad mapping", with(func(c *IssuerConfig) { c.Mappings.Username = "1" }), Options{}, "mappings.username"},
		{"duplicate issuer", append(with(func(*IssuerConfig) {}), base), Options{}, `jwt[1]: issuer: "https://issuer.example" is configured twice`},
		{"negative option", with(func(*IssuerConfig) {}), Options{CacheSize: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(context.Background(), tt.issuers, tt.opts)
			if err == nil {
				a.Close()
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("all errors reported", func(t *testing.T) {
		_, err := New(context.Background(), []IssuerConfig{{Issuer: "https://a.example"}, {Issuer: "https://b.example"}}, Options{})
		if err == nil || !strings.Contains(err.Error(), "jwt[0]") || !strings.Contains(err.Error(), "jwt[1]") {
			t.Errorf("error %v should name both entries", err)
		}
	})
}

func TestCloseStopsRefresh(t *testing.T) {
	ti := newIssuerWith(t, jwttest.NewKey(t, "k1", jose.ES256))
	h := newHarness(t, []IssuerConfig{issuerConfig(ti)}, Options{})
	h.mustRefreshOK(t)
	h.Close() // returns only once the refresh goroutines have ended
	hits := ti.JWKSHits()
	tok := jwttest.Sign(t, jwttest.NewKey(t, "k2", jose.ES256), ti.Claims(t0))
	// Would start a refresh sequence. Nobody reads the queue any more: once
	// it is full, refusals must still return at once (the test would hang).
	for range 2 * kickQueue {
		_, err := h.Authenticate(context.Background(), tok)
		wantInvalid(t, err, "unknown signing key", tok)
	}
	select {
	case ev := <-h.events:
		t.Fatalf("refresh after Close: %+v", ev)
	default:
	}
	if ti.JWKSHits() != hits {
		t.Error("JWKS fetched after Close")
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flipLastChar(s string) string {
	c := s[len(s)-2]
	r := byte('A')
	if c == 'A' {
		r = 'B'
	}
	return s[:len(s)-2] + string(r) + s[len(s)-1:]
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
