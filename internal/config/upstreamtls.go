package config

import (
	"crypto/tls"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/proxy"
)

// upstreamTLS compiles a route's upstream_tls into the client TLS settings
// of its pool. It resolves the file paths in r (so that poolKey digests the
// files actually read) and reports false when a problem was recorded.
// Messages name files, never their contents.
func (c *compiler) upstreamTLS(r *Route, backends []proxy.Backend, at []any) (*tls.Config, bool) {
	t := r.UpstreamTLS
	if t == nil {
		return nil, true
	}
	at = append(at[:len(at):len(at)], "upstream_tls")
	t.CAFile, t.CertFile, t.KeyFile = c.path(t.CAFile), c.path(t.CertFile), c.path(t.KeyFile)
	before := len(c.problems)
	https := false
	for _, be := range backends {
		https = https || be.URL.Scheme == "https"
	}
	if !https {
		c.addf(at, "upstream_tls applies to https upstreams, and route %q has none", r.Name)
	}
	if t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" && t.ServerName == "" {
		c.addf(at, "set ca_file, cert_file and key_file, or server_name")
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := listen.LoadCAPool(t.CAFile)
		if err != nil {
			c.addf(append(at, "ca_file"), "%v", err)
		}
		conf.RootCAs = pool
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "" || t.KeyFile == "":
		c.addf(at, "cert_file and key_file go together")
	default:
		cert, err := listen.LoadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			c.addProblems(at, []listen.Problem{listen.FileProblem("", err)})
			break
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, len(c.problems) == before
}
