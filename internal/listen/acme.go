package listen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	_ "unsafe" // go:linkname, see stopRenew

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

// acmeManager is an autocert.Manager that can be stopped. autocert renews
// each certificate from a timer it starts on first use and never stops on
// its own, so a listener that shut down would otherwise keep renewing (and
// keep the manager alive) for as long as the process runs: after a restart
// of the listeners in the same process, or in tests, two managers would
// renew the same names into the same cache.
type acmeManager struct {
	*autocert.Manager
	// cancel fails the CA requests in flight and refuses new ones, so that
	// a renewal running at shutdown ends at once.
	cancel context.CancelFunc
	once   sync.Once
}

// stop ends the renewals: requests to the CA fail from now on, and the
// renewal timers are stopped after any renewal in flight has returned.
// Later calls do nothing.
func (m *acmeManager) stop() {
	m.once.Do(func() {
		m.cancel()
		stopRenew(m.Manager)
	})
}

// stopRenew is autocert's own (*Manager).stopRenew, which stops every
// renewal timer and waits for renewals in flight; autocert has no exported
// way to stop them. If a future x/crypto renames it, the build fails to
// link rather than silently leaking timers.
//
//go:linkname stopRenew golang.org/x/crypto/acme/autocert.(*Manager).stopRenew
func stopRenew(m *autocert.Manager)

// stoppableTransport sends the ACME client's requests until stopped.
type stoppableTransport struct {
	next    http.RoundTripper
	stopped context.Context
}

var errACMEStopped = errors.New("acme: listener shut down")

func (t *stoppableTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.stopped.Err() != nil {
		return nil, errACMEStopped
	}
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(t.stopped, cancel)
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	// The body is read after RoundTrip returns: release the context when
	// it is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, release: func() { stop(); cancel() }}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	release func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.release()
	return err
}

// manager builds the autocert manager; the TLS listener and the HTTP-01
// challenge handler must share one, since the handler answers for tokens the
// manager created.
func (a *ACME) manager() *acmeManager {
	client := &acme.Client{DirectoryURL: a.DirectoryURL}
	if client.DirectoryURL == "" {
		client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if a.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: a.RootCAs, MinVersion: tls.VersionTLS12}
	}
	stopped, cancel := context.WithCancel(context.Background())
	client.HTTPClient = &http.Client{Transport: &stoppableTransport{next: tr, stopped: stopped}}
	allowed := autocert.HostWhitelist(a.Domains...)
	return &acmeManager{cancel: cancel, Manager: &autocert.Manager{
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
	}}
}
