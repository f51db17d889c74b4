// Package identity defines who a request comes from, in one shape for every
// way of authenticating (session, bearer JWT, API token) and every mode
// (gateway, decision service, token webhook), so that policy is written once.
package identity

// Method names how an identity was established.
type Method string

// Authentication methods.
const (
	MethodSession  Method = "session"
	MethodJWT      Method = "jwt"
	MethodAPIToken Method = "api_token"
)

// Kind separates people from machines: policies often treat them differently.
type Kind string

// Principal kinds.
const (
	KindUser    Kind = "user"
	KindService Kind = "service"
)

// Identity is the authenticated principal. It is immutable once built by an
// authenticator: cached identities are shared between requests.
type Identity struct {
	Subject       string         `json:"subject" yaml:"subject"`
	Username      string         `json:"username" yaml:"username"`
	Email         string         `json:"email,omitempty" yaml:"email"`
	EmailVerified bool           `json:"email_verified" yaml:"email_verified"`
	Groups        []string       `json:"groups" yaml:"groups"`
	Claims        map[string]any `json:"claims,omitempty" yaml:"claims"`
	Issuer        string         `json:"issuer,omitempty" yaml:"issuer"`
	Method        Method         `json:"method" yaml:"method"`
	MFA           bool           `json:"mfa" yaml:"mfa"`
	Kind          Kind           `json:"kind" yaml:"kind"`
	// TokenName is the configured name of the API token used, if any.
	TokenName string `json:"token_name,omitempty" yaml:"token_name"`
	// Kube is where a Kubernetes service account's token was issued to
	// (namespace, service account, pod, node), so that policy can name
	// workloads rather than parse usernames; nil for every other identity.
	Kube *Kube `json:"kube,omitempty" yaml:"kube"`
}

// Kube is the Kubernetes workload a service-account token is bound to, as
// the cluster states it (the token's "kubernetes.io" claim, or the user
// extra of a TokenReview). Pod and node are empty for a token not bound to
// a pod.
type Kube struct {
	Namespace         string `json:"namespace" yaml:"namespace"`
	ServiceAccount    string `json:"service_account" yaml:"service_account"`
	ServiceAccountUID string `json:"service_account_uid,omitempty" yaml:"service_account_uid"`
	Pod               string `json:"pod,omitempty" yaml:"pod"`
	PodUID            string `json:"pod_uid,omitempty" yaml:"pod_uid"`
	Node              string `json:"node,omitempty" yaml:"node"`
	NodeUID           string `json:"node_uid,omitempty" yaml:"node_uid"`
}
