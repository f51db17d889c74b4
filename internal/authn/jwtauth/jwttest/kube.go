package jwttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authv1 "k8s.io/api/authentication/v1"
)

// KubeIssuer is the service-account issuer name an API server has by
// default, and the one KubeAPIServer uses unless told otherwise.
const KubeIssuer = "https://kubernetes.default.svc.cluster.local"

// KubeAPIServer is the part of a Kubernetes API server that service-account
// authentication talks to, on TLS with its own CA: the service-account
// issuer discovery document and JWKS, and the TokenReview API, each
// requiring the reader's bearer token (written to TokenFile) as a real
// cluster does for a pod. It signs service-account tokens like the
// cluster's token controller (SAToken).
type KubeAPIServer struct {
	// URL is the API server's address (https://127.0.0.1:port).
	URL string
	// CAFile and TokenFile are what a pod has mounted: the cluster CA and
	// the reader's own token.
	CAFile, TokenFile string
	// ReaderToken is TokenFile's content.
	ReaderToken string

	key *Key
	srv *httptest.Server

	mu           sync.Mutex
	issuer       string // in tokens and in discovery
	discoveryIss string // issuer named in discovery; default issuer
	jwksURI      string // jwks_uri named in discovery; default on URL
	down         bool
	forbidden    bool
	seenAuth     []string      // Authorization headers seen, per path
	gate         chan struct{} // reviews wait for it to close; nil: no hold
	entered      chan struct{} // one value per held review

	reviews atomic.Int32
}

// NewKubeAPIServer starts the server, with CAFile and TokenFile in a
// temporary directory. It is closed when the test ends.
func NewKubeAPIServer(t testing.TB) *KubeAPIServer {
	t.Helper()
	k := &KubeAPIServer{key: NewKey(t, "sa-key-1", jose.RS256), issuer: KubeIssuer}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", k.authed(k.serveDiscovery))
	mux.HandleFunc("GET /openid/v1/jwks", k.authed(k.serveJWKS))
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", k.authed(k.serveReview))
	k.srv = httptest.NewTLSServer(mux)
	t.Cleanup(k.srv.Close)
	k.URL = k.srv.URL

	dir := t.TempDir()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	k.ReaderToken = "reader-token-" + hex.EncodeToString(b)
	k.TokenFile = filepath.Join(dir, "token")
	k.CAFile = filepath.Join(dir, "ca.crt")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})
	if err := os.WriteFile(k.TokenFile, []byte(k.ReaderToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.CAFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// SetIssuer changes the issuer the server signs tokens with and names in
// discovery.
func (k *KubeAPIServer) SetIssuer(iss string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.issuer = iss
}

// SetDiscoveryIssuer makes discovery name iss while tokens keep the
// issuer ("" restores it), to test a mismatch.
func (k *KubeAPIServer) SetDiscoveryIssuer(iss string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.discoveryIss = iss
}

// SetJWKSURI makes discovery name uri as jwks_uri ("" restores URL +
// /openid/v1/jwks), as an API server advertising another address does.
func (k *KubeAPIServer) SetJWKSURI(uri string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.jwksURI = uri
}

// SetForbidden makes every endpoint answer 403 to the reader (or serve
// again), as RBAC does when its service account has no binding.
func (k *KubeAPIServer) SetForbidden(forbidden bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forbidden = forbidden
}

// SetDown makes every endpoint answer 503 (or serve again).
func (k *KubeAPIServer) SetDown(down bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down = down
}

// HoldReviews makes TokenReview requests wait until release (also run when
// the test ends); entered receives a value as each one arrives, so a test
// knows how many reviews are open at once.
func (k *KubeAPIServer) HoldReviews(t testing.TB) (entered <-chan struct{}, release func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	gate, in := make(chan struct{}), make(chan struct{}, 1000)
	k.gate, k.entered = gate, in
	var once sync.Once
	release = func() {
		once.Do(func() {
			k.mu.Lock()
			k.gate = nil
			k.mu.Unlock()
			close(gate)
		})
	}
	t.Cleanup(release)
	return in, release
}

// Reviews counts the TokenReviews answered, refusals included.
func (k *KubeAPIServer) Reviews() int { return int(k.reviews.Load()) }

// SeenAuthorization returns the Authorization headers of the requests so
// far, each as "path: header".
func (k *KubeAPIServer) SeenAuthorization() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.seenAuth)
}

// SAClaims returns the claims of a pod-bound token of service account
// ns/name for audience aud, valid for an hour from now, as the cluster
// mints them; kv overrides claims as in Issuer.Claims.
func (k *KubeAPIServer) SAClaims(now time.Time, ns, name, aud string, kv ...any) map[string]any {
	k.mu.Lock()
	iss := k.issuer
	k.mu.Unlock()
	c := map[string]any{
		"iss": iss,
		"aud": []string{aud},
		"sub": "system:serviceaccount:" + ns + ":" + name,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]any{"name": name, "uid": "sa-uid-" + name},
			"pod":            map[string]any{"name": name + "-7d4b9", "uid": "pod-uid-" + name},
			"node":           map[string]any{"name": "node-1", "uid": "node-uid-1"},
		},
	}
	for n := 0; n < len(kv); n += 2 {
		if kv[n+1] == nil {
			delete(c, kv[n].(string))
		} else {
			c[kv[n].(string)] = kv[n+1]
		}
	}
	return c
}

