package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Objects decodes a multi-document YAML (or JSON) stream, as kubectl and
// helm template write it, into objects; empty documents are skipped.
func Objects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("kubetest: decode object %d: %w", len(out)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// Applier applies objects with server-side apply, the way `kubectl apply
// --server-side` does: each object's resource is found through the API
// server's discovery, so custom resources work once their CRD is
// established.
type Applier struct {
	client dynamic.Interface
	disc   discovery.CachedDiscoveryInterface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// FieldManager names the applier in managedFields; "kubetest" if
	// empty.
	FieldManager string
}

// NewApplier returns an Applier acting with cfg's credentials.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	disc := memory.NewMemCacheClient(dc)
	return &Applier{client: client, disc: disc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(disc)}, nil
}

// Resource returns the client of obj's resource, in namespace (obj's own
// when it names one) if the resource is namespaced.
func (a *Applier) Resource(obj *unstructured.Unstructured, namespace string) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD applied since discovery was cached
		mapping, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("kubetest: %s: %w", gvk, err)
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		return a.client.Resource(mapping.Resource), nil
	}
	if ns := obj.GetNamespace(); ns != "" {
		namespace = ns
	}
	return a.client.Resource(mapping.Resource).Namespace(namespace), nil
}

// Apply applies obj (server-side apply, conflicts forced); with dryRun the
// API server validates and admits it (schema, CEL rules, RBAC) but stores
// nothing. Namespaced objects without a namespace go to namespace.
func (a *Applier) Apply(ctx context.Context, obj *unstructured.Unstructured, namespace string, dryRun bool) (*unstructured.Unstructured, error) {
	r, err := a.Resource(obj, namespace)
	if err != nil {
		return nil, err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("kubetest: encode %s: %w", Describe(obj), err)
	}
	manager := a.FieldManager
	if manager == "" {
		manager = "kubetest"
	}
	opts := metav1.PatchOptions{FieldManager: manager, Force: ptrTo(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := r.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", Describe(obj), err)
	}
	return out, nil
}

// WaitEstablished waits until the CustomResourceDefinition called name is
// Established, so its resource can be served.
func (a *Applier) WaitEstablished(ctx context.Context, name string) error {
	crds := a.client.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		crd, err := crds.Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("kubetest: get CRD %s: %w", name, err)
		}
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					a.mapper.Reset()
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: CRD %s not established: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// Describe names obj for messages: Kind namespace/name.
func Describe(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + " " + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetName()
}

func ptrTo[T any](v T) *T { return &v }
