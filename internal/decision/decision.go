// Package decision is sekisho's decision service: the "decide" end of the
// pipeline. Envoy, Istio, Emissary and Gateway API implementations (ext_authz
// over HTTP and gRPC), nginx auth_request and Traefik or Caddy forward-auth
// describe a request they received; the service runs the same engine as the
// gateway on that description and answers allow or deny in the asking
// proxy's dialect, with the identity headers the proxy should pass upstream.
//
// Only trusted proxies may describe requests: anyone else could claim any
// method, host or path (the spoofed X-Forwarded-Uri bypass of oauth2-proxy,
// CVE-2026-40575) and learn or obtain decisions for requests they never sent.
package decision

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/sekisho/sekisho/internal/decision/decisionconf"
	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/tracing"
)

// Config is the `decision:` section of the configuration file; its rules
// are in decisionconf, where the config compiler runs them too.
type Config = decisionconf.Config

// TLS is the certificate of the decision listeners and, optionally, the CA
// that client certificates must chain to (mTLS).
type TLS = decisionconf.TLS

// LoginStarter sends browsers to sign in. The decision service never serves
// the login flow itself; it only tells the asking proxy where to send a
// browser that needs a session (the login service implements this).
type LoginStarter interface {
	// LoginURL is the address that signs a browser in and then returns it to
	// returnTo, an absolute URL. ok is false when returnTo is not a safe
	// redirect target for a request to host (see login.SafeRedirect).
	LoginURL(returnTo, host string) (url string, ok bool)
}

// Server answers decision requests on the current configuration snapshot.
type Server struct {
	cfg      Config
	current  func() *snapshot.Snapshot
	log      *slog.Logger
	trust    *normalize.Trust
	tls      *tls.Config // nil without TLS
	certs    *listen.CertReloader
	loginFor func(*snapshot.Snapshot) LoginStarter
	limits   Limits
	tracer   *tracing.Tracer // nil: tracing off

	mu       sync.Mutex
	httpSrv  *http.Server
	grpcSrv  *grpc.Server
	httpAddr string
	grpcAddr string
}

// New checks cfg (addresses, CIDRs, certificate files) without opening any
// socket, by the same rules `sekisho check` reports (decisionconf.Check).
// current returns the snapshot to decide on; nil while none is loaded.
func New(cfg Config, current func() *snapshot.Snapshot, log *slog.Logger) (*Server, error) {
	if current == nil {
		return nil, errors.New("decision: no snapshot source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, ps := decisionconf.Build(&cfg, log)
	if len(ps) > 0 {
		return nil, fmt.Errorf("decision: %w", listen.Problems(ps))
	}
	return &Server{cfg: cfg, current: current, log: log, trust: b.Trust, tls: b.TLS, certs: b.Certs}, nil
}

// SetLogin makes browser redirects possible: for each snapshot, f returns
// the login to send browsers to, or nil when the snapshot has none. Without
// it, browsers get 401 like any other client. Call it before serving.
func (s *Server) SetLogin(f func(*snapshot.Snapshot) LoginStarter) { s.loginFor = f }

func (s *Server) login(snap *snapshot.Snapshot) LoginStarter {
	if s.loginFor == nil {
		return nil
	}
	return s.loginFor(snap)
}

// trusted reports whether a peer may describe requests: it is a trusted
// proxy address, or it presented a client certificate that verified.
func (s *Server) trusted(peer netip.Addr, state *tls.ConnectionState) bool {
	if state != nil && len(state.VerifiedChains) > 0 {
		return true
	}
	return s.trust.Contains(peer)
}

// Start binds the configured listeners and serves them in the background
// until Shutdown. Bind errors name the address.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lc net.ListenConfig
	var httpLn, grpcLn net.Listener
	if s.cfg.Listen != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("decision listener %s: %w", s.cfg.Listen, err)
		}
		httpLn = ln
	}
	if s.cfg.GRPC != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.GRPC)
		if err != nil {
			if httpLn != nil {
				httpLn.Close()
			}
			return fmt.Errorf("decision gRPC listener %s: %w", s.cfg.GRPC, err)
		}
		grpcLn = ln
	}

	limits := s.limits.WithDefaults()
	// Trust by address is checked at accept, before anything is parsed;
	// with a client CA the handshake requires a verified certificate, and
	// a verified client is trusted whatever its address.
	byAddress := s.tls == nil || s.tls.ClientAuth != tls.RequireAndVerifyClientCert
	if httpLn != nil {
		s.httpAddr = httpLn.Addr().String()
		if byAddress {
			httpLn = newTrustListener(httpLn, s.trust, s.log, "http")
		}
		if s.tls != nil {
			httpLn = tls.NewListener(httpLn, s.tls)
		}
		s.httpSrv = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: limits.ReadHeaderTimeout,
			IdleTimeout:       limits.IdleTimeout,
			MaxHeaderBytes:    limits.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
		go func(srv *http.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("decision listener stopped", "addr", s.httpAddr, "error", err)
			}
		}(s.httpSrv, httpLn)
	}
	if grpcLn != nil {
		s.grpcAddr = grpcLn.Addr().String()
		if byAddress {
			grpcLn = newTrustListener(grpcLn, s.trust, s.log, "grpc")
		}
		opts := []grpc.ServerOption{
			grpc.MaxHeaderListSize(listen.HTTP2HeaderListSize(limits.MaxHeaderBytes)),
			grpc.ConnectionTimeout(limits.ReadHeaderTimeout),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: limits.IdleTimeout}),
		}
		if s.tls != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
		}
		s.grpcSrv = grpc.NewServer(opts...)
		s.RegisterGRPC(s.grpcSrv)
		go func(srv *grpc.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil {
				s.log.Error("decision gRPC listener stopped", "addr", s.grpcAddr, "error", err)
			}
		}(s.grpcSrv, grpcLn)
	}
	if s.certs != nil {
		if err := s.certs.Watch(); err != nil {
			s.log.Warn("decision TLS certificate files are not watched; restart to renew", "error", err)
		}
	}
	s.log.Info("decision service listening", "http", s.httpAddr, "grpc", s.grpcAddr)
	return nil
}

// Addrs are the bound addresses ("" for a listener that is not configured
// or not started), useful when the configuration asked for port 0.
func (s *Server) Addrs() (httpAddr, grpcAddr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr, s.grpcAddr
}

// Shutdown stops accepting decision requests and waits for those in flight
// until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	httpSrv, grpcSrv := s.httpSrv, s.grpcSrv
	s.mu.Unlock()
	s.certs.Close()
	var err error
	if httpSrv != nil {
		err = httpSrv.Shutdown(ctx)
	}
	if grpcSrv != nil {
		done := make(chan struct{})
		go func() {
			grpcSrv.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			grpcSrv.Stop()
			<-done
			err = errors.Join(err, fmt.Errorf("decision gRPC shutdown: %w", ctx.Err()))
		}
	}
	return err
}
