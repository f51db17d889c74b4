package listen

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
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

// CABundle is what a client (kube-apiserver calling a webhook) must trust
// to verify this listener: the certificates of caFile when given, else the
// last certificate of CertFile's chain when it signed itself. A leaf that a
// CA signed is not a CA bundle: the error asks for caFile. t may be nil (no
// TLS configured): then only caFile can say.
func (t *ServerTLS) CABundle(caFile string) ([]byte, error) {
	if caFile != "" {
		return ReadPEM(caFile, "CERTIFICATE")
	}
	if t == nil || t.CertFile == "" {
		return nil, errors.New("no certificate is configured: give the CA file")
	}
	data, err := os.ReadFile(t.CertFile)
	if err != nil {
		return nil, fmt.Errorf("read tls.cert_file: %w", err)
	}
	var last *pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			last = b
		}
	}
	if last == nil {
		return nil, fmt.Errorf("tls.cert_file %s holds no certificate", t.CertFile)
	}
	c, err := x509.ParseCertificate(last.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s: %w", t.CertFile, err)
	}
	if c.CheckSignatureFrom(c) != nil {
		return nil, fmt.Errorf("tls.cert_file %s is signed by a CA it does not contain: give that CA with --ca-file", t.CertFile)
	}
	return pem.EncodeToMemory(last), nil
}

// ReadPEM reads a PEM file and checks it holds a block of the wanted type
// ("" for any: keys come in several), for files put into kubeconfigs and
// manifests, where a wrong file would only fail later, elsewhere.
func ReadPEM(file, want string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || (want != "" && b.Type != want) {
		what := "PEM data"
		if want != "" {
			what = "PEM " + want
		}
		return nil, fmt.Errorf("%s holds no %s", file, what)
	}
	return data, nil
}
