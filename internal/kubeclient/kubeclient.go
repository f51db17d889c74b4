// Package kubeclient finds the Kubernetes API server the way every part of
// sekisho that talks to it does: a kubeconfig file when one is named, else
// the pod's own service account (in-cluster). One rule, so `sekisho exec`,
// the route watcher and Secret references agree on where they connect.
package kubeclient

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ServiceAccountDir is where a pod's service-account token, namespace and
// the cluster's CA are mounted.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Options say how to reach the API server: Kubeconfig if set, else the
// in-cluster address and the service account's files.
type Options struct {
	// Kubeconfig is a kubeconfig file, or a KUBECONFIG list (the first
	// that exists, as kubectl); its current context is used.
	Kubeconfig string
	// ServiceHost and ServicePort are the API server's in-cluster address
	// ($KUBERNETES_SERVICE_HOST, $KUBERNETES_SERVICE_PORT).
	ServiceHost, ServicePort string
	// ServiceAccountDir holds the token and ca.crt; ServiceAccountDir
	// (the constant) if empty. The token is read again as the kubelet
	// rotates it.
	ServiceAccountDir string
}

// OptionsFromEnv reads the in-cluster address and, when kubeconfig is
// empty, KUBECONFIG — used only outside a pod, since a pod's own account
// comes first.
func OptionsFromEnv(kubeconfig string, getenv func(string) string) Options {
	o := Options{
		Kubeconfig:  kubeconfig,
		ServiceHost: getenv("KUBERNETES_SERVICE_HOST"),
		ServicePort: getenv("KUBERNETES_SERVICE_PORT"),
	}
	if o.Kubeconfig == "" && (o.ServiceHost == "" || o.ServicePort == "") {
		o.Kubeconfig = getenv("KUBECONFIG")
	}
	return o
}

// Config returns the client configuration for opts. It opens no socket.
func Config(opts Options) (*rest.Config, error) {
	if opts.Kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(opts.Kubeconfig)}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
		}
		return cfg, nil
	}
	if opts.ServiceHost == "" || opts.ServicePort == "" {
		return nil, errors.New("no Kubernetes API server: not in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset) and no kubeconfig is named (KUBECONFIG is unset)")
	}
	dir := opts.ServiceAccountDir
	if dir == "" {
		dir = ServiceAccountDir
	}
	token := filepath.Join(dir, "token")
	if _, err := os.Stat(token); err != nil {
		return nil, fmt.Errorf("the pod's service-account token: %w (is automountServiceAccountToken off?)", err)
	}
	// As rest.InClusterConfig, with the directory configurable; client-go
	// re-reads the token file as the kubelet rotates it.
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(opts.ServiceHost, opts.ServicePort),
		BearerTokenFile: token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(dir, "ca.crt")},
	}, nil
}

// Namespace is the namespace sekisho runs in: $POD_NAMESPACE (the chart
// sets it from the downward API), else the service account's namespace
// file.
func Namespace(getenv func(string) string, serviceAccountDir string) (string, error) {
	if ns := getenv("POD_NAMESPACE"); ns != "" {
		return ns, nil
	}
	if serviceAccountDir == "" {
		serviceAccountDir = ServiceAccountDir
	}
	b, err := os.ReadFile(filepath.Join(serviceAccountDir, "namespace"))
	if err != nil {
		return "", fmt.Errorf("the pod's namespace: POD_NAMESPACE is unset and %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
