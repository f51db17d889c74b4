// Package injectconf is the `kube.injector:` section of the configuration:
// the mutating admission webhook that wraps pods holding secret references
// with `sekisho exec`. It is apart from package inject, which brings in the
// Kubernetes and registry clients, because the config compiler checks the
// section (so `sekisho check` reports it with file:line).
package injectconf

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/sekisho/sekisho/internal/listen"
)

// DefaultImageBinary is where the sekisho image keeps its executable.
const DefaultImageBinary = "/usr/local/bin/sekisho"

// Config is the kube.injector section.
type Config struct {
	// Listen is the webhook's address; kube-apiserver calls admission
	// webhooks over HTTPS only, so TLS is required.
	Listen string `yaml:"listen"`
	// TLS is the webhook's certificate (reloaded when its files change)
	// and, with client_ca_file, the CA of kube-apiserver's client
	// certificate.
	TLS *listen.ServerTLS `yaml:"tls"`
	// Image is the sekisho image the init container runs to copy the
	// binary; ImageBinary is the executable in it.
	Image       string `yaml:"image"`
	ImageBinary string `yaml:"image_binary"`
	// Kubeconfig is the file to reach the API server with; empty means the
	// pod's in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig"`
	// PlainHTTPRegistries are registries (host:port) read over plain HTTP,
	// for test registries on loopback.
	PlainHTTPRegistries []string `yaml:"plain_http_registries"`
}

// WithDefaults fills the defaults in.
func (c Config) WithDefaults() Config {
	if c.ImageBinary == "" {
		c.ImageBinary = DefaultImageBinary
	}
	return c
}

// Built is a checked listener configuration.
type Built struct {
	TLS   *tls.Config
	Certs *listen.CertReloader
}

// Check reports every rule cfg breaks, reading the TLS files; it opens no
// socket. Keys are relative to the section.
func Check(cfg *Config) []listen.Problem {
	_, ps := Build(cfg, nil)
	return ps
}

// Build checks the section and builds the listener's TLS.
func Build(cfg *Config, log *slog.Logger) (*Built, []listen.Problem) {
	var ps []listen.Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, listen.Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	b := &Built{}
	if cfg.Listen == "" {
		add("listen", "set the injector's address, e.g. :8443")
	} else if err := listen.CheckAddr(cfg.Listen); err != nil {
		add("listen", "%v", err)
	}
	if cfg.TLS == nil {
		add("tls", "required: kube-apiserver calls admission webhooks over HTTPS only (set cert_file and key_file)")
	} else {
		var tps []listen.Problem
		b.TLS, b.Certs, tps = cfg.TLS.Build(log)
		ps = append(ps, tps...)
	}
	if cfg.Image == "" {
		add("image", "set the sekisho image the init container copies the binary from, e.g. ghcr.io/sekisho/sekisho:v1.2.3")
	} else if strings.ContainsAny(cfg.Image, " \t\n") {
		add("image", "%q is not an image reference", cfg.Image)
	}
	if cfg.ImageBinary != "" && !strings.HasPrefix(cfg.ImageBinary, "/") {
		add("image_binary", "%q is not an absolute path", cfg.ImageBinary)
	}
	for i, r := range cfg.PlainHTTPRegistries {
		host, port, err := net.SplitHostPort(r)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 || strings.Contains(r, "/") {
			add(fmt.Sprintf("plain_http_registries[%d]", i), "%q is not host:port", r)
		}
	}
	return b, ps
}
