package gateway

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
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/decision"
	"github.com/sekisho/sekisho/internal/kubetest"
)

// kube is one real API server (etcd and kube-apiserver) for the tests of
// service-account tokens below; each test uses names of its own in it.
var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

// The objects the tests create. sekisho/sekisho is sekisho's own service
// account, given exactly the RBAC docs/kubernetes.md shows; sekisho/unbound
// is one without it.
const (
	sekishoNS      = "sekisho"
	sekishoSA      = "sekisho"
	unboundSA      = "unbound"
	discoveryRole  = "system:service-account-issuer-discovery"
	apiServerJWKS  = "/openid/v1/jwks"
	rbacDocsHeader = "### RBAC for sekisho's service account"
)

// kubeReady is the cluster once prepared for sekisho (kubeCluster).
var kubeReady struct {
	once sync.Once
	err  error
}

// kubeCluster returns the shared cluster prepared as a cluster operator
// following docs/kubernetes.md would: sekisho's service account exists and
// has the RBAC the docs show, applied from the docs' own YAML. The binding
// kube-apiserver creates by default, of the issuer-discovery ClusterRole to
// every service account, is deleted first, so that the docs' binding is
// what lets sekisho read discovery (as in clusters that do not bind it),
// and a service account without it is refused.
func kubeCluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	c := kube.Cluster(t)
	kubeReady.once.Do(func() { kubeReady.err = prepareCluster(t.Context(), c) })
	if kubeReady.err != nil {
		t.Fatal(kubeReady.err)
	}
	return c
}

func prepareCluster(ctx context.Context, c *kubetest.Cluster) error {
	cs := c.Client()
	for _, sa := range []string{sekishoSA, unboundSA} {
		if err := c.EnsureServiceAccount(ctx, sekishoNS, sa); err != nil {
			return err
		}
	}
	err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, discoveryRole, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the default discovery binding: %w", err)
	}
	objs, err := docsRBAC()
	if err != nil {
		return err
	}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("apply the RBAC of docs/kubernetes.md: %w", err)
		}
	}
	// RBAC takes effect when the API server's informers see the change:
	// wait until sekisho's account may read discovery and review tokens and
	// the unbound one may not.
	sekisho, err := c.TokenFor(ctx, sekishoNS, sekishoSA, nil, 0)
	if err != nil {
		return err
	}
	unbound, err := c.TokenFor(ctx, sekishoNS, unboundSA, nil, 0)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		token, method, path string
		want                int
	}{
		{sekisho, http.MethodGet, "/.well-known/openid-configuration", http.StatusOK},
		{sekisho, http.MethodGet, apiServerJWKS, http.StatusOK},
		{sekisho, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", http.StatusCreated},
		{unbound, http.MethodGet, "/.well-known/openid-configuration", http.StatusForbidden},
		{unbound, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", http.StatusForbidden},
	} {
		if err := waitStatus(ctx, c, w.token, w.method, w.path, w.want); err != nil {
			return fmt.Errorf("the RBAC of docs/kubernetes.md: %w", err)
		}
	}
	return nil
}

// docsRBAC reads the ClusterRoles and ClusterRoleBindings of the YAML
// blocks under the docs' RBAC heading.
func docsRBAC() ([]any, error) {
	md, err := os.ReadFile(filepath.Join("..", "..", "docs", "kubernetes.md"))
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(md), rbacDocsHeader)
	if !ok {
		return nil, fmt.Errorf("docs/kubernetes.md has no %q", rbacDocsHeader)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	var objs []any
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for doc := range strings.SplitSeq(block[1], "\n---\n") {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				return nil, fmt.Errorf("docs/kubernetes.md RBAC: %w", err)
			}
			var obj any
			switch meta.Kind {
			case "ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			default:
				return nil, fmt.Errorf("docs/kubernetes.md RBAC: unexpected kind %q", meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				return nil, fmt.Errorf("docs/kubernetes.md RBAC %s: %w", meta.Kind, err)
			}
			objs = append(objs, obj)
		}
	}
	if len(objs) < 3 {
		return nil, fmt.Errorf("docs/kubernetes.md RBAC: %d objects, want the discovery binding and the TokenReview role and binding", len(objs))
	}
	return objs, nil
}

