// Package secretref is the syntax of secret references: environment
// values such as `sekisho+aws-sm://prod/db#password` that `sekisho exec`
// (and the pods the injector wraps) replace with the secret before the
// program starts. Every reference starts with `sekisho+` (or a documented
// alias such as berglas-aws://), so an ordinary value that happens to be a
// URL (file:///etc/app.conf) is never taken for one.
package secretref

// Scheme names a secret store. The provider for a scheme lives in
// internal/secrets/<store>.
type Scheme string

// The stores references can name.
const (
	AWSSecretsManager Scheme = "aws-sm"
	AWSParameterStore Scheme = "aws-ssm"
	Vault             Scheme = "vault" // Vault or OpenBao, KV version 2
	Kubernetes        Scheme = "k8s"
	GCPSecretManager  Scheme = "gcp-sm"
	File              Scheme = "file"
)

// Ref is one parsed reference.
type Ref struct {
	// Raw is the reference as written, for messages: it names a secret,
	// it never holds one.
	Raw    string
	Scheme Scheme
	// Path locates the secret in its store, in the store's own terms: a
	// Secrets Manager name or ARN, a parameter name ("/prod/db/password"),
	// a KV v2 mount and path ("secret/app"), "namespace/name/key" of a
	// Kubernetes Secret, a GCP resource name
	// ("projects/p/secrets/s/versions/latest"), a file path.
	Path string
	// Version selects a version where the store has them: a Secrets
	// Manager version id, a parameter version, a KV v2 version, a GCP
	// version. "" is the current one.
	Version string
	// Stage is a Secrets Manager version stage (AWSCURRENT, AWSPREVIOUS).
	Stage string
	// Region overrides the AWS region for this reference.
	Region string
	// Key selects one top-level key of a JSON secret; "" is the whole
	// secret. Variables are never made from a secret's keys.
	Key string
	// Destination is where the value goes: "" for the variable itself,
	// "tempfile" for a new 0600 file on a memory-backed directory whose
	// path the variable then holds, or an absolute path to write to.
	Destination string
}
