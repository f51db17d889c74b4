package listen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/sekisho/sekisho/internal/normalize"
)

// ACME obtains and renews certificates from an ACME CA (Let's Encrypt by
// default) for a fixed list of domains. Configuring it accepts the CA's
// terms of service.
type ACME struct {
	// Email is the account contact the CA warns about expiry; optional.
	Email string
	// Domains are the only names a certificate is requested for, so a client
	// cannot make sekisho ask the CA for arbitrary names.
	Domains []string
	// CacheDir keeps the account key and certificates across restarts;
	// without it every restart would re-issue and soon hit CA rate limits.
	CacheDir string
	// DirectoryURL is the CA's ACME directory; "" means Let's Encrypt
	// production.
	DirectoryURL string
	// RootCAs, when set, are the only roots trusted for the CA's own HTTPS
	// endpoint (a private or test CA); nil means the system roots.
	RootCAs *x509.CertPool
}

func (a *ACME) validate() error {
	if len(a.Domains) == 0 {
		return errors.New("listen: acme needs at least one domain")
	}
	for _, d := range a.Domains {
		if h, ok := normalize.Host(d); !ok || h != d {
			return fmt.Errorf("listen: acme domain %q is not a lower-case host name without port", d)
		}
	}
	if a.CacheDir == "" {
		return errors.New("listen: acme needs a cache_dir to keep certificates across restarts")
	}
	return nil
}

// manager builds the autocert manager; the TLS listener and the HTTP-01
// challenge handler must share one, since the handler answers for tokens the
// manager created.
func (a *ACME) manager() *autocert.Manager {
	client := &acme.Client{DirectoryURL: a.DirectoryURL}
	if client.DirectoryURL == "" {
		client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if a.RootCAs != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: a.RootCAs, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr}
	}
	allowed := autocert.HostWhitelist(a.Domains...)
	return &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Cache:  autocert.DirCache(a.CacheDir),
		Email:  a.Email,
		Client: client,
		// HTTP-01 requests carry a Host that may have a port or upper case;
		// normalise it before the exact-match whitelist.
		HostPolicy: func(ctx context.Context, host string) error {
			h, ok := normalize.Host(host)
			if !ok {
				return fmt.Errorf("acme: invalid host %q", host)
			}
			return allowed(ctx, h)
		},
	}
}
