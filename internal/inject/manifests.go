package inject

import (
	"bytes"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// NamespaceLabel opts a namespace into injection (value "enabled"); a pod
// labelled with it "disabled" is left alone by the webhook (and then
// refused by the policy if it holds references).
const NamespaceLabel = "sekisho.io/inject"

// ManifestOptions say where the injector runs.
type ManifestOptions struct {
	// Name prefixes every object; default "sekisho-injector".
	Name string
	// Namespace is the injector's own (excluded from injection, like
	// kube-system); default "sekisho".
	Namespace string
	// Service and Port reach the injector in the cluster; URL instead
	// names it directly (outside the cluster, or tests on loopback).
	Service string
	Port    int32
	URL     string
	// CABundle is the PEM CA that signed the injector's certificate.
	CABundle []byte
}

// Objects are the injector's manifests.
type Objects struct {
	ServiceAccount *corev1.ServiceAccount
	ClusterRole    *rbacv1.ClusterRole
	Binding        *rbacv1.ClusterRoleBinding
	Webhook        *admissionregistrationv1.MutatingWebhookConfiguration
	Policy         *admissionregistrationv1.ValidatingAdmissionPolicy
	PolicyBinding  *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// isRef and wrapped, in CEL: the policy kube-apiserver evaluates itself.
const (
	celRefs    = `has(c.env) && c.env.exists(e, has(e.value) && (e.value.startsWith('sekisho+') || e.value.startsWith('berglas-aws://')))`
	celWrapped = `has(c.command) && size(c.command) >= 3 && c.command[0] == '` + BinaryPath + `' && c.command[1] == 'exec' && c.command[2] == '--'`
)

// Manifests builds the injector's objects: its service account and RBAC
// (read ConfigMaps for env values, service accounts and secrets for pull
// secrets, nodes for their platforms), the MutatingWebhookConfiguration
// (failurePolicy Fail, opted-in namespaces only, never kube-system or its
// own), and a ValidatingAdmissionPolicy with its binding that refuses, in
// every namespace but kube-system, a pod whose environment holds a
// reference while its command is not wrapped: when the webhook is down or
// skipped, such a pod is refused by kube-apiserver itself.
func Manifests(o ManifestOptions) (*Objects, error) {
	if o.Name == "" {
		o.Name = "sekisho-injector"
	}
	if o.Namespace == "" {
		o.Namespace = "sekisho"
	}
	if len(o.CABundle) == 0 {
		return nil, fmt.Errorf("the CA bundle that signed the injector's certificate is required")
	}
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	path := Path
	switch {
	case o.URL != "":
		u := o.URL
		cc.URL = &u
	case o.Service != "":
		port := o.Port
		if port == 0 {
			port = 443
		}
		cc.Service = &admissionregistrationv1.ServiceReference{Namespace: o.Namespace, Name: o.Service, Path: &path, Port: &port}
	default:
		return nil, fmt.Errorf("name the injector's Service or its URL")
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(10)
	scope := admissionregistrationv1.NamespacedScope
	podRule := admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
	}
	excluded := metav1.LabelSelectorRequirement{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", o.Namespace}}
	deny := admissionregistrationv1.Deny
	msg := "a container's environment holds a secret reference (sekisho+… or berglas-aws://…) but its command is not wrapped by " + BinaryPath + " exec: label the namespace " + NamespaceLabel + "=enabled so the sekisho injector wraps it, and check that the injector is running"
	tm := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: kind}
	}
	return &Objects{
		ServiceAccount: &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace}},
		ClusterRole: &rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: o.Name},
			Rules: []rbacv1.PolicyRule{
				// Values a container takes from ConfigMaps may be references.
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}},
				// Pull secrets, to read a private image's ENTRYPOINT/CMD
				// when a container has no command.
				{APIGroups: []string{""}, Resources: []string{"serviceaccounts", "secrets"}, Verbs: []string{"get"}},
				// The nodes' platforms, to pick the right image of an index.
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}},
			},
		},
		Binding: &rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: o.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: o.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: o.Name, Namespace: o.Namespace}},
		},
		Webhook: &admissionregistrationv1.MutatingWebhookConfiguration{
			TypeMeta:   tm("MutatingWebhookConfiguration"),
			ObjectMeta: metav1.ObjectMeta{Name: o.Name},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "inject.sekisho.io",
				ClientConfig:            cc,
				Rules:                   []admissionregistrationv1.RuleWithOperations{podRule},
				FailurePolicy:           &fail,
				SideEffects:             &none,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
				ReinvocationPolicy:      &ifNeeded,
				NamespaceSelector: &metav1.LabelSelector{
					MatchLabels:      map[string]string{NamespaceLabel: "enabled"},
					MatchExpressions: []metav1.LabelSelectorRequirement{excluded},
				},
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: NamespaceLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
				}},
			}},
		},
		Policy: &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   tm("ValidatingAdmissionPolicy"),
			ObjectMeta: metav1.ObjectMeta{Name: o.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: &fail,
				MatchConstraints: &admissionregistrationv1.MatchResources{
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: podRule}},
				},
				Validations: []admissionregistrationv1.Validation{{
					Expression: `object.spec.containers.all(c, !(` + celRefs + `) || (` + celWrapped + `)) && (!has(object.spec.initContainers) || object.spec.initContainers.all(c, !(` + celRefs + `) || (` + celWrapped + `)))`,
					Message:    msg,
					Reason:     ptr(metav1.StatusReasonForbidden),
				}},
			},
		},
		PolicyBinding: &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   tm("ValidatingAdmissionPolicyBinding"),
			ObjectMeta: metav1.ObjectMeta{Name: o.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        o.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{deny},
				MatchResources: &admissionregistrationv1.MatchResources{
					NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}},
					}},
				},
			},
		},
	}, nil
}

func ptr[T any](v T) *T { return &v }

// YAML writes the objects as one multi-document YAML stream, in the order
// to apply them.
func (o *Objects) YAML() ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range []any{o.ServiceAccount, o.ClusterRole, o.Binding, o.Policy, o.PolicyBinding, o.Webhook} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("manifests: %w", err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}
