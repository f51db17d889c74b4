package kubetest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sekisho/sekisho/internal/testutil"
)

// kube is the cluster the tests without options of their own share.
var kube Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

// whoAmI asks the API server who cfg authenticates as.
func whoAmI(t *testing.T, cfg *rest.Config) (authenticationv1.UserInfo, error) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	return r.Status.UserInfo, nil
}

// TestAdmin checks the administrator: it lists the namespaces the API
// server creates itself and is user kubetest-admin in system:masters. The
// server reports the release it was built from.
func TestAdmin(t *testing.T) {
	c := kube.Cluster(t)
	if !strings.HasPrefix(c.URL, "https://127.0.0.1:") {
		t.Errorf("URL = %q; want https on loopback", c.URL)
	}
	v, err := c.Client().Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.37.2" || v.Major != "1" || v.Minor != "37" {
		t.Errorf("server version = %s (%s.%s); want v1.37.2 (1.37), the tools module's release", v.GitVersion, v.Major, v.Minor)
	}
	list, err := c.Client().CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list namespaces: %v", err)
	}
	var names []string
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	for _, want := range []string{"default", "kube-system"} {
		if !slices.Contains(names, want) {
			t.Errorf("namespaces = %q; want %q among them", names, want)
		}
	}
	user, err := whoAmI(t, c.AdminConfig())
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	if user.Username != "kubetest-admin" || !slices.Contains(user.Groups, "system:masters") {
		t.Errorf("admin is %q in %q; want kubetest-admin in system:masters", user.Username, user.Groups)
	}
}

// TestAnonymousRefused checks that a request with no credentials is
// refused (--anonymous-auth=false), as a bad token is.
func TestAnonymousRefused(t *testing.T) {
	c := kube.Cluster(t)
	for name, cfg := range map[string]*rest.Config{"none": c.BearerConfig(""), "bad token": c.BearerConfig("not-a-token")} {
		if _, err := whoAmI(t, cfg); !apierrors.IsUnauthorized(err) {
			t.Errorf("%s: SelfSubjectReview error = %v; want 401 Unauthorized", name, err)
		}
	}
}

