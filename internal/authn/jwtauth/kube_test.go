package jwtauth

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/identity"
)

// kubeConfig is a Kubernetes entry for api, accepting audience "sekisho",
// in TokenReview mode when review is set.
func kubeConfig(api *jwttest.KubeAPIServer, review bool, mod ...func(*IssuerConfig)) IssuerConfig {
	c := IssuerConfig{
		Audiences: []string{"sekisho"},
		Kubernetes: &KubernetesConfig{
			APIServer: api.URL, CAFile: api.CAFile, TokenFile: api.TokenFile, TokenReview: review,
		},
	}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// newKubeHarness is a harness on the real clock (the API server checks
// expiry with it) trusting api.
func newKubeHarness(t testing.TB, cfgs ...IssuerConfig) *harness {
	t.Helper()
	h := newHarness(t, cfgs, Options{})
	h.clock.set(time.Now())
	return h
}

// kubeModes runs a test in both ways of checking a service-account token.
var kubeModes = []struct {
	name   string
	review bool
}{{"jwks", false}, {"tokenreview", true}}

// TestKubeServiceAccount checks a service account's identity, and that
// tokens for another audience, expired, or from another issuer are
// refused, with keys found through the API server's discovery or with
// TokenReview.
func TestKubeServiceAccount(t *testing.T) {
	for _, mode := range kubeModes {
		t.Run(mode.name, func(t *testing.T) {
			api := jwttest.NewKubeAPIServer(t)
			h := newKubeHarness(t, kubeConfig(api, mode.review))
			if !mode.review {
				h.mustRefreshOK(t)
			}
			ctx := context.Background()

			id, err := h.Authenticate(ctx, api.SAToken(t, "payments", "api", "sekisho"))
			if err != nil {
				t.Fatalf("payments token: %v", err)
			}
			want := &identity.Kube{
				Namespace: "payments", ServiceAccount: "api", ServiceAccountUID: "sa-uid-api",
				Pod: "api-7d4b9", PodUID: "pod-uid-api", Node: "node-1", NodeUID: "node-uid-1",
			}
			if id.Kube == nil || *id.Kube != *want {
				t.Errorf("Kube = %+v, want %+v", id.Kube, want)
			}
			if id.Username != "system:serviceaccount:payments:api" || id.Kind != identity.KindService || id.Issuer != jwttest.KubeIssuer {
				t.Errorf("identity = %+v", id)
			}
			for _, g := range []string{"system:serviceaccounts", "system:serviceaccounts:payments"} {
				if !slices.Contains(id.Groups, g) {
					t.Errorf("groups %v lack %s", id.Groups, g)
				}
			}

			refused := []struct {
				name, token, reason string
			}{
				{"other audience", api.SAToken(t, "payments", "api", "vault"), "audience not accepted"},
				{"expired", api.SAToken(t, "payments", "api", "sekisho", "iat", time.Now().Add(-3*time.Hour).Unix(), "nbf", time.Now().Add(-3*time.Hour).Unix(), "exp", time.Now().Add(-2*time.Hour).Unix()), "token expired"},
				{"other issuer", api.SAToken(t, "payments", "api", "sekisho", "iss", "https://other.example"), "unknown issuer"},
			}
			for _, tt := range refused {
				_, err := h.Authenticate(ctx, tt.token)
				wantInvalid(t, err, tt.reason, tt.token)
			}
		})
	}
}

// TestKubeClaimMustMatchSubject: the kubernetes.io claim must name the
// subject's service account, or the token is not the cluster's kind.
func TestKubeClaimMustMatchSubject(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	h := newKubeHarness(t, kubeConfig(api, false))
	h.mustRefreshOK(t)
	for _, kv := range [][]any{
		{"sub", "system:serviceaccount:payments:other"},
		{"kubernetes.io", nil},
		{"kubernetes.io", map[string]any{"namespace": "Payments\n", "serviceaccount": map[string]any{"name": "api"}}},
	} {
		tok := api.SAToken(t, "payments", "api", "sekisho", kv...)
		_, err := h.Authenticate(context.Background(), tok)
		wantInvalid(t, err, "not a Kubernetes service-account token", tok)
	}
}

// TestKubeDiscoveryIssuerMismatch: an API server whose discovery names
// another issuer is refused with the value to configure.
func TestKubeDiscoveryIssuerMismatch(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	api.SetDiscoveryIssuer("https://container.googleapis.com/v1/projects/p/locations/l/clusters/c")
	h := newKubeHarness(t, kubeConfig(api, false))
	err := h.nextRefresh(t)
	want := `set issuer: "https://container.googleapis.com/v1/projects/p/locations/l/clusters/c"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("refresh error %v, want it to say %s", err, want)
	}
	if !strings.Contains(h.logs.String(), "set issuer:") {
		t.Errorf("the log does not say which issuer to set:\n%s", h.logs)
	}
}

// TestKubeBearerOnlyToAPIServer: sekisho's own token goes to the API
// server (re-read for each request: the kubelet rotates it), and never to
// a JWKS on another host.
func TestKubeBearerOnlyToAPIServer(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	seen := make(chan string, 10)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
		http.Error(w, "no", http.StatusNotFound)
	}))
	t.Cleanup(elsewhere.Close)

	h := newKubeHarness(t, kubeConfig(api, false, func(c *IssuerConfig) { c.JWKSURL = elsewhere.URL + "/jwks" }))
	if err := h.nextRefresh(t); err == nil {
		t.Fatal("the fetch from the 404 JWKS succeeded")
	}
	if got := <-seen; got != "" {
		t.Errorf("a JWKS on another host got Authorization %q", got)
	}

	// Discovery and JWKS on the API server get the token, read afresh.
	rotated := "reader-token-rotated"
	api2 := jwttest.NewKubeAPIServer(t)
	h2 := newKubeHarness(t, kubeConfig(api2, false))
	h2.mustRefreshOK(t)
	for _, a := range api2.SeenAuthorization() {
		if !strings.HasSuffix(a, "Bearer "+api2.ReaderToken) {
			t.Errorf("API server request %q without the reader token", a)
		}
	}
	if err := os.WriteFile(api2.TokenFile, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	client := h2.issuers[jwttest.KubeIssuer].client
	resp, err := client.Get(api2.URL + "/openid/v1/jwks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if all := api2.SeenAuthorization(); !strings.HasSuffix(all[len(all)-1], "Bearer "+rotated) {
		t.Errorf("after rotation the API server got %q", all[len(all)-1])
	}
}

// TestKubeReviewCache: answers are cached (accepted and refused), an
// unreachable API server fails closed with ErrUnavailable and is asked
// again next time, and the reader's token never shows in errors or logs.
func TestKubeReviewCache(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	h := newKubeHarness(t, kubeConfig(api, true))
	ctx := context.Background()
	good := api.SAToken(t, "payments", "api", "sekisho")
	// Signed by another key: only the API server can tell it is bad.
	forged := jwttest.Sign(t, jwttest.NewKey(t, "sa-key-1", "RS256"), api.SAClaims(time.Now(), "payments", "api", "sekisho"))

	for range 3 {
		if _, err := h.Authenticate(ctx, good); err != nil {
			t.Fatalf("good token: %v", err)
		}
		_, err := h.Authenticate(ctx, forged)
		wantInvalid(t, err, "did not authenticate the token", forged)
	}
	if n := api.Reviews(); n != 2 {
		t.Errorf("%d TokenReviews for two tokens asked three times each, want 2", n)
	}

	api.SetDown(true)
	other := api.SAToken(t, "payments", "worker", "sekisho")
	for range 2 {
		_, err := h.Authenticate(ctx, other)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
			t.Fatalf("API server down: %v, want ErrUnavailable only", err)
		}
	}
	api.SetDown(false)
	if _, err := h.Authenticate(ctx, other); err != nil {
		t.Fatalf("API server back: %v", err)
	}

	// Without the right reader token: unavailable, saying so.
	if err := os.WriteFile(api.TokenFile, []byte("wrong-reader"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := h.Authenticate(ctx, api.SAToken(t, "shop", "api", "sekisho"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "sekisho's own token") {
		t.Errorf("refused reader: %v", err)
	}
	for _, secret := range []string{api.ReaderToken, "wrong-reader", good, other} {
		if strings.Contains(err.Error(), secret) || strings.Contains(h.logs.String(), secret) {
			t.Errorf("a token shows in the error or the log")
		}
	}
}

// TestKubeReviewCacheBounded floods TokenReview mode with distinct tokens:
// the cache stays within its size.
func TestKubeReviewCacheBounded(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	h := newKubeHarness(t, kubeConfig(api, true, func(c *IssuerConfig) { c.Kubernetes.CacheSize = 32 }))
	ctx := context.Background()
	claims := api.SAClaims(time.Now(), "payments", "api", "sekisho")
	key := jwttest.NewKey(t, "flood", "RS256")
	for i := range 300 {
		claims["jti"] = fmt.Sprint(i)
		_, _ = h.Authenticate(ctx, jwttest.Sign(t, key, claims))
	}
	c := h.issuers[jwttest.KubeIssuer].kube.review.cache
	if n := c.len(); n > 32 || n == 0 {
		t.Errorf("cache holds %d entries after a flood, want 1..32", n)
	}
}

// TestKubeConfigErrors: each bad setting is refused at its key.
func TestKubeConfigErrors(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		mod  func(*IssuerConfig)
		want string
	}{
		{"plain http", func(c *IssuerConfig) { c.Kubernetes.APIServer = "http://kubernetes.default.svc" }, "kubernetes.api_server: "},
		{"path", func(c *IssuerConfig) { c.Kubernetes.APIServer = api.URL + "/api" }, "kubernetes.api_server: "},
		{"no CA", func(c *IssuerConfig) { c.Kubernetes.CAFile = missing }, "kubernetes.ca_file: "},
		{"CA not PEM", func(c *IssuerConfig) { c.Kubernetes.CAFile = api.TokenFile }, "kubernetes.ca_file: "},
		{"no token", func(c *IssuerConfig) { c.Kubernetes.TokenFile = missing }, "kubernetes.token_file: "},
		{"no audience", func(c *IssuerConfig) { c.Audiences = nil }, "audiences: "},
		{"cache without review", func(c *IssuerConfig) { c.Kubernetes.CacheSize = 5 }, "kubernetes.cache_size: "},
		{"negative ttl", func(c *IssuerConfig) { c.Kubernetes.TokenReview, c.Kubernetes.CacheTTL = true, -time.Second }, "kubernetes.cache_ttl: "},
		{"review with username claim", func(c *IssuerConfig) { c.Kubernetes.TokenReview, c.Claims.Username = true, "email" }, "claims.username: "},
		{"review with jwks_url", func(c *IssuerConfig) { c.Kubernetes.TokenReview, c.JWKSURL = true, api.URL+"/keys" }, "jwks_url: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), []IssuerConfig{kubeConfig(api, false, tt.mod)}, Options{})
			var ie *IssuerError
			if !errors.As(err, &ie) || !strings.HasPrefix(ie.Err.Error(), tt.want) {
				t.Fatalf("New: %v, want an IssuerError starting %q", err, tt.want)
			}
		})
	}
}

// TestKubeDefaults: an empty kubernetes entry means the in-cluster paths
// and issuer (refused here because no pod files exist).
func TestKubeDefaults(t *testing.T) {
	if _, err := os.Stat(DefaultKubernetesCAFile); err == nil {
		t.Skip("running in a pod")
	}
	_, err := New(context.Background(), []IssuerConfig{{Audiences: []string{"sekisho"}, Kubernetes: &KubernetesConfig{}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), DefaultKubernetesCAFile) {
		t.Fatalf("New: %v, want the default CA path named", err)
	}
}

// TestIssuerCAFile: an issuer behind a private CA is fetched from with
// ca_file, and not without it.
func TestIssuerCAFile(t *testing.T) {
	key := jwttest.NewKey(t, "k1", jose.RS256)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Private.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := IssuerConfig{Issuer: "https://idp.internal.example", JWKSURL: srv.URL + "/keys", Audiences: []string{"api"}}

	h := newHarness(t, []IssuerConfig{cfg}, Options{})
	if err := h.nextRefresh(t); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("fetch without ca_file: %v, want a certificate error", err)
	}

	cfg.CAFile = caFile
	h = newHarness(t, []IssuerConfig{cfg}, Options{})
	h.mustRefreshOK(t)
	tok := jwttest.Sign(t, key, map[string]any{"iss": cfg.Issuer, "aud": "api", "sub": "svc", "exp": t0.Add(time.Hour).Unix()})
	if _, err := h.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("token of the private-CA issuer: %v", err)
	}
}

// TestKubeReviewBounded: callers with the same new token share one review,
// and reviews beyond the in-flight bound wait for a slot instead of
// reaching the API server; a caller that gives up waiting gets
// ErrUnavailable.
func TestKubeReviewBounded(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	h := newKubeHarness(t, kubeConfig(api, true))
	h.issuers[jwttest.KubeIssuer].kube.review.slots = make(chan struct{}, 1)

	// Same token, asked twice while its review is open: one review.
	entered, release := api.HoldReviews(t)
	tok := api.SAToken(t, "payments", "api", "sekisho")
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := h.Authenticate(context.Background(), tok)
			done <- err
		}()
	}
	<-entered
	release()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("same token: %v", err)
		}
	}
	if n := api.Reviews(); n != 1 {
		t.Errorf("%d reviews for one token asked at once, want 1", n)
	}

	// One slot, held: another token waits, and its caller gives up.
	entered, release = api.HoldReviews(t)
	go func() {
		_, err := h.Authenticate(context.Background(), api.SAToken(t, "payments", "a", "sekisho"))
		done <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := h.Authenticate(ctx, api.SAToken(t, "payments", "b", "sekisho"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a review beyond the bound: %v, want ErrUnavailable", err)
	}
	if n := api.Reviews(); n != 2 {
		t.Fatalf("%d reviews reached the API server, want 2 (one slot)", n)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestKubeAdvertisedJWKS: an API server that names its JWKS by another
// address (its advertised one) is asked for its keys at api_server, with
// sekisho's token; a JWKS elsewhere is fetched where discovery says.
func TestKubeAdvertisedJWKS(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	api.SetJWKSURI("https://192.0.2.10:6443/openid/v1/jwks") // unreachable
	h := newKubeHarness(t, kubeConfig(api, false))
	h.mustRefreshOK(t)
	if _, err := h.Authenticate(context.Background(), api.SAToken(t, "payments", "api", "sekisho")); err != nil {
		t.Fatalf("token: %v", err)
	}

	api2 := jwttest.NewKubeAPIServer(t)
	api2.SetJWKSURI("https://192.0.2.10:6443/keys")
	// The timeout ends the fetch from the unreachable address; it also
	// bounds discovery on loopback, so it leaves room for a loaded machine.
	h2 := newHarness(t, []IssuerConfig{kubeConfig(api2, false)}, Options{HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err := h2.nextRefresh(t); err == nil || !strings.Contains(err.Error(), "192.0.2.10") {
		t.Fatalf("refresh: %v, want a fetch from the advertised address", err)
	}
}

// TestKubeClusterCAOnlyForAPIServer: the cluster CA is trusted for the API
// server only; a JWKS on another host is verified with the system roots,
// or with the entry's own ca_file.
func TestKubeClusterCAOnlyForAPIServer(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	// httptest TLS servers share one certificate: the cluster CA file
	// would verify this one too, if it were used for it.
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no keys here", http.StatusNotFound)
	}))
	t.Cleanup(other.Close)
	jwksElsewhere := func(c *IssuerConfig) { c.JWKSURL = other.URL + "/keys" }

	h := newKubeHarness(t, kubeConfig(api, false, jwksElsewhere))
	if err := h.nextRefresh(t); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("JWKS on another host with the cluster CA: %v, want a certificate error", err)
	}
	h = newKubeHarness(t, kubeConfig(api, false, jwksElsewhere, func(c *IssuerConfig) { c.CAFile = api.CAFile }))
	if err := h.nextRefresh(t); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("JWKS on another host with ca_file: %v, want the server's 404", err)
	}
}

// TestKubeReviewTTL: an accepted token is asked about again after
// cache_ttl, a refused one after reviewFailTTL.
func TestKubeReviewTTL(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	h := newKubeHarness(t, kubeConfig(api, true, func(c *IssuerConfig) { c.Kubernetes.CacheTTL = 30 * time.Second }))
	ctx := context.Background()
	start := h.clock.now()
	good := api.SAToken(t, "payments", "api", "sekisho")
	forged := jwttest.Sign(t, jwttest.NewKey(t, "sa-key-1", "RS256"), api.SAClaims(time.Now(), "payments", "api", "sekisho"))
	ask := func(at time.Duration, wantReviews int) {
		t.Helper()
		h.clock.set(start.Add(at))
		if _, err := h.Authenticate(ctx, good); err != nil {
			t.Fatalf("at +%s: %v", at, err)
		}
		_, _ = h.Authenticate(ctx, forged)
		if n := api.Reviews(); n != wantReviews {
			t.Fatalf("at +%s: %d reviews, want %d", at, n, wantReviews)
		}
	}
	ask(0, 2)
	ask(9*time.Second, 2)
	ask(11*time.Second, 3) // the refusal is forgotten
	ask(31*time.Second, 5) // both: the acceptance too, and the refusal of +11s
	ask(35*time.Second, 5)
}

// TestKubeJWKSMediaType: kube-apiserver serves its keys only as
// application/jwk-set+json and answers 406 to a request that accepts
// application/json alone (the stand-in does the same); sekisho's key
// requests accept both, so the keys load from the API server as from any
// other issuer.
func TestKubeJWKSMediaType(t *testing.T) {
	api := jwttest.NewKubeAPIServer(t)
	for _, tt := range []struct {
		accept string
		want   int
	}{
		{"application/json", http.StatusNotAcceptable},
		{jwksAccept, http.StatusOK},
	} {
		tok, err := os.ReadFile(api.TokenFile)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/openid/v1/jwks", nil)
		req.Header.Set("Accept", tt.accept)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := api.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Accept %q: status %d, want %d", tt.accept, resp.StatusCode, tt.want)
		}
	}
	h := newKubeHarness(t, kubeConfig(api, false))
	h.mustRefreshOK(t)
	if _, err := h.Authenticate(context.Background(), api.SAToken(t, "payments", "api", "sekisho")); err != nil {
		t.Fatalf("token: %v", err)
	}
}

// TestKubeAPIServerRefusesSekisho: when the API server refuses sekisho
// itself, the error says which fix applies: 401 is sekisho's own token
// (token_file) not accepted, which no RBAC binding mends; 403 is the
// missing RBAC, named. Neither shows a token.
func TestKubeAPIServerRefusesSekisho(t *testing.T) {
	for _, mode := range kubeModes {
		for _, tt := range []struct {
			name      string
			forbidden bool
			want      string
		}{
			{"own token refused", false, "did not accept sekisho's own token in kubernetes.token_file"},
			{"no RBAC", true, map[bool]string{false: "needs the system:service-account-issuer-discovery ClusterRole", true: "needs create on tokenreviews"}[mode.review]},
		} {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				api := jwttest.NewKubeAPIServer(t)
				api.SetForbidden(tt.forbidden)
				if !tt.forbidden {
					if err := os.WriteFile(api.TokenFile, []byte("expired-reader"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				h := newKubeHarness(t, kubeConfig(api, mode.review))
				var err error
				if mode.review {
					_, err = h.Authenticate(context.Background(), api.SAToken(t, "payments", "api", "sekisho"))
					if !errors.Is(err, ErrUnavailable) {
						t.Fatalf("error %v, want ErrUnavailable", err)
					}
				} else {
					err = h.nextRefresh(t)
				}
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want it to say %q", err, tt.want)
				}
				if strings.Contains(err.Error(), api.ReaderToken) || strings.Contains(err.Error(), "expired-reader") {
					t.Errorf("the error shows a token: %v", err)
				}
			})
		}
	}
}
