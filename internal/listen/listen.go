// Package listen is the first stage of the pipeline: it owns the sockets.
// It serves plain HTTP and HTTPS (certificates from files, reloaded when they
// change, or from ACME), sends plain-HTTP clients to HTTPS when TLS is on,
// bounds how long a client may take to send its headers, and drains in-flight
// requests on shutdown so a rolling update drops nothing.
package listen

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// Defaults applied when the corresponding Config field is zero.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// HTTP2HeaderListSize is the HTTP/2 header list size (names and values plus
// 32 bytes per field, as HTTP/2 counts) that net/http's HTTP/2 server allows
// for MaxHeaderBytes n: n plus room for ten fields' overhead. net/http's
// HTTP/1 server allows the request line and headers to take n plus 4096
// bytes (its read buffer's slack). Servers that are not net/http (the gRPC
// decision listener) use this so that one max_header_bytes means the same
// on every listener.
func HTTP2HeaderListSize(n int) uint32 {
	if n <= 0 {
		n = DefaultMaxHeaderBytes
	}
	const perFieldOverhead, typicalFields = 32, 10 // as net/http pads it
	return uint32(n + typicalFields*perFieldOverhead)
}

// Config says which sockets to open and how patient to be with clients.
type Config struct {
	// HTTP is the plain listener address, e.g. ":8080"; "" opens none. With
	// TLS on it only redirects to HTTPS and answers ACME HTTP-01 challenges.
	HTTP string
	// HTTPS is the TLS listener address, e.g. ":8443"; "" opens none. It needs
	// CertFile and KeyFile, or ACME.
	HTTPS string
	// CertFile and KeyFile hold the PEM certificate chain and key. They are
	// watched and re-read on change, so a renewed Kubernetes Secret takes
	// effect without a restart.
	CertFile, KeyFile string
	// ACME obtains certificates automatically instead of reading files.
	ACME *ACME

	// ReadHeaderTimeout bounds how long a client may take to send the request
	// line and headers, so slow-header (slowloris) clients cannot hold
	// connections open. 0 means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request including the body. 0
	// means no limit, because bodies can be long uploads; set it only when
	// every route has small bodies.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing the response. 0 means no limit, because
	// streamed responses and websockets legitimately last long.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers; larger requests get
	// 431. 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// DisableH2C refuses HTTP/2 cleartext (prior knowledge) on the plain
	// listener. h2c is otherwise on when TLS is off, so gRPC clients work
	// in development or behind a TLS-terminating load balancer.
	DisableH2C bool
	// RedirectPort is the HTTPS port clients reach from outside, used in the
	// HTTP→HTTPS redirect when it differs from the bound port (a Kubernetes
	// Service mapping 443 to 8443). 0 means the bound port.
	RedirectPort int

	// Logger receives listener events; nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) tlsOn() bool { return c.CertFile != "" || c.KeyFile != "" || c.ACME != nil }

// validate is Check as an error, for callers of Start that did not go
// through the config compiler.
func (c *Config) validate() error {
	if ps := Check(c); len(ps) > 0 {
		return fmt.Errorf("listen: %w", Problems(ps))
	}
	return nil
}

// Server is the set of running listeners.
type Server struct {
	log       *slog.Logger
	plain     *http.Server
	secure    *http.Server
	httpAddr  string
	httpsAddr string
	certs     *CertReloader // nil unless TLS comes from files
	acme      *acmeManager  // nil unless TLS comes from ACME
	park      *parkListener // the plain listener's; nil without one
	errc      chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start binds every configured listener before returning, so a port conflict
// is reported to the caller rather than lost in a goroutine, then serves h in
// the background. ctx bounds binding; its values (not its cancellation)
// become the base of every request context, so that cancelling ctx does not
// abort requests that Shutdown would let finish.
func Start(ctx context.Context, cfg Config, h http.Handler) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{log: cfg.Logger, errc: make(chan error, 2)}
	if s.log == nil {
		s.log = slog.Default()
	}

	var tlsConf *tls.Config
	var acmeMgr *acmeManager
	mode := "off"
	switch {
	case cfg.CertFile != "":
		certs, err := NewCertReloader(cfg.CertFile, cfg.KeyFile, s.log)
		if err != nil {
			return nil, err
		}
		s.certs = certs
		tlsConf = &tls.Config{GetCertificate: certs.GetCertificate}
		mode = "files"
	case cfg.ACME != nil:
		acmeMgr = cfg.ACME.manager()
		s.acme = acmeMgr
		// acme-tls/1 lets the CA validate over this listener (TLS-ALPN-01).
		tlsConf = &tls.Config{GetCertificate: acmeMgr.GetCertificate, NextProtos: []string{acme.ALPNProto}}
		mode = "acme"
	}

	var lns []net.Listener
	fail := func(err error) (*Server, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}

	var httpsLn net.Listener
	plainHandler := h
	if cfg.HTTPS != "" {
		ln, err := bind(ctx, cfg.HTTPS)
		if err != nil {
			return fail(err)
		}
		lns = append(lns, ln)
		httpsLn = ln
		s.httpsAddr = ln.Addr().String()
		tlsConf.MinVersion = tls.VersionTLS12
		s.secure = newHTTPServer(ctx, &cfg, h, s.log)
		s.secure.TLSConfig = tlsConf
		s.secure.Protocols = new(http.Protocols)
		s.secure.Protocols.SetHTTP1(true)
		s.secure.Protocols.SetHTTP2(true)
		_, port, _ := net.SplitHostPort(s.httpsAddr)
		if cfg.RedirectPort > 0 {
			port = strconv.Itoa(cfg.RedirectPort)
		}
		plainHandler = redirectToHTTPS(port)
		if acmeMgr != nil {
			plainHandler = acmeMgr.HTTPHandler(plainHandler)
		}
	}

	var httpLn net.Listener
	h2c := !cfg.tlsOn() && !cfg.DisableH2C
	if cfg.HTTP != "" {
		ln, err := bind(ctx, cfg.HTTP)
		if err != nil {
			return fail(err)
		}
		s.httpAddr = ln.Addr().String()
		// Idle keep-alive connections are parked (see park.go).
		pl := newParkListener(ln)
		s.park = pl
		lns = append(lns, pl)
		httpLn = pl
		s.plain = newHTTPServer(ctx, &cfg, plainHandler, s.log)
		s.plain.ConnState = pl.connState
		s.plain.Protocols = new(http.Protocols)
		s.plain.Protocols.SetHTTP1(true)
		s.plain.Protocols.SetUnencryptedHTTP2(h2c)
	}

	if s.certs != nil {
		if err := s.certs.Watch(); err != nil {
			return fail(err)
		}
	}
	if s.secure != nil {
		go s.serve(func() error { return s.secure.ServeTLS(httpsLn, "", "") })
	}
	if s.plain != nil {
		go s.serve(func() error { return s.plain.Serve(httpLn) })
	}
	s.log.Info("listening", "http", s.httpAddr, "https", s.httpsAddr, "tls", mode, "h2c", h2c && s.plain != nil)
	return s, nil
}

func bind(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: bind %s: %w", addr, err)
	}
	return ln, nil
}