// TestServiceAccountToken checks a TokenRequest token end to end: it
// authenticates as its service account, and the issuer's discovery
// document and keys, fetched with it, verify it.
func TestServiceAccountToken(t *testing.T) {
	c := kube.Cluster(t)
	ctx := t.Context()
	for range 2 { // the second call finds both and does nothing
		if err := c.EnsureServiceAccount(ctx, "sa-test", "robot"); err != nil {
			t.Fatal(err)
		}
	}
	token, err := c.TokenFor(ctx, "sa-test", "robot", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	user, err := whoAmI(t, c.BearerConfig(token))
	if err != nil {
		t.Fatalf("SelfSubjectReview with the token: %v", err)
	}
	if user.Username != "system:serviceaccount:sa-test:robot" {
		t.Errorf("token authenticates as %q; want system:serviceaccount:sa-test:robot", user.Username)
	}

	// Discovery as a verifier does it: the document at the API server's
	// URL names the issuer and the keys, which verify the token.
	client, err := rest.HTTPClientFor(c.BearerConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, client, c.URL+"/.well-known/openid-configuration", &doc)
	if doc.Issuer != c.ServiceAccountIssuer || c.ServiceAccountIssuer != DefaultServiceAccountIssuer {
		t.Errorf("discovery issuer = %q, Cluster says %q; want %q", doc.Issuer, c.ServiceAccountIssuer, DefaultServiceAccountIssuer)
	}
	jwks, err := url.Parse(doc.JWKSURI)
	if err != nil || jwks.Path != "/openid/v1/jwks" {
		t.Fatalf("jwks_uri = %q (%v); want a URL of /openid/v1/jwks", doc.JWKSURI, err)
	}
	var keys struct{ Keys []map[string]any }
	getJSON(t, client, c.URL+jwks.Path, &keys)
	if len(keys.Keys) == 0 {
		t.Fatal("the JWKS has no keys")
	}
	keySet := oidc.NewRemoteKeySet(oidc.ClientContext(ctx, client), c.URL+jwks.Path)
	verifier := oidc.NewVerifier(c.ServiceAccountIssuer, keySet, &oidc.Config{ClientID: c.ServiceAccountIssuer})
	idt, err := verifier.Verify(ctx, token)
	if err != nil {
		t.Fatalf("verify the token with the discovered keys: %v", err)
	}
	if idt.Subject != user.Username {
		t.Errorf("token subject = %q; want %q", idt.Subject, user.Username)
	}

	// The discovery endpoints are not public: anonymous access is off.
	anonymous, err := rest.HTTPClientFor(c.BearerConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := anonymous.Get(c.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("discovery without a token answered %s; want 401", resp.Status)
	}
}

// getJSON GETs url with client and decodes its 200 answer into v.
func getJSON(t *testing.T, client *http.Client, url string, v any) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", url, resp.Status, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

// TestTokenForOptions checks that TokenFor's audiences and lifetime reach
// the token, and that a lifetime below the API server's minimum fails.
func TestTokenForOptions(t *testing.T) {
	c := kube.Cluster(t)
	ctx := t.Context()
	if err := c.EnsureServiceAccount(ctx, "token-options", "robot"); err != nil {
		t.Fatal(err)
	}
	client, err := rest.HTTPClientFor(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	keySet := oidc.NewRemoteKeySet(oidc.ClientContext(ctx, client), c.URL+"/openid/v1/jwks")
	for _, tc := range []struct {
		name      string
		audiences []string
		ttl       time.Duration
		wantAud   string
		wantTTL   time.Duration
	}{
		{"defaults", nil, 0, c.ServiceAccountIssuer, time.Hour},
		{"audience and ttl", []string{"sekisho"}, 20 * time.Minute, "sekisho", 20 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, err := c.TokenFor(ctx, "token-options", "robot", tc.audiences, tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			v := oidc.NewVerifier(c.ServiceAccountIssuer, keySet, &oidc.Config{ClientID: tc.wantAud})
			idt, err := v.Verify(ctx, token)
			if err != nil {
				t.Fatalf("verify for audience %q: %v", tc.wantAud, err)
			}
			if got := idt.Expiry.Sub(idt.IssuedAt); got != tc.wantTTL {
				t.Errorf("lifetime = %s; want %s", got, tc.wantTTL)
			}
		})
	}
	t.Run("too short", func(t *testing.T) {
		_, err := c.TokenFor(ctx, "token-options", "robot", nil, time.Minute)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "token-options/robot") {
			t.Errorf("TokenFor(1m) error = %v; want 422 Invalid naming the service account", err)
		}
	})
	t.Run("no such account", func(t *testing.T) {
		_, err := c.TokenFor(ctx, "token-options", "nobody", nil, 0)
		if !apierrors.IsNotFound(err) {
			t.Errorf("TokenFor(nobody) error = %v; want 404 Not Found", err)
		}
	})
}

// TestWriteKubeconfig checks that the kubeconfig file reaches the cluster
// as the administrator by default and as the given user otherwise.
func TestWriteKubeconfig(t *testing.T) {
	c := kube.Cluster(t)
	ctx := t.Context()
	if err := c.EnsureServiceAccount(ctx, "kubeconfig", "robot"); err != nil {
		t.Fatal(err)
	}
	token, err := c.TokenFor(ctx, "kubeconfig", "robot", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		user *clientcmdapi.AuthInfo
		want string
	}{
		{"admin", nil, "kubetest-admin"},
		{"token", &clientcmdapi.AuthInfo{Token: token}, "system:serviceaccount:kubeconfig:robot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kubeconfig")
			if err := c.WriteKubeconfig(path, tc.user); err != nil {
				t.Fatal(err)
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				t.Fatal(err)
			}
			user, err := whoAmI(t, cfg)
			if err != nil {
				t.Fatalf("SelfSubjectReview: %v", err)
			}
			if user.Username != tc.want {
				t.Errorf("kubeconfig user is %q; want %q", user.Username, tc.want)
			}
		})
	}
}

// tokenWebhook is a TokenReview webhook that knows some tokens (alice's
// from the start, with group gid:admin) and counts the reviews it answers.
type tokenWebhook struct {
	mu      sync.Mutex
	users   map[string]string // token → user name
	reviews int
}

