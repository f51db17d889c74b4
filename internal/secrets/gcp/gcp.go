// Package gcp resolves references to Google Cloud Secret Manager secrets
// (sekisho+gcp-sm://projects/P/secrets/S[/versions/V]) through the
// official client, cloud.google.com/go/secretmanager.
//
// Credentials are Application Default Credentials: the file
// GOOGLE_APPLICATION_CREDENTIALS names (a service-account key or a
// workload identity federation configuration), else the metadata server's
// (GKE Workload Identity, Compute Engine). The client fetches a token once
// and refreshes it ahead of expiry; a Provider holds one client for every
// reference.
package gcp

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"regexp"
	"sync"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
)

// ErrAccessDenied means Secret Manager refused the credentials: the
// identity lacks roles/secretmanager.secretAccessor on the secret, or its
// credentials are invalid.
var ErrAccessDenied = errors.New("access denied")

// Options configure a Provider.
type Options struct {
	// ClientOptions are passed to the Secret Manager client after
	// sekisho's own: an endpoint (a regional one, say), credentials, for
	// embedders and tests.
	ClientOptions []option.ClientOption
}

// OptionsFromEnv returns the default options: the client reads
// GOOGLE_APPLICATION_CREDENTIALS (and the metadata server) itself.
func OptionsFromEnv(getenv func(string) string) Options {
	_ = getenv // nothing sekisho-specific yet; kept for the stores' common shape
	return Options{}
}

// Provider resolves sekisho+gcp-sm references. It is safe for concurrent
// use.
type Provider struct {
	opts Options

	once   sync.Once
	client *secretmanager.Client
	err    error
}

// New returns a provider whose client is created on the first reference
// (finding credentials may ask the metadata server, which a process with
// no gcp-sm reference should not wait for).
func New(ctx context.Context, opts Options) (*Provider, error) {
	_ = ctx
	return &Provider{opts: opts}, nil
}

// Close releases the client's connections.
func (p *Provider) Close() error {
	if p.client != nil {
		return p.client.Close()
	}
	return nil
}

func (p *Provider) secretManager(ctx context.Context) (*secretmanager.Client, error) {
	p.once.Do(func() {
		// The client logs whole responses, secret payloads included, when
		// GOOGLE_SDK_GO_LOGGING_LEVEL=debug; it gets a logger that drops
		// everything instead.
		opts := append([]option.ClientOption{option.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, p.opts.ClientOptions...)
		p.client, p.err = secretmanager.NewClient(context.WithoutCancel(ctx), opts...)
		if p.err != nil {
			p.err = fmt.Errorf("gcp: create the Secret Manager client (credentials from GOOGLE_APPLICATION_CREDENTIALS or the metadata server): %w", p.err)
		}
	})
	return p.client, p.err
}

// resourceName matches a secret or a secret version: projects/P/secrets/S
// with an optional /versions/V (a number or latest). P is a project id (a
// legacy domain-scoped one holds "." and ":") or number; nothing else can
// reach the API in the request's name.
var resourceName = regexp.MustCompile(`^projects/([a-z0-9][a-z0-9.:-]{0,99})/secrets/([A-Za-z0-9_-]{1,255})(/versions/([1-9][0-9]{0,19}|latest))?$`)

// versionName is a version: a number or latest.
var versionName = regexp.MustCompile(`^([1-9][0-9]{0,19}|latest)$`)

// Name is the secret version ref names: its path with /versions/latest
// added when it names none, or the version ref.Version names. A path that
// is not a secret's resource name is an error.
func Name(ref secretref.Ref) (string, error) {
	m := resourceName.FindStringSubmatch(ref.Path)
	if m == nil {
		return "", fmt.Errorf("%s: not a Secret Manager secret: want projects/PROJECT/secrets/SECRET[/versions/VERSION], VERSION a number or latest", ref.Raw)
	}
	version := m[4]
	switch {
	case ref.Version != "" && version != "" && ref.Version != version:
		return "", fmt.Errorf("%s: two versions, %s and %s", ref.Raw, version, ref.Version)
	case ref.Version != "":
		if !versionName.MatchString(ref.Version) {
			return "", fmt.Errorf("%s: a version is a number or latest (got %q)", ref.Raw, ref.Version)
		}
		version = ref.Version
	case version == "":
		version = "latest"
	}
	return "projects/" + m[1] + "/secrets/" + m[2] + "/versions/" + version, nil
}

// Resolve returns the payload of the secret version ref names, after
// checking it against the checksum Secret Manager sends with it.
func (p *Provider) Resolve(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	if ref.Scheme != secretref.GCPSecretManager {
		return nil, fmt.Errorf("%s: the GCP store does not serve %q references", ref.Raw, ref.Scheme)
	}
	if ref.Stage != "" || ref.Region != "" {
		return nil, fmt.Errorf("%s: Secret Manager references take no stage or region", ref.Raw)
	}
	name, err := Name(ref)
	if err != nil {
		return nil, err
	}
	c, err := p.secretManager(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name})
	if err != nil {
		return nil, explain(ref, err)
	}
	data := resp.GetPayload().GetData()
	if sum := resp.GetPayload().DataCrc32C; sum != nil && int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))) != *sum {
		return nil, fmt.Errorf("%s: the payload does not match its checksum (corrupted in transit)", ref.Raw)
	}
	return data, nil
}

// explain turns a client error into one that names the reference and the
// reason; gRPC status messages name the resource, never its payload.
func explain(ref secretref.Ref, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The client retries an unavailable server until the deadline
		// and then returns the context's error alone.
		return fmt.Errorf("%s: GCP Secret Manager did not answer in time (unreachable or slow): %w", ref.Raw, err)
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%s: %w in GCP Secret Manager", ref.Raw, secrets.ErrNotFound)
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("%s: %w by GCP Secret Manager: the identity needs roles/secretmanager.secretAccessor (secretmanager.versions.access) on the secret: %v", ref.Raw, ErrAccessDenied, status.Convert(err).Message())
	case codes.FailedPrecondition:
		// A disabled or destroyed version.
		return fmt.Errorf("%s: GCP Secret Manager refused the version: %v", ref.Raw, status.Convert(err).Message())
	case codes.Unavailable:
		return fmt.Errorf("%s: GCP Secret Manager could not be reached: %w", ref.Raw, err)
	case codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%s: GCP Secret Manager did not answer in time: %w", ref.Raw, err)
	}
	return fmt.Errorf("%s: GCP Secret Manager: %w", ref.Raw, err)
}