func newHTTPServer(ctx context.Context, cfg *Config, h http.Handler, log *slog.Logger) *http.Server {
	base := context.WithoutCancel(ctx)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		// Handshake failures land here; they are how an ACME or certificate
		// problem shows, so they are warnings rather than debug noise.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if srv.IdleTimeout == 0 {
		srv.IdleTimeout = DefaultIdleTimeout
	}
	if srv.MaxHeaderBytes == 0 {
		srv.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return srv
}

func (s *Server) serve(run func() error) {
	if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("serve loop stopped", "err", err)
		s.errc <- err
	}
}

// HTTPAddr is the bound plain address ("" when none), useful when the
// configured port was 0.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// HTTPSAddr is the bound TLS address ("" when none).
func (s *Server) HTTPSAddr() string { return s.httpsAddr }

// Err delivers an error when a serve loop stops on its own, so the caller can
// exit instead of running without a listener.
func (s *Server) Err() <-chan error { return s.errc }

// ReloadCertificate re-reads the certificate files now, for SIGHUP. A bad
// pair is reported and the current certificate stays in use. Without file
// TLS there is nothing to reload and it returns nil.
func (s *Server) ReloadCertificate() error {
	if s.certs == nil {
		return nil
	}
	return s.certs.Reload()
}

// Shutdown stops accepting connections and lets in-flight requests finish
// until ctx is done; then it cuts the remaining connections and returns
// ctx's error. Later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.log.Info("draining listeners")
		s.certs.Close()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, srv := range []*http.Server{s.plain, s.secure} {
			if srv == nil {
				continue
			}
			wg.Go(func() {
				if err := srv.Shutdown(ctx); err != nil {
					errs[i] = err
					srv.Close()
				}
			})
		}
		wg.Wait()
		if s.acme != nil {
			s.acme.stop() // no renewals from a listener that is gone
		}
		s.shutdownErr = cmp.Or(errs...)
		if s.shutdownErr != nil {
			s.log.Warn("drain deadline passed, connections cut", "err", s.shutdownErr)
		} else {
			s.log.Info("listeners drained")
		}
	})
	return s.shutdownErr
}
