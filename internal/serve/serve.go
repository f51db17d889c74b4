// Package serve runs the gateway process: it loads the first snapshot,
// starts the listeners and the admin endpoints, reloads the configuration
// when the file changes or on SIGHUP, and drains on shutdown.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/decision"
	"github.com/sekisho/sekisho/internal/devidp"
	"github.com/sekisho/sekisho/internal/gateway"
	"github.com/sekisho/sekisho/internal/inject"
	"github.com/sekisho/sekisho/internal/kubesecret"
	"github.com/sekisho/sekisho/internal/kubesource"
	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/tokenreview"
	"github.com/sekisho/sekisho/internal/tracing"
)

// Options configure one run of the gateway.
type Options struct {
	// ConfigPath is the file to load and watch. When empty, DefaultConfig is
	// used and nothing is watched.
	ConfigPath string
	// DefaultConfig is the embedded configuration used without ConfigPath.
	DefaultConfig []byte
	// LogOutput receives the logs (os.Stderr when nil).
	LogOutput io.Writer
	// Started, when set, is called once the listeners are bound, with the
	// running instance (tests use it to learn the addresses).
	Started func(*Instance)
}

// Instance is a running gateway.
type Instance struct {
	Gateway   *gateway.Gateway
	Metrics   *telemetry.Metrics
	Server    *listen.Server
	AdminAddr string
	// Decision is the decision service, nil unless configured.
	Decision *decision.Server
	// TokenReview is the Kubernetes token webhook, nil unless configured.
	TokenReview *tokenreview.Server
	// Injector is the admission webhook that wraps pods with sekisho
	// exec, nil unless configured.
	Injector *inject.Server
	// Resources watches the Route objects whose routes are served beside
	// the file's, nil without kube.resources.
	Resources *kubesource.Source

	log      *slog.Logger
	level    *slog.LevelVar
	started  *config.File // settings the process started with (start-only sections)
	opts     Options
	cfgOpts  config.Options
	reloadMu sync.Mutex
	draining atomic.Bool
	// serving is set once every listener is bound: /readyz says ready
	// only then, so a probe never sends traffic to a mode not yet up.
	serving atomic.Bool
	watcher *fsnotify.Watcher
	// secrets writes the Kubernetes Secrets file settings reference into
	// files and keeps them current.
	secrets *kubesecret.Materializer
}

// ready is /readyz: every listener bound, a snapshot loaded, not draining.
func (inst *Instance) ready() bool {
	return inst.serving.Load() && inst.Gateway.Ready() && !inst.draining.Load()
}

// watchExtra adds the directories of files the config refers to (API
// tokens) to the watch, so editing them reloads too.
func (inst *Instance) watchExtra() {
	if inst.watcher == nil {
		return
	}
	for _, f := range inst.Gateway.Snapshot().WatchFiles {
		if err := inst.watcher.Add(filepath.Dir(f)); err != nil {
			inst.log.Warn("cannot watch file; reload with SIGHUP after changing it", "file", f, "error", err)
		}
	}
}

