// Package kubesourcetest sets a real API server (internal/kubetest) up for
// the watcher of Route objects: it installs the Route CRD, grants a
// service account exactly the permissions the watcher needs, and creates
// Route objects.
package kubesourcetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/kubetest"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// routeCRD is a minimal Route CRD: any spec, the status subresource. The
// generated one (deploy/crds) replaces it.
const routeCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: routes.sekisho.io}
spec:
  group: sekisho.io
  scope: Namespaced
  names: {kind: Route, plural: routes, singular: route, listKind: RouteList, shortNames: [skroute]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

// InstallRouteCRD installs the Route CRD unless it is there, and waits
// until the API server serves it.
func InstallRouteCRD(t testing.TB, c *kubetest.Cluster) {
	t.Helper()
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(routeCRD), &obj.Object); err != nil {
		t.Fatal(err)
	}
	dyn := Dynamic(t, c)
	ctx := t.Context()
	if _, err := dyn.Resource(crdGVR).Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create the Route CRD: %v", err)
	}
	Eventually(t, 30*time.Second, "the Route CRD is served", func() bool {
		_, err := dyn.Resource(kubeapi.Routes).List(ctx, metav1.ListOptions{Limit: 1})
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

// Eventually polls cond every 20 ms until it holds, failing t with what
// after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		<-tick.C
	}
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
	cur, err := res.Get(ctx, name, metav1.GetOptions{})
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
	cur.Object["spec"] = s
	out, err := res.Update(ctx, cur, metav1.UpdateOptions{})
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
// leaseNS get/create/update, and namespaces get/list/watch only when
// selector is set. It writes a kubeconfig presenting the account's token
// in dir and returns its path.
func Grant(t testing.TB, c *kubetest.Cluster, saNS, sa, leaseNS string, selector bool, dir string) string {
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
	_, err = cs.RbacV1().Roles(leaseNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	}}, metav1.CreateOptions{})
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
