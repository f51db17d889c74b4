package inject

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// IsReference reports whether an environment value is a secret reference
// `sekisho exec` resolves: it starts with "sekisho+" or is the
// berglas-aws:// alias. Only the prefix matters here: a malformed
// reference is still wrapped, so that `sekisho exec` refuses it by name
// instead of the program starting with it.
//
// The same two prefixes are in the ValidatingAdmissionPolicy (Manifests).
func IsReference(v string) bool {
	return strings.HasPrefix(v, "sekisho+") || strings.HasPrefix(v, "berglas-aws://")
}

// ConfigMapGetter reads a ConfigMap of the pod's namespace; nil, nil when
// it does not exist.
type ConfigMapGetter func(ctx context.Context, name string) (*corev1.ConfigMap, error)

// hasReference reports whether c's environment holds a reference: a
// literal value, or a ConfigMap value it takes by env valueFrom or
// envFrom. A ConfigMap that cannot be read is an error (the pod is
// refused: what it holds is unknown), except an optional one that does
// not exist. cms caches the pod's ConfigMaps across its containers.
func hasReference(ctx context.Context, c *corev1.Container, get ConfigMapGetter, cms map[string]*corev1.ConfigMap) (bool, error) {
	for _, e := range c.Env {
		if IsReference(e.Value) {
			return true, nil
		}
	}
	load := func(name string, optional *bool) (*corev1.ConfigMap, error) {
		if cm, ok := cms[name]; ok {
			return cm, nil
		}
		if get == nil {
			return nil, fmt.Errorf("container %q takes environment from ConfigMap %q, which the injector cannot read (no API client)", c.Name, name)
		}
		cm, err := get(ctx, name)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("container %q takes environment from ConfigMap %q, which the injector could not read, so it cannot tell whether it holds secret references: %w", c.Name, name, err)
		}
		if cm == nil || apierrors.IsNotFound(err) {
			if optional != nil && *optional {
				cms[name] = nil
				return nil, nil
			}
			return nil, fmt.Errorf("container %q takes environment from ConfigMap %q, which does not exist: create it before the pod, so the injector can tell whether it holds secret references", c.Name, name)
		}
		cms[name] = cm
		return cm, nil
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.ConfigMapKeyRef
		cm, err := load(ref.Name, ref.Optional)
		if err != nil {
			return false, err
		}
		if cm != nil && IsReference(cm.Data[ref.Key]) {
			return true, nil
		}
	}
	for _, src := range c.EnvFrom {
		if src.ConfigMapRef == nil {
			continue
		}
		cm, err := load(src.ConfigMapRef.Name, src.ConfigMapRef.Optional)
		if err != nil {
			return false, err
		}
		if cm == nil {
			continue
		}
		for _, v := range cm.Data {
			if IsReference(v) {
				return true, nil
			}
		}
	}
	return false, nil
}
