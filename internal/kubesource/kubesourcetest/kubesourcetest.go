// Package kubesourcetest sets a real API server (internal/kubetest) up for
// the watcher of Route objects: it installs the Route CRD, grants a
// service account exactly the permissions the watcher needs, and creates
// Route objects.
package kubesourcetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
	"github.com/sekisho/sekisho/internal/toolbin"
)

// CRDFile is the generated Route CRD, relative to the repository root: the
// file the watcher's error tells to apply (kubesource.CRDFile, which this
// package cannot import: kubesource's tests use it).
const CRDFile = "deploy/crds/routes.sekisho.io.yaml"

// InstallRouteCRD applies the generated Route CRD (server-side, as
// `kubectl apply --server-side` does) and waits until the API server
// serves it.
func InstallRouteCRD(t testing.TB, c *kubetest.Cluster) {
	t.Helper()
	root, err := toolbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, CRDFile))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Objects(data)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kubetest.NewApplier(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if _, err := a.Apply(t.Context(), obj, "", false); err != nil {
			t.Fatal(err)
		}
		if err := a.WaitEstablished(t.Context(), obj.GetName()); err != nil {
			t.Fatal(err)
		}
	}
	dyn := Dynamic(t, c)
	testutil.Eventually(t, 30*time.Second, "the Route resource is served", func() bool {
		_, err := dyn.Resource(kubeapi.Routes).List(t.Context(), metav1.ListOptions{Limit: 1})
		return err == nil
	})
}

// Dynamic is the administrator's dynamic client.
func Dynamic(t testing.TB, c *kubetest.Cluster) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Namespace creates namespace ns with labels unless it exists.
func Namespace(t testing.TB, c *kubetest.Cluster, ns string, labels map[string]string) {
	t.Helper()
	_, err := c.Client().CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// ApplyRoute creates or replaces the spec of Route ns/name (the spec in
// YAML) and returns the stored object.
func ApplyRoute(t testing.TB, c *kubetest.Cluster, ns, name, spec string) *unstructured.Unstructured {
	t.Helper()
	var s map[string]any
	if err := yaml.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatalf("route spec: %v", err)
	}
	res := Dynamic(t, c).Resource(kubeapi.Routes).Namespace(ns)
	ctx := t.Context()
	_, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": kubeapi.Group + "/" + kubeapi.Version, "kind": kubeapi.RouteKind,
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": s,
		}}
		out, err := res.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create route %s/%s: %v", ns, name, err)
		}
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	// Replace the spec whatever the resourceVersion: the status writer
	// changes it at any time, and a kubectl user's edit does not wait.
	patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec", "value": s}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := res.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("update route %s/%s: %v", ns, name, err)
	}
	return out
}

// DeleteRoute deletes Route ns/name.
func DeleteRoute(t testing.TB, c *kubetest.Cluster, ns, name string) {
	t.Helper()
	if err := Dynamic(t, c).Resource(kubeapi.Routes).Namespace(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete route %s/%s: %v", ns, name, err)
	}
}

// Accepted returns the Accepted condition of Route ns/name and its
// status.observedGeneration; nil if it has none.
func Accepted(t testing.TB, c *kubetest.Cluster, ns, name string) (*metav1.Condition, int64) {
	t.Helper()
	obj, err := Dynamic(t, c).Resource(kubeapi.Routes).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, raw := range conds {
		m, _ := raw.(map[string]any)
		if m["type"] != kubeapi.ConditionAccepted {
			continue
		}
		var cond metav1.Condition
		b, _ := yaml.Marshal(m)
		if err := yaml.Unmarshal(b, &cond); err != nil {
			t.Fatal(err)
		}
		return &cond, gen
	}
	return nil, gen
}

// Events returns the events.k8s.io/v1 Events about Route ns/name.
func Events(t testing.TB, c *kubetest.Cluster, ns, name string) []string {
	t.Helper()
	list, err := c.Client().EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name != name || e.Regarding.Kind != kubeapi.RouteKind {
			continue
		}
		out = append(out, e.Type+" "+e.Reason+": "+e.Note)
	}
	return out
}

// Grant creates service account saNS/sa with exactly the permissions the
// watcher needs (the documented RBAC): routes get/list/watch,
// routes/status update/patch, events create/patch, the Leases of
// leaseNS get/create/update, namespaces get/list/watch only when
// selector is set, and get/list/watch on the Secrets of leaseNS named by
// secrets (those the file's settings reference). It writes a kubeconfig
// presenting the account's token in dir and returns its path.
func Grant(t testing.TB, c *kubetest.Cluster, saNS, sa, leaseNS string, selector bool, dir string, secrets ...string) string {
	t.Helper()
	ctx := t.Context()
	cs := c.Client()
	if err := c.EnsureServiceAccount(ctx, saNS, sa); err != nil {
		t.Fatal(err)
	}
	Namespace(t, c, leaseNS, nil)
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{kubeapi.Group}, Resources: []string{kubeapi.RouteResource}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{kubeapi.Group}, Resources: []string{kubeapi.RouteResource + "/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	if selector {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}})
	}
	name := fmt.Sprintf("sekisho-routes-%s-%s", saNS, sa)
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNS, Name: sa}}
	create := func(what string, err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s: %v", what, err)
		}
	}
	_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	create("cluster role", err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}}, metav1.CreateOptions{})
	create("cluster role binding", err)
	nsRules := []rbacv1.PolicyRule{
		{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	}
	if len(secrets) > 0 {
		nsRules = append(nsRules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: secrets, Verbs: []string{"get", "list", "watch"}})
	}
	_, err = cs.RbacV1().Roles(leaseNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: nsRules}, metav1.CreateOptions{})
	create("role", err)
	_, err = cs.RbacV1().RoleBindings(leaseNS).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}}, metav1.CreateOptions{})
	create("role binding", err)
	return Kubeconfig(t, c, saNS, sa, dir)
}

// Kubeconfig writes a kubeconfig presenting a token of service account
// saNS/sa (which must exist) in dir and returns its path.
func Kubeconfig(t testing.TB, c *kubetest.Cluster, saNS, sa, dir string) string {
	t.Helper()
	token, err := c.TokenFor(t.Context(), saNS, sa, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, saNS+"-"+sa+".kubeconfig")
	if err := c.WriteKubeconfig(path, &clientcmdapi.AuthInfo{Token: token}); err != nil {
		t.Fatal(err)
	}
	return path
}
