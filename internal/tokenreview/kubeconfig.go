package tokenreview

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"

	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/listen"
)

// KubeconfigOptions describe how kube-apiserver reaches the webhook.
type KubeconfigOptions struct {
	// Server is the webhook's URL as kube-apiserver reaches it; default
	// from the listen address (which must then name a host).
	Server string
	// CAFile holds the CA that signed the webhook's certificate; default
	// the certificate file itself when its chain ends in a self-signed
	// certificate.
	CAFile string
	// ClientCertFile and ClientKeyFile are kube-apiserver's client
	// certificate, for a webhook that requires one (tls.client_ca_file).
	ClientCertFile string
	ClientKeyFile  string
}

// Kubeconfig returns the file for kube-apiserver's
// --authentication-token-webhook-config-file: the webhook's URL, the CA
// that verifies it and, optionally, the client certificate it presents.
func Kubeconfig(cfg Config, o KubeconfigOptions) ([]byte, error) {
	server, err := serverURL(cfg, o.Server)
	if err != nil {
		return nil, err
	}
	cluster := clientcmdv1.Cluster{Server: server}
	if u, _ := url.Parse(server); u.Scheme == "https" {
		ca, err := cfg.TLS.CABundle(o.CAFile)
		if err != nil {
			return nil, err
		}
		cluster.CertificateAuthorityData = ca
	}
	var user clientcmdv1.AuthInfo
	switch {
	case (o.ClientCertFile == "") != (o.ClientKeyFile == ""):
		return nil, errors.New("give --client-cert and --client-key together")
	case o.ClientCertFile != "":
		if user.ClientCertificateData, err = listen.ReadPEM(o.ClientCertFile, "CERTIFICATE"); err != nil {
			return nil, err
		}
		if user.ClientKeyData, err = listen.ReadPEM(o.ClientKeyFile, ""); err != nil {
			return nil, err
		}
	case cfg.TLS != nil && cfg.TLS.ClientCAFile != "":
		return nil, errors.New("the webhook requires client certificates (tls.client_ca_file): give kube-apiserver's with --client-cert and --client-key")
	}
	kc := clientcmdv1.Config{
		Kind:           "Config",
		APIVersion:     "v1",
		Clusters:       []clientcmdv1.NamedCluster{{Name: "sekisho", Cluster: cluster}},
		AuthInfos:      []clientcmdv1.NamedAuthInfo{{Name: "kube-apiserver", AuthInfo: user}},
		Contexts:       []clientcmdv1.NamedContext{{Name: "sekisho", Context: clientcmdv1.Context{Cluster: "sekisho", AuthInfo: "kube-apiserver"}}},
		CurrentContext: "sekisho",
	}
	out, err := yaml.Marshal(&kc)
	if err != nil {
		return nil, fmt.Errorf("encode kubeconfig: %w", err)
	}
	return out, nil
}

func serverURL(cfg Config, server string) (string, error) {
	if server == "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return "", fmt.Errorf("kube.webhook.listen %q is not host:port", cfg.Listen)
		}
		if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
			return "", fmt.Errorf("kube.webhook.listen %s names no host kube-apiserver could reach: give --server https://HOST:%s", cfg.Listen, port)
		}
		scheme := "http"
		if cfg.TLS != nil {
			scheme = "https"
		}
		return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port), Path: Path}).String(), nil
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--server %q is not an http(s)://host[:port][/path] URL", server)
	}
	if u.Scheme == "http" && cfg.TLS != nil {
		return "", fmt.Errorf("--server %q is http, but the webhook serves https (tls is set)", server)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = Path
	}
	return u.String(), nil
}
