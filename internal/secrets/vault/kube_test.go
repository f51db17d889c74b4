package vault

import (
	"errors"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sekisho/sekisho/internal/baotest"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// TestKubernetesLogin logs in with Kubernetes auth against a real
// kube-apiserver: OpenBao reviews the pod's service-account token with
// the cluster's TokenReview API. The bound service account resolves its
// secret; another account of the same cluster is refused at login.
func TestKubernetesLogin(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	srv := baotest.Start(t)
	putFixtures(t, srv)
	ctx := t.Context()
	for _, sa := range [][2]string{{"vault", "reviewer"}, {"shop", "app"}, {"shop", "intruder"}} {
		if err := cluster.EnsureServiceAccount(ctx, sa[0], sa[1]); err != nil {
			t.Fatal(err)
		}
	}
	// OpenBao's reviewer may create TokenReviews, as in the docs' setup.
	_, err := cluster.Client().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "vault", Name: "reviewer"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(ns, name string) string {
		tok, err := cluster.TokenFor(ctx, ns, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	reviewer := token("vault", "reviewer")
	srv.Policy(t, "read-app", baotest.ReadPolicy(baotest.KVMount, "app"))
	k := srv.EnableKubernetes(t, "kubernetes", cluster.URL, cluster.CAPEM, reviewer)
	k.Role(t, "shop-app", "shop", "app", "read-app")

	dir := t.TempDir()
	app := token("shop", "app")
	env := map[string]string{
		"VAULT_ADDR":             srv.Addr,
		"SEKISHO_VAULT_ROLE":     "shop-app", // kubernetes is the default method with a role
		"SEKISHO_VAULT_JWT_FILE": testutil.WriteFile(t, dir, "app", []byte(app)),
	}
	p := newProvider(t, srv, OptionsFromEnv(getenv(env)), app, reviewer)
	before := srv.Accessors(t)
	for _, ref := range []string{"sekisho+vault://secret/app#password", "sekisho+vault://secret/app?version=1#user"} {
		if got, err := p.Resolve(ctx, refFor(t, ref)); err != nil || !strings.Contains(string(got), "user-b4d8") {
			t.Fatalf("%s: %q, %v", ref, got, err)
		}
	}
	if logins := newAccessors(before, srv.Accessors(t)); len(logins) != 1 {
		t.Errorf("%d logins for two secrets; want 1", len(logins))
	}

	intruder := token("shop", "intruder")
	env["SEKISHO_VAULT_JWT_FILE"] = testutil.WriteFile(t, dir, "intruder", []byte(intruder))
	q := newProvider(t, srv, OptionsFromEnv(getenv(env)), intruder, reviewer)
	_, err = q.Resolve(ctx, refFor(t, "sekisho+vault://secret/app#password"))
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), `auth/kubernetes/login as role "shop-app"`) {
		t.Fatalf("intruder: err %v; want the login refused", err)
	}
	noLeak(t, "error", err.Error(), intruder, reviewer)
}
