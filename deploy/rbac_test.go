package deploy

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/sekisho/sekisho/internal/helmtest"
	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/kubetest"
)

var eventsGVR = schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}

// TestRBACLeastPrivilege installs the chart's RBAC for real (routes from
// resources, cluster-wide and in listed namespaces), then acts as the
// chart's service account with a token the API server issued for it: each
// action the process needs is allowed, and the nearest actions it does not
// need are refused with 403.
func TestRBACLeastPrivilege(t *testing.T) {
	c := kube.Cluster(t)
	a, err := kubetest.NewApplier(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	applyCRDs(t, a)
	for _, scope := range []string{"cluster", "namespaces"} {
		t.Run(scope, func(t *testing.T) {
			ns := "rbac-" + scope
			routesA, routesC := ns+"-a", ns+"-c" // team namespaces; -c is never listed
			values := fmt.Sprintf("kubeRoutes:\n  enabled: true\n  namespaceSelector: team=yes\n"+
				"config:\n  session:\n    secret_file: sekisho+k8s://%s/sekisho-session/key\n", ns)
			if scope == "namespaces" {
				values = fmt.Sprintf("kubeRoutes:\n  enabled: true\n  namespaces: [%s, %s-b]\n"+
					"config:\n  session:\n    secret_file: sekisho+k8s://%s/sekisho-session/key\n", routesA, ns, ns)
			}
			ensureNamespaces(t, c, ns, routesA, ns+"-b", routesC)
			out := helmtest.Template(t, helmtest.Chart, helmtest.Render{Release: release, Namespace: ns, Values: [][]byte{[]byte(values)}})
			for _, obj := range objects(t, out) {
				if _, err := a.Apply(t.Context(), obj, ns, false); err != nil {
					t.Fatal(err)
				}
			}
			seed(t, c, a, ns, routesA, routesC)

			token, err := c.TokenFor(t.Context(), ns, release, nil, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			sa := c.BearerConfig(token)
			cs, err := kubernetes.NewForConfig(sa)
			if err != nil {
				t.Fatal(err)
			}
			dyn, err := dynamic.NewForConfig(sa)
			if err != nil {
				t.Fatal(err)
			}
			checkActions(t, ns, routesA, routesC, scope, cs, dyn)
		})
	}
}

// seed creates, as the administrator, what the service account acts on:
// a route in each team namespace, the referenced Secret and another one,
// and a Lease of another holder.
func seed(t *testing.T, c *kubetest.Cluster, a *kubetest.Applier, ns string, routeNamespaces ...string) {
	t.Helper()
	ctx := t.Context()
	for _, rns := range routeNamespaces {
		r := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"match": map[string]any{"host": "app.example.com"}, "to": "service/app:80", "public": true}}}
		r.SetAPIVersion(kubeapi.Group + "/" + kubeapi.Version)
		r.SetKind(kubeapi.RouteKind)
		r.SetName("app")
		if _, err := a.Apply(ctx, r, rns, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"sekisho-session", "other"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"key": "k"}}
		if _, err := c.Client().CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns}}
	if _, err := c.Client().CoordinationV1().Leases(ns).Create(ctx, l, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func checkActions(t *testing.T, ns, routesA, routesC, scope string, cs kubernetes.Interface, dyn dynamic.Interface) {
	t.Helper()
	routes := func(n string) dynamic.ResourceInterface { return dyn.Resource(kubeapi.Routes).Namespace(n) }
	statusPatch := []byte(`{"status":{"observedGeneration":1,"conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"served","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)
	event := func(n string) *unstructured.Unstructured {
		e := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "events.k8s.io/v1", "kind": "Event",
			"metadata":            map[string]any{"generateName": "app-", "namespace": n},
			"eventTime":           time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
			"reportingController": "sekisho.io/gateway", "reportingInstance": "sekisho-0",
			"action": "Compile", "reason": "Accepted", "type": "Normal", "note": "route served",
			"regarding": map[string]any{"apiVersion": kubeapi.Group + "/" + kubeapi.Version, "kind": kubeapi.RouteKind, "namespace": n, "name": "app"},
		}}
		return e
	}
	type action struct {
		name string
		do   func(ctx context.Context) error
	}
	allowed := []action{
		{"list routes", func(ctx context.Context) error { _, err := routes(routesA).List(ctx, metav1.ListOptions{}); return err }},
		{"watch routes", func(ctx context.Context) error {
			w, err := routes(routesA).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"get a route", func(ctx context.Context) error {
			_, err := routes(routesA).Get(ctx, "app", metav1.GetOptions{})
			return err
		}},
		{"patch routes/status", func(ctx context.Context) error {
			_, err := routes(routesA).Patch(ctx, "app", types.MergePatchType, statusPatch, metav1.PatchOptions{}, "status")
			return err
		}},
		{"create an event", func(ctx context.Context) error {
			_, err := dyn.Resource(eventsGVR).Namespace(routesA).Create(ctx, event(routesA), metav1.CreateOptions{})
			return err
		}},
		{"create the lease", func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: release}}, metav1.CreateOptions{})
			return err
		}},
		{"update the lease", func(ctx context.Context) error {
			l, err := cs.CoordinationV1().Leases(ns).Get(ctx, release, metav1.GetOptions{})
			if err != nil {
				return err
			}
			holder := "sekisho-0"
			l.Spec.HolderIdentity = &holder
			_, err = cs.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{})
			return err
		}},
		{"get the referenced secret", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, "sekisho-session", metav1.GetOptions{})
			return err
		}},
		{"list the referenced secret by name", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=sekisho-session"})
			return err
		}},
	}
	refused := []action{
		{"get another secret", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, "other", metav1.GetOptions{})
			return err
		}},
		{"list secrets in the namespace", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list secrets cluster-wide", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"update a route's spec", func(ctx context.Context) error {
			_, err := routes(routesA).Patch(ctx, "app", types.MergePatchType, []byte(`{"spec":{"to":"service/evil:80"}}`), metav1.PatchOptions{})
			return err
		}},
		{"create a route", func(ctx context.Context) error {
			r := &unstructured.Unstructured{Object: map[string]any{"apiVersion": kubeapi.Group + "/" + kubeapi.Version, "kind": kubeapi.RouteKind,
				"metadata": map[string]any{"name": "new"}, "spec": map[string]any{"to": "service/app:80", "public": true}}}
			_, err := routes(routesA).Create(ctx, r, metav1.CreateOptions{})
			return err
		}},
		{"delete a route", func(ctx context.Context) error { return routes(routesA).Delete(ctx, "app", metav1.DeleteOptions{}) }},
		{"create a lease in another namespace", func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(routesA).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: release}}, metav1.CreateOptions{})
			return err
		}},
		{"update another lease", func(ctx context.Context) error {
			_, err := cs.CoordinationV1().Leases(ns).Patch(ctx, "other", types.MergePatchType, []byte(`{"spec":{"holderIdentity":"x"}}`), metav1.PatchOptions{})
			return err
		}},
		{"delete the lease", func(ctx context.Context) error {
			return cs.CoordinationV1().Leases(ns).Delete(ctx, release, metav1.DeleteOptions{})
		}},
		{"create a TokenReview", func(ctx context.Context) error {
			_, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "x"}}, metav1.CreateOptions{})
			return err
		}},
		{"list pods", func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods(routesA).List(ctx, metav1.ListOptions{})
			return err
		}},
	}
	listNamespaces := action{"list namespaces", func(ctx context.Context) error {
		_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		return err
	}}
	routesElsewhere := action{"list routes in an unlisted namespace", func(ctx context.Context) error { _, err := routes(routesC).List(ctx, metav1.ListOptions{}); return err }}
	if scope == "cluster" {
		// Every namespace, and the selector reads namespaces.
		allowed = append(allowed, listNamespaces, routesElsewhere)
	} else {
		refused = append(refused, listNamespaces, routesElsewhere,
			action{"create an event in an unlisted namespace", func(ctx context.Context) error {
				_, err := dyn.Resource(eventsGVR).Namespace(routesC).Create(ctx, event(routesC), metav1.CreateOptions{})
				return err
			}})
	}
	for _, act := range allowed {
		if err := act.do(t.Context()); err != nil {
			t.Errorf("%s: %v; want it allowed", act.name, err)
		}
	}
	for _, act := range refused {
		if err := act.do(t.Context()); !apierrors.IsForbidden(err) {
			t.Errorf("%s: error %v; want 403 Forbidden", act.name, err)
		}
	}
}
