// Package aws resolves references to AWS Secrets Manager secrets
// (sekisho+aws-sm://NAME-OR-ARN, and the alias berglas-aws://) and SSM
// Parameter Store parameters (sekisho+aws-ssm://NAME) through
// aws-sdk-go-v2.
//
// Credentials come from the SDK's default chain: static keys in the
// environment, a shared profile, a web identity (AWS_ROLE_ARN and
// AWS_WEB_IDENTITY_TOKEN_FILE: IRSA on EKS), the container or EC2 instance
// role. A Provider loads the chain once and the SDK caches the credentials
// and refreshes them ahead of expiry, so resolving many references costs
// one STS call, not one per secret.
//
// A region is required. The SDK calls the regional endpoints of the region
// it is given, STS's included: that is what keeps the web-identity
// exchange fast (the global STS endpoint is the one known for multi-second
// delays). The region comes from the reference (&region=R, or the region
// of an ARN), else from AWS_REGION, AWS_DEFAULT_REGION or the shared
// configuration's profile; a reference with none of them fails with a
// message saying to set AWS_REGION, never a guessed region.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
)

// ErrNoRegion means a reference could not be given a region: neither the
// reference nor the environment names one.
var ErrNoRegion = errors.New("no AWS region: set AWS_REGION to the region of the secrets (or add &region=R to the reference); " +
	"sekisho calls that region's endpoints, STS's included, which exchanges a web identity for credentials, " +
	"and never falls back to the global STS endpoint, whose delays run to seconds")

// ErrAccessDenied means the store refused the credentials sekisho used:
// the role lacks a permission, or the credentials are invalid or expired.
var ErrAccessDenied = errors.New("access denied")

// credentialsExpiryWindow is how long before they expire temporary
// credentials are renewed.
const credentialsExpiryWindow = 5 * time.Minute

// Options configure a Provider.
type Options struct {
	// Region is the region of references that name none themselves (an
	// ARN names its own). "" leaves it to the SDK's shared configuration
	// (AWS_PROFILE's region); when that has none either, such references
	// fail with ErrNoRegion.
	Region string
	// ConfigOptions are passed to the SDK's config.LoadDefaultConfig after
	// sekisho's own, for embedders and tests.
	ConfigOptions []func(*config.LoadOptions) error
}

// OptionsFromEnv reads the region from AWS_REGION, else
// AWS_DEFAULT_REGION. The SDK reads the rest of its usual environment
// itself: credentials (AWS_ACCESS_KEY_ID…, AWS_ROLE_ARN with
// AWS_WEB_IDENTITY_TOKEN_FILE, AWS_PROFILE), endpoints (AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_STS…) and AWS_CA_BUNDLE.
func OptionsFromEnv(getenv func(string) string) Options {
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	return Options{Region: region}
}

// Provider resolves sekisho+aws-sm and sekisho+aws-ssm references. It is
// safe for concurrent use; its clients share one credentials cache.
type Provider struct {
	opts Options
	// region is the region of references that name none, "" if neither
	// the options nor the shared configuration give one. Set by New only.
	region0 string

	mu sync.Mutex
	// cfg is the SDK configuration with its credentials cache, loaded
	// once: in New when a default region is known, else with the region
	// of the first reference (the web-identity STS client needs one).
	cfg     *awssdk.Config
	loadErr error
	sm      map[string]*secretsmanager.Client
	ssm     map[string]*ssm.Client
}

// New loads the SDK's configuration (no network: credentials are fetched
// on the first request and cached). It fails when the configuration is
// broken, an AWS_PROFILE that does not exist for instance.
func New(ctx context.Context, opts Options) (*Provider, error) {
	p := &Provider{opts: opts, sm: map[string]*secretsmanager.Client{}, ssm: map[string]*ssm.Client{}}
	cfg, err := p.load(ctx, opts.Region)
	if err != nil {
		return nil, err
	}
	if cfg.Region != "" {
		p.cfg, p.region0 = &cfg, cfg.Region
	}
	return p, nil
}

