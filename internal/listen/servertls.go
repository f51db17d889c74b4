package listen

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// ServerTLS is the certificate of a listener that serves other software
// (the decision service, the TokenReview webhook) rather than browsers and,
// optionally, the CA its clients' certificates must chain to (mTLS): one
// shape and one set of rules, so every such listener is configured alike.
type ServerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Build checks t and builds the listener's TLS configuration. The
// certificate is served by a CertReloader, so a renewed Secret takes effect
// without a restart once the caller watches it. With ClientCAFile, clients
// must present a certificate that chains to it. Keys of the problems are
// relative to the tls section ("tls.client_ca_file"). On a problem the
// results may be nil.
func (t *ServerTLS) Build(log *slog.Logger) (*tls.Config, *CertReloader, []Problem) {
	var ps []Problem
	if t.CertFile == "" || t.KeyFile == "" {
		ps = append(ps, Problem{Key: "tls", Msg: "cert_file and key_file are both required"})
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pool, err := LoadCAPool(t.ClientCAFile)
		if err != nil {
			ps = append(ps, Problem{Key: "tls.client_ca_file", Msg: err.Error()})
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, ps
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	certs, err := NewCertReloader(t.CertFile, t.KeyFile, log)
	if err != nil {
		return nil, nil, append(ps, FileProblem("tls", err))
	}
	c.GetCertificate = certs.GetCertificate
	return c, certs, ps
}

// Limits bound what a client of a listener that serves other software may
// send and how long it may take. Those listeners take the gateway
// listener's settings (listen.read_header_timeout, idle_timeout,
// max_header_bytes), so a caller is held to the same limits everywhere.
type Limits struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// WithDefaults fills zero fields with the gateway listener's defaults.
func (l Limits) WithDefaults() Limits {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return l
}