// waitStatus polls method path with token as bearer until the API server
// answers want, for up to 10 s.
func waitStatus(ctx context.Context, c *kubetest.Cluster, token, method, path string, want int) error {
	hc, err := rest.HTTPClientFor(c.BearerConfig(token))
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := 0
	for {
		body := strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}`)
		req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if last = resp.StatusCode; last == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s: status %d, want %d", method, path, last, want)
		case <-tick.C: // RBAC changes reach the authorizer through a watch
		}
	}
}

// tokenFile writes a fresh token of sekisho's namespace's service account
// sa for the API server (what a pod has mounted) and returns its path.
func tokenFile(t *testing.T, c *kubetest.Cluster, sa string) string {
	t.Helper()
	tok, err := c.TokenFor(t.Context(), sekishoNS, sa, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubeConfig is a gateway accepting the cluster's service-account tokens
// for audience sekisho, through apiServer (the cluster's URL unless a test
// names it otherwise) with sekisho's token in token; routes: /pay for the
// payments namespace, /sa for the service account payments/api only, /pod
// for tokens bound to the pod checkout-1 on node-1 (whose uid is podUID),
// forwarded to upstream.
func kubeConfig(c *kubetest.Cluster, apiServer, token string, review bool, podUID, upstream string) string {
	return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - kubernetes: {api_server: %s, ca_file: %s, token_file: %s, token_review: %t}
    issuer: %s
    audiences: [sekisho]
routes:
  - name: payments-api
    match: {path_prefix: /pay}
    to: builtin:echo
    allow: [{when: "identity.kube.namespace == 'payments'"}]
  - name: one-account
    match: {path_prefix: /sa}
    to: builtin:echo
    allow: [{service_accounts: [payments/api]}]
  - name: checkout-pod
    match: {path_prefix: /pod}
    to: %s
    allow:
      - when: >-
          identity.kube.pod == 'checkout-1' && identity.kube.pod_uid == '%s' &&
          identity.kube.node == 'node-1' && identity.kube.node_uid != '' &&
          identity.kube.service_account == 'checkout' && identity.kube.service_account_uid != '' &&
          identity.kind == 'service' && 'system:serviceaccounts:payments' in identity.groups
`, apiServer, c.CAFile, token, review, c.ServiceAccountIssuer, upstream, podUID)
}

// kubeFixture is newFixture whose log is shown when the test fails: what
// sekisho said about the API server is the first thing to read then.
func kubeFixture(t *testing.T, src string) *fixture {
	t.Helper()
	f := newFixture(t, src)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("sekisho's log:\n" + f.logs.String())
		}
	})
	return f
}

