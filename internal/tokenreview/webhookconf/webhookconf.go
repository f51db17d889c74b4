// Package webhookconf is the `kube.webhook:` section of the configuration:
// the TokenReview webhook's listener, the audiences it vouches for, and the
// rules that map identities to Kubernetes users. It is apart from package
// tokenreview because the config compiler runs its rules (so `sekisho
// check` reports them with file:line) while tokenreview builds on the
// compiled configuration.
package webhookconf

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/sekisho/sekisho/internal/kubeuser"
	"github.com/sekisho/sekisho/internal/listen"
)

// Config is the kube.webhook section.
type Config struct {
	// Listen is the webhook's own address. Without TLS it must be a
	// loopback address: a token sent in clear text over a network is a
	// stolen token.
	Listen string `yaml:"listen"`
	// TLS serves the webhook over HTTPS; with client_ca_file only clients
	// with a certificate from that CA (kube-apiserver) may ask.
	TLS *listen.ServerTLS `yaml:"tls"`
	// Audiences are the audiences kube-apiserver asks about
	// (--api-audiences, by default its service-account issuer) that the
	// identities this webhook maps are good for, whatever their token's own
	// "aud" says. Without them a review that names audiences succeeds only
	// for tokens whose "aud" names one of them.
	Audiences []string `yaml:"audiences"`
	// Rules and Default map identities to Kubernetes users.
	kubeuser.Config `yaml:",inline"`
}

// Built is a checked listener configuration.
type Built struct {
	// TLS is nil for plain HTTP on loopback.
	TLS *tls.Config
	// Certs serves TLS's certificate and follows its files once watched.
	Certs *listen.CertReloader
}

// Warnings are settings of cfg that are valid but likely to refuse every
// token once kube-apiserver asks.
func Warnings(cfg *Config) []listen.Problem {
	if len(cfg.Audiences) == 0 {
		return []listen.Problem{{Key: "audiences", Msg: "not set: kube-apiserver asks about its API audiences (its --api-audiences, by default its service-account issuer, e.g. https://kubernetes.default.svc.cluster.local); without them here, only tokens whose own aud names one are accepted, and API tokens never are"}}
	}
	return nil
}

// Check reports every rule of the listener settings cfg breaks, reading
// the certificate and CA files; it opens no socket. Keys are relative to
// the section. The mapping rules are compiled (and checked) by the config
// compiler with kubeuser.Compile.
func Check(cfg *Config) []listen.Problem {
	_, ps := Build(cfg, nil)
	return ps
}

// Build checks the listener settings and builds its TLS.
func Build(cfg *Config, log *slog.Logger) (*Built, []listen.Problem) {
	var ps []listen.Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, listen.Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	b := &Built{}
	switch {
	case cfg.Listen == "":
		add("listen", "set the webhook's address, e.g. 127.0.0.1:8443 (with tls, any address)")
	default:
		if err := listen.CheckAddr(cfg.Listen); err != nil {
			add("listen", "%v", err)
		} else if cfg.TLS == nil && !loopback(cfg.Listen) {
			add("listen", "%s is not a loopback address: without tls, bearer tokens would cross the network in clear text; set tls (cert_file, key_file, and client_ca_file for kube-apiserver's client certificate) or listen on 127.0.0.1", cfg.Listen)
		}
	}
	for i, a := range cfg.Audiences {
		if a == "" {
			add(fmt.Sprintf("audiences[%d]", i), "empty audience")
		}
	}
	if cfg.TLS != nil {
		var tps []listen.Problem
		b.TLS, b.Certs, tps = cfg.TLS.Build(log)
		ps = append(ps, tps...)
	}
	return b, ps
}

// loopback reports whether addr's host is a loopback IP or "localhost".
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
