package inject

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sekisho/sekisho/internal/inject/injectconf"
	"github.com/sekisho/sekisho/internal/listen"
)

// Config is the kube.injector section.
type Config = injectconf.Config

// Server is the injector's HTTPS listener. Its listener (address, TLS
// files) is read at start; Apply changes the rest while it runs.
type Server struct {
	log      *slog.Logger
	svc      *listen.Service
	client   kubernetes.Interface
	registry *Registry
	current  atomic.Pointer[Injector]
}

// New checks cfg and builds the API client (cfg.Kubeconfig, else the
// in-cluster service account); it opens no socket. client, when not nil,
// is used instead (tests).
func New(cfg Config, client kubernetes.Interface, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	b, ps := injectconf.Build(&cfg, log)
	if len(ps) > 0 {
		return nil, fmt.Errorf("kube.injector: %w", listen.Problems(ps))
	}
	if client == nil {
		var rc *rest.Config
		var err error
		if cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("kube.injector: API server client (set kubeconfig outside a cluster): %w", err)
		}
		rc.UserAgent = "sekisho-injector"
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("kube.injector: %w", err)
		}
	}
	s := &Server{log: log, client: client, registry: &Registry{}}
	s.svc = &listen.Service{
		Name: "injector", Addr: cfg.Listen, TLS: b.TLS, Certs: b.Certs, Log: log,
		// kube-apiserver waits at most 30 s for an admission webhook.
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 30 * time.Second,
		Handler:      s.Handler(),
		Attrs:        []any{"path", Path},
	}
	s.Apply(cfg)
	return s, nil
}

// Apply takes the reloadable settings of cfg (image, image_binary,
// plain_http_registries); the registry caches are kept.
func (s *Server) Apply(cfg Config) {
	cfg = cfg.WithDefaults()
	s.registry.SetPlainHTTP(cfg.PlainHTTPRegistries)
	s.current.Store(&Injector{Image: cfg.Image, ImageBinary: cfg.ImageBinary, Client: s.client, Registry: s.registry, Log: s.log})
}

// SetLimits applies the gateway's listener limits; call it before Start.
func (s *Server) SetLimits(l listen.Limits) { s.svc.Limits = l }

// Handler answers POST Path with the current settings.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.current.Load().serveHTTP(w, r)
	})
}

// Start binds the listener and serves in the background until Shutdown.
func (s *Server) Start(ctx context.Context) error { return s.svc.Start(ctx) }

// Addr is the bound address ("" before Start).
func (s *Server) Addr() string { return s.svc.BoundAddr() }

// Shutdown stops accepting reviews and waits for those in flight until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.svc.Shutdown(ctx) }
