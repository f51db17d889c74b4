package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Service is the listener of a mode that serves other software rather
// than browsers (the token webhook kube-apiserver calls, the injector's
// admission webhook): bound at Start, TLS from ServerTLS.Build, the
// gateway's limits, its certificate files watched, drained by Shutdown.
// One implementation, so such listeners cannot drift apart in their
// timeouts or their handling of certificate renewal.
type Service struct {
	// Name is the listener in errors and logs ("token webhook").
	Name string
	// Addr is the address to bind.
	Addr string
	// TLS serves https; nil for plain HTTP (the config rules decide when
	// that is allowed). Certs, when set, is its certificate's reloader.
	TLS   *tls.Config
	Certs *CertReloader
	// Limits are the gateway listener's; zero fields take its defaults.
	Limits Limits
	// ReadTimeout, when set, bounds reading a whole request (after its
	// headers); WriteTimeout bounds the answer. Zero: no bound.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	Handler      http.Handler
	Log          *slog.Logger
	// Attrs are logged with the "listening" line.
	Attrs []any

	mu    sync.Mutex
	srv   *http.Server
	bound string
}

// Start binds the listener and serves in the background until Shutdown.
// The requests' context outlives ctx's cancellation (requests drain).
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("%s listener %s: %w", s.Name, s.Addr, err)
	}
	s.bound = ln.Addr().String()
	if s.TLS != nil {
		ln = tls.NewListener(ln, s.TLS)
	}
	l := s.Limits.WithDefaults()
	read := time.Duration(0)
	if s.ReadTimeout > 0 {
		read = l.ReadHeaderTimeout + s.ReadTimeout
	}
	s.srv = &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       read,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	go func(srv *http.Server, ln net.Listener, addr string) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(s.Name+" listener stopped", "addr", addr, "error", err)
		}
	}(s.srv, ln, s.bound)
	if s.Certs != nil {
		if err := s.Certs.Watch(); err != nil {
			log.Warn(s.Name+" TLS certificate files are not watched; restart to renew", "error", err)
		}
	}
	attrs := append([]any{"addr", s.bound, "tls", s.TLS != nil,
		"client_certificates", s.TLS != nil && s.TLS.ClientAuth == tls.RequireAndVerifyClientCert}, s.Attrs...)
	log.Info(s.Name+" listening", attrs...)
	return nil
}

// BoundAddr is the bound address ("" before Start), useful when Addr asked
// for port 0.
func (s *Service) BoundAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Shutdown stops accepting requests and waits for those in flight until
// ctx ends; it stops watching the certificate files.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	s.Certs.Close()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}