func (w *tokenWebhook) accept(token, user string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users[token] = user
}

func (w *tokenWebhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reviews
}

func (w *tokenWebhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var review authenticationv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.APIVersion != "authentication.k8s.io/v1" {
		http.Error(rw, fmt.Sprintf("want a v1 TokenReview (%v)", err), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.reviews++
	user, ok := w.users[review.Spec.Token]
	w.mu.Unlock()
	review.Status = authenticationv1.TokenReviewStatus{}
	if ok {
		review.Status.Authenticated = true
		review.Status.User = authenticationv1.UserInfo{Username: user, UID: user + "-uid", Groups: []string{"gid:admin"}}
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(review)
}

// TestTokenWebhook runs a cluster that asks a TokenReview webhook about
// bearer tokens: the webhook's user and groups are the request's, a token
// it refuses is a 401, a refusal is not cached, and stopping the cluster
// ends both servers.
func TestTokenWebhook(t *testing.T) {
	webhookCA := testutil.NewCA(t)
	hook := &tokenWebhook{users: map[string]string{"alice-token": "alice"}}
	srv := httptest.NewUnstartedServer(hook)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{webhookCA.Server(t, "127.0.0.1").TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	config, err := TokenWebhookKubeconfig(srv.URL+"/tokenreview", webhookCA.PEM)
	if err != nil {
		t.Fatal(err)
	}
	c := Start(t, Options{TokenWebhookConfig: config})

	t.Run("alice", func(t *testing.T) {
		user, err := whoAmI(t, c.BearerConfig("alice-token"))
		if err != nil {
			t.Fatalf("SelfSubjectReview with alice's token: %v", err)
		}
		if user.Username != "alice" || user.UID != "alice-uid" || !slices.Contains(user.Groups, "gid:admin") {
			t.Errorf("user = %q (uid %q) in %q; want alice (alice-uid) in gid:admin", user.Username, user.UID, user.Groups)
		}
	})
	t.Run("refused token", func(t *testing.T) {
		if _, err := whoAmI(t, c.BearerConfig("mallory-token")); !apierrors.IsUnauthorized(err) {
			t.Errorf("SelfSubjectReview with a refused token: error = %v; want 401 Unauthorized", err)
		}
	})
	// With kube-apiserver's default webhook cache (2 minutes) the refusal
	// would be remembered and the second request refused too.
	t.Run("refusal not cached", func(t *testing.T) {
		before := hook.count()
		if _, err := whoAmI(t, c.BearerConfig("bob-token")); !apierrors.IsUnauthorized(err) {
			t.Fatalf("bob's token before the webhook knows it: error = %v; want 401", err)
		}
		hook.accept("bob-token", "bob")
		user, err := whoAmI(t, c.BearerConfig("bob-token"))
		if err != nil || user.Username != "bob" {
			t.Fatalf("bob's token once the webhook accepts it: %q, %v; want bob", user.Username, err)
		}
		if n := hook.count() - before; n != 2 {
			t.Errorf("the webhook answered %d reviews for 2 requests; want 2", n)
		}
	})
	t.Run("stop", func(t *testing.T) {
		pids := []int{c.apiserver.Pid(), c.etcd.Pid()}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if testutil.Running(pid) {
				t.Errorf("process %d still runs after Stop", pid)
			}
		}
		if _, err := whoAmI(t, c.AdminConfig()); err == nil {
			t.Error("the API server still answers after Stop")
		}
		if err := c.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

// TestEtcdPortTaken checks that a server whose port is taken is reported
// as errPortTaken, which Start answers by trying new ports.
func TestEtcdPortTaken(t *testing.T) {
	skipShort(t)
	bins, err := EnsureBinaries(t.Context(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	taken := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(taken.Close)
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: t.TempDir()}
	_, err = c.runEtcd(t.Context(), bins.Etcd, taken.Listener.Addr().(*net.TCPAddr).Port, ports[0])
	t.Cleanup(func() { _ = c.Stop() })
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("etcd on a taken port: error = %v; want errPortTaken", err)
	}
}
