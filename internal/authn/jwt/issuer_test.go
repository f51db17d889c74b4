package jwtauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testIssuer is a minimal but real OIDC issuer: it serves a discovery
// document and a JWKS over HTTP, and signs tokens with go-jose. Tests can
// rotate its keys, take it down, and hold its JWKS responses.
type testIssuer struct {
	t   testing.TB
	srv *httptest.Server
	url string

	mu           sync.Mutex
	published    []*testKey
	down         bool
	cacheControl string
	discoveryIss string // issuer named in discovery; default url
	gate         chan struct{}
	entered      chan struct{}

	discoveryHits atomic.Int32
	jwksHits      atomic.Int32
}

type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	ti := &testIssuer{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", ti.serveDiscovery)
	mux.HandleFunc("GET /keys", ti.serveJWKS)
	ti.srv = httptest.NewServer(mux)
	ti.url = ti.srv.URL
	t.Cleanup(func() {
		ti.release()
		ti.srv.Close()
	})
	return ti
}

func (ti *testIssuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	ti.discoveryHits.Add(1)
	ti.mu.Lock()
	down, iss := ti.down, ti.discoveryIss
	ti.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if iss == "" {
		iss = ti.url
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              ti.url + "/keys",
		"authorization_endpoint":                ti.url + "/authorize",
		"token_endpoint":                        ti.url + "/token",
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	})
}

func (ti *testIssuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	ti.jwksHits.Add(1)
	ti.mu.Lock()
	gate, entered := ti.gate, ti.entered
	ti.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var set jose.JSONWebKeySet
	for _, k := range ti.published {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	if ti.cacheControl != "" {
		w.Header().Set("Cache-Control", ti.cacheControl)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// hold makes JWKS requests block until release; each blocked request is
// announced on the returned channel.
func (ti *testIssuer) hold() <-chan struct{} {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.gate = make(chan struct{})
	ti.entered = make(chan struct{}, 16)
	return ti.entered
}

func (ti *testIssuer) release() {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.gate != nil {
		close(ti.gate)
		ti.gate = nil
	}
}

func (ti *testIssuer) setDown(down bool) {
	ti.mu.Lock()
	ti.down = down
	ti.mu.Unlock()
}

// newKey creates a key; publish puts it in the JWKS.
func newKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) *testKey {
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
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("newKey: unsupported %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: alg, priv: priv}
}

func (ti *testIssuer) publish(keys ...*testKey) {
	ti.mu.Lock()
	ti.published = append(ti.published, keys...)
	ti.mu.Unlock()
}

func (ti *testIssuer) unpublish(kid string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	var kept []*testKey
	for _, k := range ti.published {
		if k.kid != kid {
			kept = append(kept, k)
		}
	}
	ti.published = kept
}

// t0 is the fixed "now" of every test clock.
var t0 = time.Unix(1_800_000_000, 0)

// claims returns valid claims for the issuer, modified by the given pairs
// (a nil value deletes the claim).
func (ti *testIssuer) claims(kv ...any) map[string]any {
	c := map[string]any{
		"iss":    ti.url,
		"aud":    "api",
		"sub":    "alice-id",
		"email":  "alice@example.com",
		"groups": []string{"admin", "dev"},
		"iat":    t0.Unix(),
		"exp":    t0.Add(time.Hour).Unix(),
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// sign signs claims with key; extra headers and options shape attacks.
func sign(t testing.TB, key *testKey, claims map[string]any, mod ...func(*jose.SignerOptions)) string {
	t.Helper()
	return signWith(t, key.alg, jose.JSONWebKey{Key: key.priv, KeyID: key.kid}, claims, mod...)
}

func signWith(t testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any, mod ...func(*jose.SignerOptions)) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for _, m := range mod {
		m(opts)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// testClock is an adjustable Options.Now.
type testClock struct{ ns atomic.Int64 }

func newClock() *testClock {
	c := &testClock{}
	c.set(t0)
	return c
}
func (c *testClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *testClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }

// refreshEvent is one key fetch attempt reported by the onRefresh hook.
type refreshEvent struct {
	issuer string
	err    error
}

// harness is an Authenticator wired to a test clock, a captured log and a
// channel of refresh events.
type harness struct {
	*Authenticator
	clock  *testClock
	events chan refreshEvent
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t testing.TB, cfgs []IssuerConfig, opts Options) *harness {
	t.Helper()
	h := &harness{clock: newClock(), events: make(chan refreshEvent, 1000), logs: &syncBuffer{}}
	opts.Now = h.clock.now
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	opts.onRefresh = func(iss string, err error) {
		select {
		case h.events <- refreshEvent{iss, err}:
		default:
		}
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = time.Hour // refreshes in tests happen when the test asks
	}
	if opts.MinRefreshGap == 0 {
		opts.MinRefreshGap = time.Nanosecond
	}
	a, err := New(context.Background(), cfgs, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(a.Close)
	h.Authenticator = a
	return h
}

// nextRefresh waits for the next fetch attempt and returns its error.
func (h *harness) nextRefresh(t testing.TB) error {
	t.Helper()
	select {
	case ev := <-h.events:
		return ev.err
	case <-time.After(10 * time.Second):
		t.Fatal("no key refresh within 10s")
		return nil
	}
}

// mustRefreshOK waits for the next fetch and requires it to succeed.
func (h *harness) mustRefreshOK(t testing.TB) {
	t.Helper()
	if err := h.nextRefresh(t); err != nil {
		t.Fatalf("refresh failed: %v", err)
	}
}

func (ti *testIssuer) config(mod ...func(*IssuerConfig)) IssuerConfig {
	c := IssuerConfig{Issuer: ti.url, Audiences: []string{"api"}}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// wantInvalid checks err is an ErrInvalidToken with the given reason and
// does not echo the token.
func wantInvalid(t testing.TB, err error, reason, token string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want rejection %q", reason)
	}
	if !errors.Is(err, ErrInvalidToken) {
		t.Errorf("error %v is not ErrInvalidToken", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(reason)) {
		t.Errorf("error %q, want reason %q", err, reason)
	}
	if len(token) > 16 && bytes.Contains([]byte(err.Error()), []byte(token)) {
		t.Errorf("error echoes the token")
	}
}