func (p *Provider) load(ctx context.Context, region string) (awssdk.Config, error) {
	lo := []func(*config.LoadOptions) error{
		// Temporary credentials (a web identity's last an hour) are
		// renewed by the first request within five minutes of their
		// expiry, so no request is signed with credentials about to lapse.
		config.WithCredentialsCacheOptions(func(o *awssdk.CredentialsCacheOptions) {
			o.ExpiryWindow = credentialsExpiryWindow
			o.ExpiryWindowJitterFrac = 0.2
		}),
	}
	if region != "" {
		lo = append(lo, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(lo, p.opts.ConfigOptions...)...)
	if err != nil {
		return awssdk.Config{}, fmt.Errorf("aws: load the SDK configuration: %w", err)
	}
	return cfg, nil
}

// config returns the SDK configuration, loading it with region when New
// found no default region.
func (p *Provider) config(ctx context.Context, region string) (awssdk.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil && p.loadErr == nil {
		cfg, err := p.load(ctx, region)
		if err != nil {
			p.loadErr = err
		} else {
			p.cfg = &cfg
		}
	}
	if p.loadErr != nil {
		return awssdk.Config{}, p.loadErr
	}
	return *p.cfg, nil
}

func (p *Provider) secretsManager(ctx context.Context, region string) (*secretsmanager.Client, error) {
	cfg, err := p.config(ctx, region)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.sm[region]
	if c == nil {
		c = secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.Region = region })
		p.sm[region] = c
	}
	return c, nil
}

func (p *Provider) parameterStore(ctx context.Context, region string) (*ssm.Client, error) {
	cfg, err := p.config(ctx, region)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.ssm[region]
	if c == nil {
		c = ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.Region = region })
		p.ssm[region] = c
	}
	return c, nil
}

// Resolve returns the secret string or bytes of an aws-sm reference, or the
// (decrypted) value of an aws-ssm one.
func (p *Provider) Resolve(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	switch ref.Scheme {
	case secretref.AWSSecretsManager:
		return p.secret(ctx, ref)
	case secretref.AWSParameterStore:
		return p.parameter(ctx, ref)
	}
	return nil, fmt.Errorf("%s: the AWS store does not serve %q references", ref.Raw, ref.Scheme)
}

func (p *Provider) secret(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	region, err := p.region(ref, "secretsmanager")
	if err != nil {
		return nil, err
	}
	c, err := p.secretsManager(ctx, region)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	in := &secretsmanager.GetSecretValueInput{SecretId: awssdk.String(ref.Path)}
	if ref.Version != "" {
		in.VersionId = awssdk.String(ref.Version)
	}
	if ref.Stage != "" {
		in.VersionStage = awssdk.String(ref.Stage)
	}
	out, err := c.GetSecretValue(ctx, in)
	if err != nil {
		return nil, explain(ref, "Secrets Manager", region, "secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key when it is a customer-managed one)", err)
	}
	if out.SecretString != nil {
		return []byte(*out.SecretString), nil
	}
	if out.SecretBinary != nil {
		return out.SecretBinary, nil
	}
	return nil, fmt.Errorf("%s: the secret version holds no value", ref.Raw)
}

func (p *Provider) parameter(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	if ref.Stage != "" {
		return nil, fmt.Errorf("%s: SSM parameters have no version stages; select a version with ?version=N", ref.Raw)
	}
	name := ref.Path
	var version int64
	if ref.Version != "" {
		v, err := strconv.ParseInt(ref.Version, 10, 64)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%s: the version of an SSM parameter is a number from 1 (got %q)", ref.Raw, ref.Version)
		}
		version = v
		name += ":" + strconv.FormatInt(v, 10) // GetParameter's version selector
	}
	region, err := p.region(ref, "ssm")
	if err != nil {
		return nil, err
	}
	c, err := p.parameterStore(ctx, region)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	out, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: awssdk.String(name), WithDecryption: awssdk.Bool(true)})
	if err != nil {
		return nil, explain(ref, "SSM Parameter Store", region, "ssm:GetParameter on the parameter (and kms:Decrypt on the key of a SecureString)", err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return nil, fmt.Errorf("%s: the parameter holds no value", ref.Raw)
	}
	if version != 0 && out.Parameter.Version != version {
		// Never hand over another version than the one asked for.
		return nil, fmt.Errorf("%s: asked for version %d, SSM answered version %d", ref.Raw, version, out.Parameter.Version)
	}
	return []byte(*out.Parameter.Value), nil
}

// Names as AWS allows them: Secrets Manager's letters, digits and
// /_+=.@-, Parameter Store's letters, digits and _.-/ (neither has a
// colon, so anything starting "arn:" must be an ARN). Both are shorter
// than maxName.
const maxName = 2048

// regionName is the shape of AWS region names (eu-west-3, us-gov-west-1,
// eusc-de-east-1): a region becomes part of the endpoint's host name.
var regionName = regexp.MustCompile(`^[a-z]{2,8}(-[a-z]{1,16}){1,3}-[0-9]{1,3}$`)

