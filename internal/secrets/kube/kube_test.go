package kube_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/kube"
	"github.com/sekisho/sekisho/internal/testutil"
)

var cluster kubetest.Shared

func TestMain(m *testing.M) { os.Exit(cluster.Run(m)) }

func ref(t *testing.T, raw string) secretref.Ref {
	t.Helper()
	r, ok, err := secretref.Parse(raw)
	if err != nil || !ok {
		t.Fatalf("Parse(%q): %v %v", raw, ok, err)
	}
	return r
}

// setup creates namespace ns with Secrets db and other, and a service
// account "app" that RBAC lets get db and absent (which does not exist) by
// name, nothing else; it returns the account's token.
func setup(t *testing.T, c *kubetest.Cluster, ns string) string {
	t.Helper()
	ctx := t.Context()
	if err := c.EnsureServiceAccount(ctx, ns, "app"); err != nil {
		t.Fatal(err)
	}
	cs := c.Client()
	for name, data := range map[string]map[string][]byte{
		"db":    {"password": []byte("k8s-s3cr3t"), "config.json": []byte(`{"url":"postgres://db"}`)},
		"other": {"password": []byte("other-s3cr3t")},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-db", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"db", "absent"}}}}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "app-read-db", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-db"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "app", Namespace: ns}}}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := c.TokenFor(ctx, ns, "app", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// TestResolve reads Secrets as a pod would: with the service account's
// token and the cluster CA in a directory (the in-cluster way), and
// through a kubeconfig file holding the same token. The account reads the
// one Secret RBAC names; another is forbidden; a missing Secret or key is
// not found; nothing an error says holds a value.
func TestResolve(t *testing.T) {
	c := cluster.Cluster(t)
	token := setup(t, c, "exec-kube")
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	sa := t.TempDir()
	testutil.WriteFile(t, sa, "token", []byte(token))
	testutil.WriteFile(t, sa, "ca.crt", c.CAPEM)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, &clientcmdapi.AuthInfo{Token: token}); err != nil {
		t.Fatal(err)
	}
	env := map[string]map[string]string{
		"in-cluster": {"KUBERNETES_SERVICE_HOST": u.Hostname(), "KUBERNETES_SERVICE_PORT": u.Port(), "SEKISHO_K8S_SERVICE_ACCOUNT_DIR": sa},
		"kubeconfig": {"KUBECONFIG": "/nonexistent/config" + string(filepath.ListSeparator) + kubeconfig},
	}
	for name, vars := range env {
		t.Run(name, func(t *testing.T) {
			p, err := kube.New(t.Context(), kube.OptionsFromEnv(func(k string) string { return vars[k] }))
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Resolve(t.Context(), ref(t, "sekisho+k8s://exec-kube/db/password"))
			if err != nil || string(got) != "k8s-s3cr3t" {
				t.Fatalf("got %q, %v", got, err)
			}
			tests := []struct {
				raw, want string
				notFound  bool
			}{
				{"sekisho+k8s://exec-kube/other/password", "forbidden: RBAC does not let this account get Secret exec-kube/other", false},
				{"sekisho+k8s://exec-kube/absent/password", "secret not found: no Secret absent in namespace exec-kube", true},
				{"sekisho+k8s://exec-kube/db/username", `secret not found: Secret exec-kube/db has no key "username"`, true},
			}
			for _, tt := range tests {
				_, err := p.Resolve(t.Context(), ref(t, tt.raw))
				if err == nil || !strings.HasPrefix(err.Error(), tt.raw+": ") || !strings.Contains(err.Error(), tt.want) || errors.Is(err, secrets.ErrNotFound) != tt.notFound {
					t.Errorf("%s: error %v; want %q (not found: %v)", tt.raw, err, tt.want, tt.notFound)
				}
				if err != nil && strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error %q holds a value", err)
				}
			}
		})
	}
}

// TestStoreDown: an API server that does not answer is an error naming
// the Secret, not a hang.
func TestStoreDown(t *testing.T) {
	addr := testutil.FreeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	sa := t.TempDir()
	testutil.WriteFile(t, sa, "token", []byte("t"))
	testutil.WriteFile(t, sa, "ca.crt", nil)
	p, err := kube.New(t.Context(), kube.Options{ServiceHost: host, ServicePort: port, ServiceAccountDir: sa})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Resolve(t.Context(), ref(t, "sekisho+k8s://ns/db/password"))
	if err == nil || !strings.Contains(err.Error(), "get Secret ns/db") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %v", err)
	}
}

// TestNoConfig: outside a pod and without KUBECONFIG the store says so; a
// pod without its token says what to check.
func TestNoConfig(t *testing.T) {
	_, err := kube.New(t.Context(), kube.Options{})
	if err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Errorf("no config: %v", err)
	}
	_, err = kube.New(t.Context(), kube.Options{ServiceHost: "10.0.0.1", ServicePort: "443", ServiceAccountDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "automountServiceAccountToken") {
		t.Errorf("no token: %v", err)
	}
}

// TestRevokedToken: the token of a deleted service account is refused,
// and the error says the credentials were refused (not "not found").
func TestRevokedToken(t *testing.T) {
	c := cluster.Cluster(t)
	ctx := t.Context()
	const ns = "exec-kube-revoked"
	token := setup(t, c, ns)
	if err := c.Client().CoreV1().ServiceAccounts(ns).Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, &clientcmdapi.AuthInfo{Token: token}); err != nil {
		t.Fatal(err)
	}
	// kube-apiserver learns of the deletion through its informer, a
	// moment later: poll, with a new store each time (a store reads each
	// Secret once).
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := kube.New(ctx, kube.Options{Kubeconfig: kubeconfig})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Resolve(ctx, ref(t, "sekisho+k8s://"+ns+"/db/password"))
		if err != nil {
			if !strings.Contains(err.Error(), "the API server refused the credentials") || errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("error %v; want the credentials refused", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted service account's token still reads the Secret")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
