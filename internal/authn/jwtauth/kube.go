package jwtauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/cache"
	"github.com/sekisho/sekisho/internal/identity"
)

// In-cluster defaults of a Kubernetes issuer: what every pod has mounted
// and the name the API server is reached by.
const (
	DefaultKubernetesIssuer    = "https://kubernetes.default.svc.cluster.local"
	DefaultKubernetesAPIServer = "https://kubernetes.default.svc"
	DefaultKubernetesCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	DefaultKubernetesTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// KubernetesConfig makes a `jwt:` entry accept the cluster's service-account
// tokens, so that workloads can call routes and the decision service with
// the token their pod already has. The keys are found through the API
// server (its discovery document and JWKS), or, with TokenReview, every
// token is sent to the API server to check, for clusters that do not serve
// discovery. Every field has an in-cluster default.
type KubernetesConfig struct {
	// APIServer is the API server's URL; default https://kubernetes.default.svc.
	APIServer string `yaml:"api_server"`
	// CAFile is the cluster CA bundle the API server is verified with;
	// default the pod's service-account ca.crt.
	CAFile string `yaml:"ca_file"`
	// TokenFile is sekisho's own token, sent to the API server as bearer;
	// it is read again for every request because the kubelet rotates it.
	// Default the pod's service-account token.
	TokenFile string `yaml:"token_file"`
	// TokenReview checks each token with the API server's TokenReview API
	// instead of verifying its signature with the cluster's JWKS. It also
	// notices a deleted pod or service account before the token expires,
	// at the price of a call to the API server per token (cached).
	TokenReview bool `yaml:"token_review"`
	// CacheSize bounds the TokenReview answers kept; default 10000.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL is how long an accepted token is not asked about again
	// (never beyond its exp); default 2m. A refused token is remembered
	// for reviewFailTTL.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// kubeIssuer is the compiled Kubernetes part of an issuer.
type kubeIssuer struct {
	apiServer *url.URL
	tokenFile string
	rootCAs   *x509.CertPool
	review    *reviewer // nil: keys from discovery and JWKS
}

// compileKube checks the kubernetes settings of c, fills their defaults,
// and reads the cluster CA. Errors start with the key they are about.
func compileKube(c IssuerConfig) (*kubeIssuer, error) {
	k := *c.Kubernetes
	outside := " (the in-cluster default; outside a pod, set it)"
	caHint, tokenHint := "", ""
	if k.CAFile == "" {
		caHint = outside
	}
	if k.TokenFile == "" {
		tokenHint = outside
	}
	if k.APIServer == "" {
		k.APIServer = DefaultKubernetesAPIServer
	}
	if k.CAFile == "" {
		k.CAFile = DefaultKubernetesCAFile
	}
	if k.TokenFile == "" {
		k.TokenFile = DefaultKubernetesTokenFile
	}
	if err := CheckFetchURL(k.APIServer); err != nil {
		return nil, fmt.Errorf("kubernetes.api_server: %w", err)
	}
	u, _ := url.Parse(k.APIServer)
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("kubernetes.api_server: %q must be a scheme and host only (https://host:port)", k.APIServer)
	}
	u.Path = ""
	ki := &kubeIssuer{apiServer: u, tokenFile: k.TokenFile}
	var err error
	if ki.rootCAs, err = loadCAFile(k.CAFile); err != nil {
		return nil, fmt.Errorf("kubernetes.ca_file: %w%s", err, caHint)
	}
	if _, err := readBearer(k.TokenFile); err != nil {
		return nil, fmt.Errorf("kubernetes.token_file: %w%s", err, tokenHint)
	}
	if c.JWKSURL != "" {
		if k.TokenReview {
			return nil, errors.New("jwks_url: not used with kubernetes.token_review (the API server checks the signature)")
		}
		if err := CheckFetchURL(c.JWKSURL); err != nil {
			return nil, fmt.Errorf("jwks_url: %w", err)
		}
	}
	if k.CacheSize < 0 {
		return nil, fmt.Errorf("kubernetes.cache_size: %d must not be negative", k.CacheSize)
	}
	if k.CacheTTL < 0 {
		return nil, fmt.Errorf("kubernetes.cache_ttl: %s must not be negative", k.CacheTTL)
	}
	if !k.TokenReview {
		if k.CacheSize != 0 || k.CacheTTL != 0 {
			return nil, errors.New("kubernetes.cache_size: the cache keys apply only with token_review: true")
		}
		return ki, nil
	}
	// The API server names the user: settings that would pick the username
	// or groups from claims have nothing to act on.
	switch {
	case c.Claims.Username != "":
		return nil, errors.New("claims.username: not used with kubernetes.token_review (the API server names the user)")
	case c.Claims.Groups != "":
		return nil, errors.New("claims.groups: not used with kubernetes.token_review (the API server names the groups)")
	case c.Mappings.Username != "":
		return nil, errors.New("mappings.username: not used with kubernetes.token_review (the API server names the user)")
	case c.Mappings.Groups != "":
		return nil, errors.New("mappings.groups: not used with kubernetes.token_review (the API server names the groups)")
	}
	ki.review = &reviewer{
		url:       u.JoinPath(tokenReviewPath).String(),
		audiences: c.Audiences,
		cache: newTokenCache(cache.Limits{
			MaxEntries: orDefault(k.CacheSize, defaultReviewCacheSize),
			MaxBytes:   DefaultCacheBytes,
		}, time.Now, nil), // Authenticate counts the misses of the token cache in front
		ttl:   orDefault(k.CacheTTL, defaultReviewTTL),
		slots: make(chan struct{}, maxReviewsInFlight),
	}
	return ki, nil
}

// readBearer reads a token file. Errors name the file, never its content.
func readBearer(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return tok, nil
}

// apiServerTransport sends requests for the API server's host through api
// (which trusts the cluster CA), with the token in file as bearer, read
// for every request because the kubelet rotates it; requests for other
// hosts (a managed cluster's public JWKS) go through other, with neither
// the cluster CA nor the pod's credential.
type apiServerTransport struct {
	api, other http.RoundTripper
	host       string
	file       string
}

func (b *apiServerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != b.host {
		return b.other.RoundTrip(req)
	}
	tok, err := readBearer(b.file)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("kubernetes token_file: %w", err)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+tok)
	return b.api.RoundTrip(req)
}