// Run serves until ctx is cancelled (SIGTERM/SIGINT in main), then drains
// in-flight requests within listen.shutdown_timeout and returns nil.
func Run(ctx context.Context, opts Options) error {
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	bootLog := slog.New(slog.NewJSONHandler(opts.LogOutput, nil))
	inst := &Instance{Metrics: telemetry.NewMetrics(), opts: opts, log: bootLog}
	inst.cfgOpts = config.Options{
		Logger:          bootLog,
		OnUpstreamError: inst.Metrics.UpstreamError,
		OnJWTUnknownKID: inst.Metrics.JWTUnknownKID,
		OnJWKSRefresh:   inst.Metrics.JWKSRefresh,
		OnTokenCache:    inst.Metrics.TokenCache,
		OnSessionCache:  inst.Metrics.SessionCache,
		// One pool for the life of the process: each snapshot takes its
		// parts from it, so a reload keeps the unchanged ones.
		Reuse: reuse.NewPool(reuse.Options{}),
		// Likewise one router of built-in providers: a reload that
		// rebuilds one still serves it to the JWT verifier it kept.
		Builtins: devidp.NewRouter(),
		// The parts outlive ctx while requests drain: each one's context
		// is cancelled by its own close, when the last snapshot holding
		// it is closed.
		Context: context.WithoutCancel(ctx),
	}

	// The log settings are read first so that everything built from the
	// config logs in the configured format.
	file, err := inst.logSettings()
	if err != nil {
		return err
	}
	level, err := telemetry.ParseLevel(file.Log.Level)
	if err != nil {
		return err
	}
	inst.level = new(slog.LevelVar)
	inst.level.Set(level)
	log, err := telemetry.NewLogger(opts.LogOutput, file.Log.Format, inst.level)
	if err != nil {
		return err
	}
	inst.log = log
	inst.cfgOpts.Logger = log
	routeClientLogs(log)
	inst.secrets = kubesecret.New(kubesecret.Options{Logger: log})
	defer func() {
		if err := inst.secrets.Close(); err != nil {
			log.Warn("cannot remove the files of Kubernetes Secrets", "error", err)
		}
	}()
	session.SetRedisLogger(log)
	stopResources, err := inst.startResources(ctx, file)
	if err != nil {
		return err
	}
	defer stopResources()
	// A change of Route objects may ask for a reload before the gateway
	// exists: it waits for the first snapshot.
	inst.reloadMu.Lock()
	snap, file, err := inst.load()
	if err != nil {
		inst.reloadMu.Unlock()
		return err
	}
	inst.started = file
	tp, err := tracing.Start(ctx, file.Tracing, log)
	if err != nil {
		inst.reloadMu.Unlock()
		snap.Close()
		return err
	}
	if tp != nil {
		log.Info("tracing on", "protocol", tp.Protocol, "configured_by", tp.Source)
		// Last out: the spans of the drained requests are sent too.
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
			defer cancel()
			if err := tp.Shutdown(fctx); err != nil {
				log.Warn("some spans were not sent before exit", "error", err)
			}
		}()
	}
	inst.Gateway = gateway.New(log, inst.Metrics, *file.Log.Access)
	inst.Gateway.SetTracer(tp.Tracer())
	_, gen := inst.Gateway.Swap(snap)
	inst.Metrics.Reload(true, gen)
	inst.reportResources(snap)
	inst.reloadMu.Unlock()

	adminLn, err := net.Listen("tcp", file.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", file.Admin.Listen, err)
	}
	inst.AdminAddr = adminLn.Addr().String()
	adminSrv := &http.Server{
		Handler: admin.Handler(admin.Options{
			Ready:   inst.ready,
			Metrics: inst.Metrics.Handler(),
			Pprof:   file.Admin.Pprof,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "error", err)
		}
	}()
	defer adminSrv.Close()

	// stopModes shuts the decision service and the token webhook down,
	// within ctx.
	stopModes := func(ctx context.Context) {
		// A replica on its way out writes no more status: another takes
		// the Lease at once.
		stopResources()
		if inst.Decision != nil {
			if err := inst.Decision.Shutdown(ctx); err != nil {
				log.Warn("decision service drain did not finish in time", "error", err)
			}
		}
		if inst.TokenReview != nil {
			if err := inst.TokenReview.Shutdown(ctx); err != nil {
				log.Warn("token webhook drain did not finish in time", "error", err)
			}
		}
		if inst.Injector != nil {
			if err := inst.Injector.Shutdown(ctx); err != nil {
				log.Warn("injector drain did not finish in time", "error", err)
			}
		}
	}
	if file.Decision != nil {
		if inst.Decision, err = startDecision(ctx, file, inst.Gateway.Snapshot, log, tp.Tracer()); err != nil {
			return err
		}
	}
	if file.Kube != nil && file.Kube.Webhook != nil {
		if inst.TokenReview, err = inst.startTokenReview(ctx, file); err != nil {
			stopModes(context.Background())
			return err
		}
	}

	if file.Kube != nil && file.Kube.Injector != nil {
		if inst.Injector, err = inst.startInjector(ctx, file); err != nil {
			stopModes(context.Background())
			return err
		}
	}

	// A file that runs only the token webhook has no gateway listener.
	var srvErr <-chan error
	if lc := listenConfig(file, log); lc.HTTP != "" || lc.HTTPS != "" {
		srv, err := listen.Start(ctx, lc, inst.Gateway)
		if err != nil {
			stopModes(context.Background())
			return err
		}
		inst.Server = srv
		srvErr = srv.Err()
		log.Info("sekisho started", "config", snap.Source, "http", srv.HTTPAddr(), "https", srv.HTTPSAddr(), "admin", inst.AdminAddr, "routes", snap.Routes.Len())
	} else {
		log.Info("sekisho started without a gateway listener", "config", snap.Source, "admin", inst.AdminAddr)
	}

	inst.serving.Store(true)
	go trimMemory(ctx)
	stopWatch := inst.watch(ctx)
	defer stopWatch()
	if opts.Started != nil {
		opts.Started(inst)
	}

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		log.Error("listener failed", "error", err)
		stopModes(context.Background())
		return err
	}
	inst.draining.Store(true)
	log.Info("draining", "timeout", file.Listen.ShutdownTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), file.Listen.ShutdownTimeout)
	defer cancel()
	stopModes(dctx)
	if inst.Server != nil {
		if err := inst.Server.Shutdown(dctx); err != nil {
			log.Warn("drain did not finish in time; remaining connections closed", "error", err)
		}
	}
	if s := inst.Gateway.Snapshot(); s != nil {
		s.Close()
	}
	log.Info("stopped")
	return nil
}

