// Package decisionconf is the `decision:` section of the configuration and
// the one implementation of its rules. It is apart from package decision
// because the config compiler runs these rules (so that `sekisho check`
// reports them with file:line) while package decision builds on the
// compiled configuration; the rules cannot live in both.
package decisionconf

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/normalize"
)

// Config configures the decision service listeners: Listen is the HTTP
// decision listener (Envoy/Istio/Emissary/Gateway API HTTP ext_authz, nginx
// auth_request, Traefik and Caddy forward-auth), GRPC the Envoy ext_authz
// gRPC listener, TrustedProxies the addresses allowed to describe requests
// (default loopback only), and TLS serves both listeners over TLS; with a
// client CA it requires client certificates, and a verified client is
// trusted whatever its address.
type Config struct {
	Listen         string   `yaml:"listen"`
	GRPC           string   `yaml:"grpc"`
	TrustedProxies []string `yaml:"trusted_proxies"`
	TLS            *TLS     `yaml:"tls"`
}

// TLS serves the decision listeners over TLS, optionally requiring client
// certificates (mTLS).
type TLS = listen.ServerTLS

// DefaultTrustedProxies is loopback: a proxy on the same host (or pod) may
// ask.
var DefaultTrustedProxies = []string{"127.0.0.0/8", "::1"}

// Built is a checked decision configuration, ready for the listeners.
type Built struct {
	// Trust holds the addresses that may describe requests.
	Trust *normalize.Trust
	// TLS is the listeners' TLS configuration; nil without TLS.
	TLS *tls.Config
	// Certs serves TLS's certificate and follows its files once watched;
	// nil without TLS.
	Certs *listen.CertReloader
}

// Check reports every rule cfg breaks, reading the certificate and CA
// files; it opens no socket. Keys are relative to the decision section.
func Check(cfg *Config) []listen.Problem {
	_, ps := Build(cfg, nil)
	return ps
}

// Build checks cfg (Check is Build without the result) and builds what the
// listeners need. The certificate is served by the same reloader as the
// gateway's, so a renewed Secret takes effect without a restart once the
// caller watches it.
func Build(cfg *Config, log *slog.Logger) (*Built, []listen.Problem) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ps []listen.Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, listen.Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if cfg.Listen == "" && cfg.GRPC == "" {
		add("", "set listen (HTTP) and/or grpc (Envoy ext_authz)")
	}
	for _, a := range [...]struct{ key, addr string }{{"listen", cfg.Listen}, {"grpc", cfg.GRPC}} {
		if a.addr == "" {
			continue
		}
		if err := listen.CheckAddr(a.addr); err != nil {
			add(a.key, "%v", err)
		}
	}
	cidrs := cfg.TrustedProxies
	if len(cidrs) == 0 {
		cidrs = DefaultTrustedProxies
	}
	b := &Built{}
	trust, err := normalize.NewTrust(cidrs)
	if err != nil {
		add("trusted_proxies", "%v", err)
	}
	b.Trust = trust
	if cfg.TLS != nil {
		var tps []listen.Problem
		b.TLS, b.Certs, tps = cfg.TLS.Build(log)
		ps = append(ps, tps...)
	}
	return b, ps
}