// decisionOn serves the decision service on f's snapshot and returns its
// URL, so that its answers can be compared with the gateway's.
func decisionOn(t *testing.T, f *fixture) string {
	t.Helper()
	dec, err := decision.New(decision.Config{Listen: "127.0.0.1:0"}, f.gw.Snapshot, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dec.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// forwardAuth asks the decision service at base, as a forward-auth proxy
// would, about GET https://gw.test/path with token as bearer, and returns
// the status it answers.
func forwardAuth(t *testing.T, base, path, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/forward-auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https",
		"X-Forwarded-Host": "gw.test", "X-Forwarded-Uri": path, "Authorization": "Bearer " + token} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// saToken mints a token of ns/name for audiences with the TokenRequest
// API, bound to pod when it is not nil, creating the service account.
func saToken(t *testing.T, c *kubetest.Cluster, ns, name string, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	if err := c.EnsureServiceAccount(t.Context(), ns, name); err != nil {
		t.Fatal(err)
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	resp, err := c.Client().CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return resp.Status.Token
}

// checkoutPod creates payments/checkout-1 on node-1 (both only stored:
// nothing runs them), for tokens bound to a pod.
func checkoutPod(t *testing.T, c *kubetest.Cluster) *corev1.Pod {
	t.Helper()
	ctx, cs := t.Context(), c.Client()
	if err := c.EnsureServiceAccount(ctx, "payments", "checkout"); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	off := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-1", Namespace: "payments"},
		Spec: corev1.PodSpec{ServiceAccountName: "checkout", NodeName: "node-1", AutomountServiceAccountToken: &off,
			Containers: []corev1.Container{{Name: "app", Image: "example/checkout"}}},
	}
	created, err := cs.CoreV1().Pods("payments").Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) { // an earlier run (-count)
		created, err = cs.CoreV1().Pods("payments").Get(ctx, pod.Name, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// tokenParts splits a JWT and decodes its header and payload.
func tokenParts(t *testing.T, token string) (header, claims map[string]any, parts []string) {
	t.Helper()
	parts = strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err == nil {
			err = json.Unmarshal(b, dst)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return header, claims, parts
}

// altered is token with its claims changed by edit and its signature kept:
// what someone who holds a token and wants another identity could make.
func altered(t *testing.T, token string, edit func(claims map[string]any)) string {
	t.Helper()
	_, claims, parts := tokenParts(t, token)
	edit(claims)
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

// resigned is token with its claims changed by edit and signed again with
// the cluster's own service-account key (read from its directory), under
// the same key ID: a token the API server could have issued. The
// TokenRequest API issues none that lives under 10 minutes, so an expired
// token is made this way.
func resigned(t *testing.T, c *kubetest.Cluster, token string, edit func(claims map[string]any)) string {
	t.Helper()
	header, claims, _ := tokenParts(t, token)
	edit(claims)
	pemKey, err := os.ReadFile(filepath.Join(c.Dir, "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemKey)
	if block == nil {
		t.Fatal("sa.key holds no PEM block")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := header["kid"].(string)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deleteServiceAccount deletes ns/name and waits until the API server's
// token authenticator no longer finds it (it reads service accounts
// through an informer), without reviewing token itself for audience
// sekisho: the API server caches a successful authentication for 10 s, by
// token and audiences, so every probe asks for a new audience list.
func deleteServiceAccount(t *testing.T, c *kubetest.Cluster, ns, name, token string) {
	t.Helper()
	ctx, cs := t.Context(), c.Client()
	if err := cs.CoreV1().ServiceAccounts(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"sekisho", fmt.Sprintf("probe-%d", i)}}}
		got, err := cs.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Status.Authenticated {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server still authenticates a token of the deleted %s/%s", ns, name)
		}
		time.Sleep(20 * time.Millisecond) // poll an external process
	}
}

// TestServiceAccountTokensAgainstKubernetes: tokens minted by a real API
// server's TokenRequest API for audience sekisho, checked by sekisho both
// ways (the cluster's keys from discovery, and TokenReview), call a route
// only the payments namespace may call: its service account is let in,
// another namespace's is 403, a token for another audience, an expired one
// and an altered one are 401. A token of a deleted service account is
// still accepted with the keys (the documented limit: nothing tells
// sekisho before the token expires) and refused with TokenReview.
func TestServiceAccountTokensAgainstKubernetes(t *testing.T) {
	c := kubeCluster(t)
	pod := checkoutPod(t, c)
	up := newUpstream(t)
	discovery := kubeFixture(t, kubeConfig(c, c.URL, tokenFile(t, c, sekishoSA), false, string(pod.UID), up.srv.URL))
	review := kubeFixture(t, kubeConfig(c, c.URL, tokenFile(t, c, sekishoSA), true, string(pod.UID), up.srv.URL))
	for _, f := range []*fixture{discovery, review} {
		waitJWTReady(t, f)
	}
	discoveryDec, reviewDec := decisionOn(t, discovery), decisionOn(t, review)

	payments := saToken(t, c, "payments", "api", nil, "sekisho")
	expired := resigned(t, c, payments, func(cl map[string]any) {
		past := time.Now().Add(-2 * time.Hour).Unix()
		cl["iat"], cl["nbf"], cl["exp"] = past, past, past+600
	})
	if resp, body := discovery.do(t, "GET", "/pay", bearer(resigned(t, c, payments, func(map[string]any) {}))); resp.StatusCode != 200 {
		t.Fatalf("a token signed again with the cluster's key, unchanged: %d %s (the expired case below would prove nothing)", resp.StatusCode, body)
	}
	shop := saToken(t, c, "shop", "api", nil, "sekisho")
	intoPayments := altered(t, shop, func(cl map[string]any) {
		cl["sub"] = "system:serviceaccount:payments:api"
		cl["kubernetes.io"].(map[string]any)["namespace"] = "payments"
	})
	gone := saToken(t, c, "payments", "gone", nil, "sekisho")
	if resp, body := discovery.do(t, "GET", "/pay", bearer(gone)); resp.StatusCode != 200 {
		t.Fatalf("before its service account is deleted: %d %s", resp.StatusCode, body)
	}
	deleteServiceAccount(t, c, "payments", "gone", gone)

	for _, tt := range []struct {
		name, path, token     string
		wantDiscovery, wantTR int
	}{
		{"payments service account", "/pay", payments, 200, 200},
		{"another namespace", "/pay", shop, 403, 403},
		{"another audience", "/pay", saToken(t, c, "payments", "api", nil, "vault"), 401, 401},
		{"the API server's audience", "/pay", saToken(t, c, "payments", "api", nil), 401, 401},
		// Re-signed with the cluster's key (TokenRequest issues none
		// shorter than 10 minutes); in TokenReview mode sekisho refuses
		// it without asking, as the API server would.
		{"expired, signed by the cluster", "/pay", expired, 401, 401},
		{"another namespace's token altered", "/pay", intoPayments, 401, 401},
		// The documented limit of verifying with the keys.
		{"deleted service account", "/pay", gone, 200, 401},
		{"listed service account", "/sa", payments, 200, 200},
		{"unlisted service account", "/sa", saToken(t, c, "payments", "other", nil, "sekisho"), 403, 403},
		{"bound to the pod", "/pod", saToken(t, c, "payments", "checkout", pod, "sekisho"), 200, 200},
		{"the pod's account, no pod", "/pod", saToken(t, c, "payments", "checkout", nil, "sekisho"), 403, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range []struct {
				name     string
				f        *fixture
				decision string
				want     int
			}{{"discovery", discovery, discoveryDec, tt.wantDiscovery}, {"tokenreview", review, reviewDec, tt.wantTR}} {
				resp, body := m.f.do(t, "GET", tt.path, bearer(tt.token))
				if resp.StatusCode != m.want {
					t.Errorf("%s: status %d, want %d: %s", m.name, resp.StatusCode, m.want, body)
				}
				if got := forwardAuth(t, m.decision, tt.path, tt.token); got != m.want {
					t.Errorf("%s: the decision service says %d, want %d like the gateway", m.name, got, m.want)
				}
				if tt.path == "/pod" && resp.StatusCode == 200 {
					if user := up.received(t).Get("X-Forwarded-User"); user != "system:serviceaccount:payments:checkout" {
						t.Errorf("%s: the upstream was told the user is %q", m.name, user)
					}
				}
			}
		})
	}
	for _, f := range []*fixture{discovery, review} {
		if logs := f.logs.String(); strings.Contains(logs, payments) || strings.Contains(logs, `"level":"ERROR"`) {
			t.Errorf("the log holds a token or an ERROR:\n%s", logs)
		}
	}
}

// TestSekishoRefusedByAPIServer: when the API server refuses sekisho
// itself, the log says what to fix: without the RBAC of docs/kubernetes.md
// (403 from the API server) it names the permission; with a token_file the
// API server does not accept (401: here a token for audience sekisho
// rather than the API server's) it says so, since no RBAC binding would
// help. With TokenReview a request with a service-account token is then
// 503 (the caller's token was not judged; a retry may succeed); with
// discovery the keys never load, and tokens get 401 as for any issuer
// whose keys are not available. Neither the answer nor the log holds a
// token.
func TestSekishoRefusedByAPIServer(t *testing.T) {
	c := kubeCluster(t)
	payments := saToken(t, c, "payments", "api", nil, "sekisho")
	notForAPIServer := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(notForAPIServer, []byte(saToken(t, c, sekishoNS, sekishoSA, nil, "sekisho")), 0o600); err != nil {
		t.Fatal(err)
	}
	const ownToken = "did not accept sekisho's own token in kubernetes.token_file"
	for _, tt := range []struct {
		name, tokenFile string
		review          bool
		status, why     string
	}{
		{"tokenreview, no RBAC", tokenFile(t, c, unboundSA), true, "403 Forbidden", "needs create on tokenreviews.authentication.k8s.io"},
		{"discovery, no RBAC", tokenFile(t, c, unboundSA), false, "403 Forbidden", "needs the " + discoveryRole + " ClusterRole"},
		{"tokenreview, token not for the API server", notForAPIServer, true, "401 Unauthorized", ownToken},
		{"discovery, token not for the API server", notForAPIServer, false, "401 Unauthorized", ownToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // a discovery case waits 2 s for keys that never come
			own, err := os.ReadFile(tt.tokenFile)
			if err != nil {
				t.Fatal(err)
			}
			f := kubeFixture(t, kubeConfig(c, c.URL, tt.tokenFile, tt.review, "", "http://127.0.0.1:1"))
			if !tt.review {
				waitLog(t, f, tt.why) // the keys are fetched in the background
			}
			want, says, reason := 503, "cannot be checked right now", "token review unavailable"
			if !tt.review {
				want, says, reason = 401, "credentials presented are not valid", "issuer keys not available"
			}
			resp, body := f.do(t, "GET", "/pay", bearer(payments))
			if resp.StatusCode != want || !strings.Contains(string(body), says) {
				t.Errorf("status %d, want %d saying %q: %s", resp.StatusCode, want, says, body)
			}
			checkLog(t, f, tt.status, tt.why, payments, string(own))
			checkLog(t, f, `"reason":"`, reason)
		})
	}
}

// checkLog fails t unless f's log holds every one of want and none of the
// secrets.
func checkLog(t *testing.T, f *fixture, want1, want2 string, secrets ...string) {
	t.Helper()
	logs := f.logs.String()
	for _, w := range []string{want1, want2} {
		if !strings.Contains(logs, w) {
			t.Errorf("the log does not say %q:\n%s", w, logs)
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs, strings.TrimSpace(s)) {
			t.Errorf("the log holds a token:\n%s", logs)
		}
	}
}

// waitLog waits up to 10 s for f's log to contain s.
func waitLog(t *testing.T, f *fixture, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", s, f.logs.String())
		}
		time.Sleep(10 * time.Millisecond) // the key refresh runs in the background
	}
}

// TestServiceAccountKeysThroughAPIServer: the discovery document names the
// keys at the address the API server advertises (https://127.0.0.1:PORT),
// which refuses a request without a token; sekisho, configured with another
// name of the same server (https://localhost:PORT), fetches them through
// api_server with its token, and tokens verify.
func TestServiceAccountKeysThroughAPIServer(t *testing.T) {
	c := kubeCluster(t)
	byName := strings.Replace(c.URL, "127.0.0.1", "localhost", 1)
	f := kubeFixture(t, kubeConfig(c, byName, tokenFile(t, c, sekishoSA), false, "", "http://127.0.0.1:1"))
	waitJWTReady(t, f)
	if resp, body := f.do(t, "GET", "/pay", bearer(saToken(t, c, "payments", "keys", nil, "sekisho"))); resp.StatusCode != 200 {
		t.Errorf("status %d, want 200: %s", resp.StatusCode, body)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "through api_server") || !strings.Contains(logs, c.URL+apiServerJWKS) {
		t.Errorf("the log does not say the keys advertised at %s were fetched through api_server:\n%s", c.URL+apiServerJWKS, logs)
	}
}

// TestAuthDelegatorAllowsTokenReview: the built-in system:auth-delegator
// ClusterRole, which docs/kubernetes.md names as an alternative to its own
// role, is enough for TokenReview mode.
func TestAuthDelegatorAllowsTokenReview(t *testing.T) {
	c := kubeCluster(t)
	ctx := t.Context()
	if err := c.EnsureServiceAccount(ctx, sekishoNS, "delegator"); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sekisho-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "delegator", Namespace: sekishoNS}},
	}
	if _, err := c.Client().RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	own := tokenFile(t, c, "delegator")
	tok, err := os.ReadFile(own)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitStatus(ctx, c, strings.TrimSpace(string(tok)), http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	f := kubeFixture(t, kubeConfig(c, c.URL, own, true, "", "http://127.0.0.1:1"))
	if resp, body := f.do(t, "GET", "/pay", bearer(saToken(t, c, "payments", "api", nil, "sekisho"))); resp.StatusCode != 200 {
		t.Errorf("status %d, want 200: %s", resp.StatusCode, body)
	}
}