// startDecision starts the decision service on the same snapshots as the
// gateway; browsers it must send to sign in go to the login service.
func startDecision(ctx context.Context, f *config.File, current func() *snapshot.Snapshot, log *slog.Logger, tracer *tracing.Tracer) (*decision.Server, error) {
	srv, err := decision.New(*f.Decision, current, log)
	if err != nil {
		return nil, err
	}
	srv.SetTracer(tracer)
	// The gateway's limits: a decision caller is held to the same header
	// size and timeouts as a client of the gateway.
	srv.SetLimits(decision.Limits{
		ReadHeaderTimeout: f.Listen.ReadHeaderTimeout,
		IdleTimeout:       f.Listen.IdleTimeout,
		MaxHeaderBytes:    f.Listen.MaxHeaderBytes,
	})
	srv.SetLogin(func(s *snapshot.Snapshot) decision.LoginStarter {
		if s.Login == nil {
			return nil
		}
		return s.Login.Service
	})
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// startTokenReview starts the Kubernetes token webhook on the same
// snapshots as the gateway, held to the gateway listener's limits.
func (inst *Instance) startTokenReview(ctx context.Context, f *config.File) (*tokenreview.Server, error) {
	srv, err := tokenreview.New(*f.Kube.Webhook, inst.Gateway.Snapshot, inst.log)
	if err != nil {
		return nil, err
	}
	srv.SetLimits(tokenreview.Limits{
		ReadHeaderTimeout: f.Listen.ReadHeaderTimeout,
		IdleTimeout:       f.Listen.IdleTimeout,
		MaxHeaderBytes:    f.Listen.MaxHeaderBytes,
	})
	srv.OnReview = inst.Metrics.TokenReview
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// startInjector starts the admission webhook that wraps pods with
// sekisho exec, held to the gateway listener's limits.
func (inst *Instance) startInjector(ctx context.Context, f *config.File) (*inject.Server, error) {
	srv, err := inject.New(*f.Kube.Injector, nil, inst.log)
	if err != nil {
		return nil, err
	}
	srv.SetLimits(tokenreview.Limits{
		ReadHeaderTimeout: f.Listen.ReadHeaderTimeout,
		IdleTimeout:       f.Listen.IdleTimeout,
		MaxHeaderBytes:    f.Listen.MaxHeaderBytes,
	})
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

func listenConfig(f *config.File, log *slog.Logger) listen.Config {
	cfg := f.Listen.Config()
	cfg.Logger = log
	return cfg
}

// logSettings decodes the config without compiling it, for the log settings.
func (inst *Instance) logSettings() (*config.File, error) {
	data, name := inst.opts.DefaultConfig, "embedded quickstart config"
	if inst.opts.ConfigPath != "" {
		b, err := os.ReadFile(inst.opts.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		data, name = b, inst.opts.ConfigPath
	}
	return config.Decode(data, name)
}

// tracingFlushTimeout bounds sending the last spans at exit, so a
// collector that is down cannot hold the process.
const tracingFlushTimeout = 5 * time.Second

// keysWait bounds how long a new snapshot may wait for its JWT issuers'
// keys before it is used anyway (an issuer that is down must not block
// start or reload forever; its tokens get 401 until keys arrive).
const keysWait = 10 * time.Second

// load compiles the configuration, sharing unchanged parts with the
// running snapshot (through cfgOpts.Reuse), and waits (bounded) for newly
// built JWT verifiers to have keys.
func (inst *Instance) load() (*snapshot.Snapshot, *config.File, error) {
	var snap *snapshot.Snapshot
	var file *config.File
	var err error
	opts := inst.cfgOpts
	use := inst.secrets.Use()
	opts.SecretFile = use.File
	if inst.opts.ConfigPath != "" {
		snap, file, err = config.LoadFile(inst.opts.ConfigPath, opts)
	} else {
		snap, file, err = config.Compile(inst.opts.DefaultConfig, "embedded quickstart config", ".", opts)
	}
	if err != nil {
		return nil, nil, err
	}
	// This snapshot will run: Secrets it no longer references are not
	// watched anymore.
	inst.secrets.Retain(use)
	ctx, cancel := context.WithTimeout(context.Background(), keysWait)
	defer cancel()
	if !snap.WaitReady(ctx) {
		inst.log.Warn("some JWT issuers' keys or login providers are not available yet; their tokens get 401 and their logins 503 until they are", "waited", keysWait.String())
	}
	return snap, file, nil
}

// Reload compiles the configuration again and swaps it in. A config that
// does not compile keeps the current snapshot; the error says why.
func (inst *Instance) Reload() error {
	inst.reloadMu.Lock()
	defer inst.reloadMu.Unlock()
	snap, file, err := inst.load()
	if err != nil {
		inst.Metrics.Reload(false, 0)
		inst.log.Error("config reload failed; keeping the running configuration", "config", inst.opts.ConfigPath, "error", err.Error())
		return err
	}
	inst.applyStartOnly(file)
	if inst.Injector != nil && file.Kube != nil && file.Kube.Injector != nil {
		inst.Injector.Apply(*file.Kube.Injector)
	}
	old, gen := inst.Gateway.Swap(snap)
	inst.Metrics.Reload(true, gen)
	if old != nil {
		old.Close()
	}
	inst.reportResources(snap)
	inst.log.Info("config reloaded", "generation", gen, "routes", snap.Routes.Len())
	inst.watchExtra()
	return nil
}

// applyStartOnly deals with the settings read at start: the log level is
// applied at once; the listeners (listen, admin, decision, the token
// webhook's) and the log
// format and access log are not rebuilt by a reload, so a change to them is
// reported at WARN, naming the sections, and in
// sekisho_config_restart_required, on every reload until the file matches
// the running process again (or it is restarted).
func (inst *Instance) applyStartOnly(f *config.File) {
	if lv, err := telemetry.ParseLevel(f.Log.Level); err == nil && lv != inst.level.Level() {
		inst.log.Info("log level changed", "from", inst.level.Level().String(), "to", lv.String())
		inst.level.Set(lv)
	}
	changed := startOnlyChanges(inst.started, f)
	inst.Metrics.RestartRequired(len(changed) > 0)
	if len(changed) > 0 {
		inst.log.Warn("configuration reloaded, but changed settings that are read only at start; restart sekisho to apply them (it keeps running on the old ones)",
			"sections", strings.Join(changed, ", "))
	}
}

// startOnlyChanges names the start-only sections of f that differ from
// running: listen, admin, log (format, access; the level is applied live),
// decision and tracing.
func startOnlyChanges(running, f *config.File) []string {
	if running == nil {
		return nil
	}
	var changed []string
	if !reflect.DeepEqual(running.Listen, f.Listen) {
		changed = append(changed, "listen")
	}
	if running.Admin != f.Admin {
		changed = append(changed, "admin")
	}
	rl, fl := running.Log, f.Log
	rl.Level, fl.Level = "", ""
	if !reflect.DeepEqual(rl, fl) {
		changed = append(changed, "log")
	}
	if !reflect.DeepEqual(running.Decision, f.Decision) {
		changed = append(changed, "decision")
	}
	if !reflect.DeepEqual(running.Tracing, f.Tracing) {
		changed = append(changed, "tracing")
	}
	if !reflect.DeepEqual(webhookListener(running), webhookListener(f)) {
		changed = append(changed, "kube.webhook (listen, tls)")
	}
	if !reflect.DeepEqual(injectorListener(running), injectorListener(f)) {
		changed = append(changed, "kube.injector (listen, tls, kubeconfig)")
	}
	if !reflect.DeepEqual(resourcesWatch(running), resourcesWatch(f)) {
		changed = append(changed, "kube.resources (kubeconfig, namespaces, namespace_selector, leader_election)")
	}
	return changed
}

// webhookListener is the start-only part of kube.webhook: whether it runs,
// its address and its TLS files. Its audiences and rules are reloaded.
func webhookListener(f *config.File) *config.KubeWebhook {
	if f.Kube == nil || f.Kube.Webhook == nil {
		return nil
	}
	return &config.KubeWebhook{Listen: f.Kube.Webhook.Listen, TLS: f.Kube.Webhook.TLS}
}

// injectorListener is the start-only part of kube.injector: whether it
// runs, its address, TLS files and API client. Its image and registries
// are reloaded.
func injectorListener(f *config.File) *config.KubeInjector {
	if f.Kube == nil || f.Kube.Injector == nil {
		return nil
	}
	i := f.Kube.Injector
	return &config.KubeInjector{Listen: i.Listen, TLS: i.TLS, Kubeconfig: i.Kubeconfig}
}

// watch reloads on SIGHUP and when the config file changes. It watches the
// directory, not the file, so editors that replace the file and Kubernetes
// ConfigMap symlink swaps are both seen.
func (inst *Instance) watch(ctx context.Context) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var events <-chan fsnotify.Event
	var watcher *fsnotify.Watcher
	if inst.opts.ConfigPath != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(filepath.Dir(inst.opts.ConfigPath))
		}
		if err != nil {
			inst.log.Warn("config file watch unavailable; reload with SIGHUP", "error", err)
		} else {
			watcher, events = w, w.Events
			inst.watcher = w
			inst.watchExtra()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Debounce: editors write in several steps; reload once they settle.
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				inst.log.Info("SIGHUP: reloading configuration and certificates")
				_ = inst.Reload()
				if inst.Server == nil {
					continue
				}
				if err := inst.Server.ReloadCertificate(); err != nil {
					inst.log.Error("certificate reload failed; keeping the current certificate", "error", err)
				}
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				if inst.relevant(ev) {
					debounce = time.After(200 * time.Millisecond)
				}
			case <-debounce:
				debounce = nil
				_ = inst.Reload()
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		if watcher != nil {
			watcher.Close()
		}
		<-done
	}
}

// relevant reports whether a directory event may have changed the config
// file: a write or create of the file itself, or the ..data symlink swap
// Kubernetes uses for mounted ConfigMaps.
func (inst *Instance) relevant(ev fsnotify.Event) bool {
	if !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Rename) && !ev.Has(fsnotify.Remove) {
		return false
	}
	base := filepath.Base(ev.Name)
	if base == filepath.Base(inst.opts.ConfigPath) || base == "..data" {
		return true
	}
	if snap := inst.Gateway.Snapshot(); snap != nil {
		for _, f := range snap.WatchFiles {
			if filepath.Clean(f) == filepath.Clean(ev.Name) {
				return true
			}
		}
	}
	return false
}