var (
	secretName    = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]+$`)
	parameterName = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)
)

// region is the region to ask about ref: its own, else its ARN's, else the
// default. A reference whose region and ARN disagree is an error: one of
// them is a typo, and asking either region could fetch the wrong secret.
func (p *Provider) region(ref secretref.Ref, service string) (string, error) {
	var arnRegion string
	if !strings.HasPrefix(ref.Path, "arn:") {
		names := secretName
		if service == "ssm" {
			names = parameterName
		}
		if len(ref.Path) > maxName || !names.MatchString(ref.Path) {
			return "", fmt.Errorf("%s: not a valid %s name or ARN", ref.Raw, service)
		}
	} else {
		a, err := arn.Parse(ref.Path)
		if err != nil {
			return "", fmt.Errorf("%s: not a valid ARN: %w", ref.Raw, err)
		}
		resource := map[string]string{"secretsmanager": "secret:", "ssm": "parameter/"}[service]
		if a.Service != service || !strings.HasPrefix(a.Resource, resource) {
			return "", fmt.Errorf("%s: the ARN names a %s resource (%s…); this reference needs a %s one (%s…)", ref.Raw, a.Service, strings.SplitN(a.Resource, ":", 2)[0], service, resource)
		}
		arnRegion = a.Region
	}
	for _, r := range []string{ref.Region, arnRegion} {
		if r != "" && !regionName.MatchString(r) {
			return "", fmt.Errorf("%s: %q is not an AWS region name (such as eu-west-3)", ref.Raw, r)
		}
	}
	switch {
	case ref.Region != "" && arnRegion != "" && ref.Region != arnRegion:
		return "", fmt.Errorf("%s: region %s differs from the ARN's region %s", ref.Raw, ref.Region, arnRegion)
	case ref.Region != "":
		return ref.Region, nil
	case arnRegion != "":
		return arnRegion, nil
	}
	if p.region0 != "" {
		return p.region0, nil
	}
	return "", fmt.Errorf("%s: %w", ref.Raw, ErrNoRegion)
}

// explain turns an SDK error into one that names the reference, the store
// and the reason: never a value (the SDK's errors hold none: the request
// names the secret, the answer failed).
func explain(ref secretref.Ref, store, region, permission string, err error) error {
	var (
		smNotFound  *smtypes.ResourceNotFoundException
		ssmNotFound *ssmtypes.ParameterNotFound
		ssmNoVer    *ssmtypes.ParameterVersionNotFound
		signing     *v4.SigningError
		send        *smithyhttp.RequestSendError
		api         smithy.APIError
	)
	switch {
	case errors.As(err, &smNotFound), errors.As(err, &ssmNotFound), errors.As(err, &ssmNoVer):
		return fmt.Errorf("%s: %w in AWS %s (region %s)", ref.Raw, secrets.ErrNotFound, store, region)
	case errors.As(err, &signing), credentialsFailed(err):
		// The credentials could not be had: the web-identity exchange
		// failed, or there are none.
		return fmt.Errorf("%s: could not get AWS credentials (a web identity, AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, is exchanged for them at STS): %w", ref.Raw, err)
	case errors.As(err, &api) && accessDenied(api.ErrorCode()):
		return fmt.Errorf("%s: %w by AWS %s (region %s): the credentials need %s: %s", ref.Raw, ErrAccessDenied, store, region, permission, api.ErrorCode())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: AWS %s (region %s) did not answer in time: %w", ref.Raw, store, region, err)
	case errors.As(err, &send), isNetError(err):
		return fmt.Errorf("%s: AWS %s (region %s) could not be reached: %w", ref.Raw, store, region, err)
	}
	return fmt.Errorf("%s: AWS %s (region %s): %w", ref.Raw, store, region, err)
}

// accessDenied reports whether an AWS error code means the credentials
// were refused.
func accessDenied(code string) bool {
	switch code {
	case "AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
		"InvalidSignatureException", "SignatureDoesNotMatch", "ExpiredTokenException",
		"InvalidClientTokenId", "KMSAccessDeniedException":
		return true
	}
	return false
}

// credentialsFailed reports whether err arose while getting credentials,
// not from the store: an STS operation inside it (the web-identity
// exchange), or the SDK's words for a credentials provider that failed
// (they are no typed error).
func credentialsFailed(err error) bool {
	for _, e := range unwrapAll(err) {
		if op, ok := e.(*smithy.OperationError); ok && (op.ServiceID == "STS" || op.ServiceID == "SSO") {
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "get identity: ") || strings.Contains(msg, "failed to retrieve credentials") || strings.Contains(msg, "failed to refresh cached credentials")
}

// unwrapAll is err and every error it wraps.
func unwrapAll(err error) []error {
	var all []error
	for queue := []error{err}; len(queue) > 0; {
		e := queue[0]
		queue = queue[1:]
		if e == nil {
			continue
		}
		all = append(all, e)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			queue = append(queue, u.Unwrap())
		case interface{ Unwrap() []error }:
			queue = append(queue, u.Unwrap()...)
		}
	}
	return all
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