// SAToken signs SAClaims(time.Now(), ...) with the cluster's key.
func (k *KubeAPIServer) SAToken(t testing.TB, ns, name, aud string, kv ...any) string {
	t.Helper()
	return Sign(t, k.key, k.SAClaims(time.Now(), ns, name, aud, kv...))
}

// authed refuses requests without the reader's token, as the API server
// refuses a caller it cannot authenticate, and records what was sent.
func (k *KubeAPIServer) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.seenAuth = append(k.seenAuth, r.URL.Path+": "+r.Header.Get("Authorization"))
		down := k.down
		k.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+k.ReaderToken {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		k.mu.Lock()
		forbidden := k.forbidden
		k.mu.Unlock()
		if forbidden {
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func (k *KubeAPIServer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	k.mu.Lock()
	iss := k.issuer
	if k.discoveryIss != "" {
		iss = k.discoveryIss
	}
	jwksURI := k.jwksURI
	k.mu.Unlock()
	if jwksURI == "" {
		jwksURI = k.URL + "/openid/v1/jwks"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              jwksURI,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// serveJWKS serves the keys as kube-apiserver does: as
// application/jwk-set+json, refusing with 406 a request whose Accept names
// other types only (application/json, say), as go-restful's Produces does.
func (k *KubeAPIServer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if !acceptsJWKS(r.Header.Get("Accept")) {
		http.Error(w, "406: Not Acceptable", http.StatusNotAcceptable)
		return
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.key.Private.Public(), KeyID: k.key.Kid, Algorithm: string(k.key.Alg), Use: "sig"}}}
	w.Header().Set("Content-Type", JWKSContentType)
	_ = json.NewEncoder(w).Encode(set)
}

// serveReview answers a TokenReview as the API server's service-account
// authenticator does: signature, issuer, expiry and audiences checked,
// the user and its pod binding returned.
func (k *KubeAPIServer) serveReview(w http.ResponseWriter, r *http.Request) {
	k.reviews.Add(1)
	k.mu.Lock()
	gate, entered := k.gate, k.entered
	k.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	var tr authv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&tr); err != nil || tr.Kind != "TokenReview" || tr.APIVersion != "authentication.k8s.io/v1" {
		http.Error(w, "bad TokenReview", http.StatusBadRequest)
		return
	}
	tr.Status = k.review(tr.Spec)
	tr.Spec.Token = "" // the API server does not echo it either
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(&tr)
}

func (k *KubeAPIServer) review(spec authv1.TokenReviewSpec) authv1.TokenReviewStatus {
	refuse := authv1.TokenReviewStatus{Error: "invalid bearer token"}
	tok, err := jwt.ParseSigned(spec.Token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return refuse
	}
	var std jwt.Claims
	type ref struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	}
	var priv struct {
		Kube struct {
			Namespace      string `json:"namespace"`
			ServiceAccount ref    `json:"serviceaccount"`
			Pod            ref    `json:"pod"`
			Node           ref    `json:"node"`
		} `json:"kubernetes.io"`
	}
	if tok.Claims(k.key.Private.Public(), &std, &priv) != nil {
		return refuse
	}
	k.mu.Lock()
	iss := k.issuer
	k.mu.Unlock()
	if std.ValidateWithLeeway(jwt.Expected{Issuer: iss, Time: time.Now()}, 0) != nil {
		return refuse
	}
	var auds []string
	for _, a := range spec.Audiences {
		if slices.Contains(std.Audience, a) {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		return authv1.TokenReviewStatus{Error: "token audiences are invalid"}
	}
	kc := priv.Kube
	return authv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     auds,
		User: authv1.UserInfo{
			Username: std.Subject,
			UID:      kc.ServiceAccount.UID,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + kc.Namespace, "system:authenticated"},
			Extra: map[string]authv1.ExtraValue{
				"authentication.kubernetes.io/pod-name":  {kc.Pod.Name},
				"authentication.kubernetes.io/pod-uid":   {kc.Pod.UID},
				"authentication.kubernetes.io/node-name": {kc.Node.Name},
				"authentication.kubernetes.io/node-uid":  {kc.Node.UID},
			},
		},
	}
}

// JWKSContentType is the media type of a JWK Set (RFC 7517), the only one
// kube-apiserver serves its keys as.
const JWKSContentType = "application/jwk-set+json"

// acceptsJWKS is go-restful's test of an Accept header against a route
// that produces JWKSContentType: empty, */* or the type itself in the
// list, parameters ignored.
func acceptsJWKS(accept string) bool {
	if accept == "" {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mime, _, _ := strings.Cut(part, ";")
		if mime = strings.TrimSpace(mime); mime == "*/*" || mime == JWKSContentType {
			return true
		}
	}
	return false
}

// Client is an HTTP client that trusts the server's certificate, for tests
// that call the API server directly.
func (k *KubeAPIServer) Client() *http.Client { return k.srv.Client() }
