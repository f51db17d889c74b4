// Package kube is the store of `sekisho+k8s://NAMESPACE/SECRET/KEY`
// references: a key of a Kubernetes Secret, read through the API server
// with the pod's own service account (in a pod) or a kubeconfig file
// (KUBECONFIG). It needs only `get` on the Secrets it reads: RBAC can
// name them one by one (resourceNames).
package kube

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sekisho/sekisho/internal/kubeclient"
	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
)

// ServiceAccountDir is where a pod's service-account token and the
// cluster's CA are mounted.
const ServiceAccountDir = kubeclient.ServiceAccountDir

// Options say how to reach the API server: Kubeconfig if set, else the
// in-cluster address and the service account's files.
type Options struct {
	// Kubeconfig is a kubeconfig file ($KUBECONFIG; its current context).
	Kubeconfig string
	// ServiceHost and ServicePort are the API server's in-cluster address
	// ($KUBERNETES_SERVICE_HOST, $KUBERNETES_SERVICE_PORT).
	ServiceHost, ServicePort string
	// ServiceAccountDir holds the token and ca.crt; ServiceAccountDir
	// (the constant) if empty. The token is read again as the kubelet
	// rotates it.
	ServiceAccountDir string
	// Timeout bounds each request; 10 s if zero.
	Timeout time.Duration
}

// OptionsFromEnv reads KUBECONFIG, KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT, and SEKISHO_K8S_SERVICE_ACCOUNT_DIR (where the
// token and ca.crt are, if not the usual place).
func OptionsFromEnv(getenv func(string) string) Options {
	return Options{
		Kubeconfig:        getenv("KUBECONFIG"),
		ServiceHost:       getenv("KUBERNETES_SERVICE_HOST"),
		ServicePort:       getenv("KUBERNETES_SERVICE_PORT"),
		ServiceAccountDir: getenv("SEKISHO_K8S_SERVICE_ACCOUNT_DIR"),
	}
}

// Provider reads Secrets. Each Secret is fetched once per process however
// many of its keys are referenced. It is safe for concurrent use.
type Provider struct {
	client kubernetes.Interface

	mu      sync.Mutex
	secrets map[string]*secretFetch
}

type secretFetch struct {
	once sync.Once
	data map[string][]byte
	err  error
}

// New returns the store. It reads the configuration but does not yet talk
// to the API server.
func New(_ context.Context, opts Options) (*Provider, error) {
	cfg, err := restConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = opts.Timeout
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	cfg.UserAgent = "sekisho-exec"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &Provider{client: cs, secrets: map[string]*secretFetch{}}, nil
}

func restConfig(opts Options) (*rest.Config, error) {
	cfg, err := kubeclient.Config(kubeclient.Options{Kubeconfig: opts.Kubeconfig, ServiceHost: opts.ServiceHost,
		ServicePort: opts.ServicePort, ServiceAccountDir: opts.ServiceAccountDir})
	if err != nil && opts.Kubeconfig != "" {
		return nil, fmt.Errorf("KUBECONFIG: %w", err)
	}
	return cfg, err
}

// Resolve returns the value of the Secret's key ref.Path names
// (NAMESPACE/SECRET/KEY). A missing Secret or key is secrets.ErrNotFound;
// a Secret the account may not read is an error saying so.
func (p *Provider) Resolve(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	parts := strings.Split(ref.Path, "/")
	if ref.Scheme != secretref.Kubernetes || len(parts) != 3 {
		return nil, fmt.Errorf("%s: not a Kubernetes Secret reference", ref.Raw)
	}
	ns, name, key := parts[0], parts[1], parts[2]
	data, err := p.get(ctx, ns, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	v, ok := data[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w: Secret %s/%s has no key %q", ref.Raw, secrets.ErrNotFound, ns, name, key)
	}
	return v, nil
}

func (p *Provider) get(ctx context.Context, ns, name string) (map[string][]byte, error) {
	p.mu.Lock()
	f := p.secrets[ns+"/"+name]
	if f == nil {
		f = &secretFetch{}
		p.secrets[ns+"/"+name] = f
	}
	p.mu.Unlock()
	f.once.Do(func() {
		s, err := p.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			f.err = fmt.Errorf("%w: no Secret %s in namespace %s", secrets.ErrNotFound, name, ns)
		case apierrors.IsForbidden(err):
			f.err = fmt.Errorf("forbidden: RBAC does not let this account get Secret %s/%s (%v)", ns, name, err)
		case apierrors.IsUnauthorized(err):
			f.err = fmt.Errorf("the API server refused the credentials (%v)", err)
		case err != nil:
			f.err = fmt.Errorf("get Secret %s/%s: %w", ns, name, err)
		default:
			f.data = s.Data
		}
	})
	return f.data, f.err
}