// issuerClient is the client an issuer fetches with: base, or a copy that
// trusts the issuer's CA and, for Kubernetes, the cluster CA and sekisho's
// token for the API server only.
func issuerClient(base *http.Client, iss *issuer) *http.Client {
	if iss.rootCAs == nil && iss.kube == nil {
		return base
	}
	withRoots := func(pool *x509.CertPool) *http.Transport {
		var tr *http.Transport
		if t, ok := base.Transport.(*http.Transport); ok {
			tr = t.Clone()
		} else {
			tr = http.DefaultTransport.(*http.Transport).Clone()
		}
		if pool != nil {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		return tr
	}
	c := *base
	c.Transport = withRoots(iss.rootCAs)
	if iss.kube != nil {
		c.Transport = &apiServerTransport{
			api:   withRoots(iss.kube.rootCAs),
			other: c.Transport,
			host:  iss.kube.apiServer.Host,
			file:  iss.kube.tokenFile,
		}
	}
	return &c
}

// discoverKube reads jwks_uri from the API server's discovery document. The
// document is fetched from the API server, not from the issuer URL (which
// in-cluster names no reachable host), so go-oidc's discovery cannot be
// used; the document must still name the configured issuer.
func (a *Authenticator) discoverKube(ctx context.Context, iss *issuer) (string, error) {
	u := iss.kube.apiServer.JoinPath("/.well-known/openid-configuration").String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("kubernetes discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := iss.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("kubernetes discovery: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return "", fmt.Errorf("kubernetes discovery %s: status %s (%s)", u, resp.Status, ownTokenRefused)
	case resp.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("kubernetes discovery %s: status %s (sekisho's service account needs the system:service-account-issuer-discovery ClusterRole)", u, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("kubernetes discovery %s: status %s", u, resp.Status)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&doc); err != nil {
		return "", fmt.Errorf("kubernetes discovery %s: decode: %w", u, err)
	}
	if doc.Issuer != iss.name {
		return "", fmt.Errorf("kubernetes discovery: the API server's service-account issuer is %q, not %q: set issuer: %q on this jwt entry", doc.Issuer, iss.name, doc.Issuer)
	}
	if err := CheckFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("kubernetes discovery: jwks_uri: %w", err)
	}
	// The API server names its own JWKS by the address it advertises
	// (https://<node-ip>:6443/openid/v1/jwks), where sekisho's token is
	// not sent and an anonymous request is refused. The same keys are at
	// that path on api_server, which was just verified with the cluster CA.
	if ju, _ := url.Parse(doc.JWKSURI); ju.Host != iss.kube.apiServer.Host && ju.Path == apiServerJWKSPath {
		own := iss.kube.apiServer.JoinPath(apiServerJWKSPath).String()
		a.log.Info("kubernetes: fetching the API server's keys through api_server", "issuer", iss.name, "jwks_uri", doc.JWKSURI, "url", own)
		return own, nil
	}
	return doc.JWKSURI, nil
}

// ownTokenRefused explains a 401 from the API server: it is sekisho's own
// token (token_file) it did not accept, whatever RBAC grants.
const ownTokenRefused = "the API server did not accept sekisho's own token in kubernetes.token_file: expired, its service account deleted, or issued for another audience than the API server's"

// apiServerJWKSPath is where an API server serves its service-account keys.
const apiServerJWKSPath = "/openid/v1/jwks"

// serviceAccountPrefix starts every service account's username.
const serviceAccountPrefix = "system:serviceaccount:"

// kubeClaim is the "kubernetes.io" claim of a bound service-account token.
type kubeClaim struct {
	Namespace      string  `json:"namespace"`
	ServiceAccount kubeRef `json:"serviceaccount"`
	Pod            kubeRef `json:"pod"`
	Node           kubeRef `json:"node"`
}

type kubeRef struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

var errKubeClaims = invalid("not a Kubernetes service-account token (kubernetes.io claim missing or not matching sub)")

// withKube completes the identity of a verified service-account token as
// Kubernetes does: the groups system:serviceaccounts and
// system:serviceaccounts:<namespace>, kind service, and the workload from
// the "kubernetes.io" claim. The claim must agree with the subject.
func withKube(id *identity.Identity, claims map[string]any, groupPrefix string) error {
	raw, err := json.Marshal(claims["kubernetes.io"])
	if err != nil {
		return errKubeClaims
	}
	var kc kubeClaim
	if json.Unmarshal(raw, &kc) != nil {
		return errKubeClaims
	}
	k := &identity.Kube{
		Namespace:         kc.Namespace,
		ServiceAccount:    kc.ServiceAccount.Name,
		ServiceAccountUID: kc.ServiceAccount.UID,
		Pod:               kc.Pod.Name,
		PodUID:            kc.Pod.UID,
		Node:              kc.Node.Name,
		NodeUID:           kc.Node.UID,
	}
	if !validKube(k) || id.Subject != serviceAccountPrefix+k.Namespace+":"+k.ServiceAccount {
		return errKubeClaims
	}
	addKube(id, k, groupPrefix)
	return nil
}

// addKube sets the Kubernetes parts of a service account's identity.
func addKube(id *identity.Identity, k *identity.Kube, groupPrefix string) {
	id.Kube = k
	id.Kind = identity.KindService
	id.Groups = append(id.Groups,
		groupPrefix+"system:serviceaccounts",
		groupPrefix+"system:serviceaccounts:"+k.Namespace)
}

// validKube checks that names are Kubernetes object names (lower-case
// letters, digits, '-' and '.') and that uids hold no control characters:
// they reach policy, logs and group names.
func validKube(k *identity.Kube) bool {
	if k.Namespace == "" || k.ServiceAccount == "" {
		return false
	}
	for _, name := range []string{k.Namespace, k.ServiceAccount, k.Pod, k.Node} {
		if len(name) > 253 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
			return false
		}
	}
	for _, uid := range []string{k.ServiceAccountUID, k.PodUID, k.NodeUID} {
		if len(uid) > 253 || strings.ContainsFunc(uid, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			return false
		}
	}
	return true
}

// splitServiceAccount reads "system:serviceaccount:<ns>:<name>".
func splitServiceAccount(username string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(username, serviceAccountPrefix)
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != "" && !strings.Contains(name, ":")
}
