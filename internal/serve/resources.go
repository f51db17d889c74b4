package serve

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"k8s.io/klog/v2"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/kubeclient"
	"github.com/sekisho/sekisho/internal/kubesource"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// clientLogs sends client-go's own logs (leader election, watch retries)
// to the process log, in its format, instead of plain lines on stderr.
// klog's logger is global and may be set only before client-go runs, so
// the first Run of the process sets it, before it starts anything.
var clientLogs sync.Once

func routeClientLogs(log *slog.Logger) {
	clientLogs.Do(func() { klog.SetSlogLogger(log) })
}

// startResources starts the watcher of Route objects when the file has
// kube.resources, and waits until it has read them all, so the first
// snapshot serves every route. It compiles the file once on its own first:
// problems are reported at file:line before any connection, and the
// section's paths and defaults are resolved. The returned stop ends the
// watcher and gives up the status Lease; calling it again does nothing.
func (inst *Instance) startResources(ctx context.Context, decoded *config.File) (stop func(), err error) {
	if decoded.Kube == nil || decoded.Kube.Resources == nil {
		return func() {}, nil
	}
	var pre *snapshot.Snapshot
	var file *config.File
	// Its warnings are logged by the compile that follows.
	opts := inst.cfgOpts
	opts.Warn = func(config.Problem) {}
	// The Secrets it reads are the first compile's too: no Retain here.
	opts.SecretFile = inst.secrets.Use().File
	if inst.opts.ConfigPath != "" {
		pre, file, err = config.LoadFile(inst.opts.ConfigPath, opts)
	} else {
		pre, file, err = config.Compile(inst.opts.DefaultConfig, "embedded quickstart config", ".", opts)
	}
	if err != nil {
		return nil, err
	}
	pre.Close()
	settings := *file.Kube.Resources
	rc, err := kubeclient.Config(kubeclient.OptionsFromEnv(settings.Kubeconfig, os.Getenv))
	if err != nil {
		return nil, fmt.Errorf("kube.resources: %w", err)
	}
	metrics := inst.Metrics.NewKubeRoutes()
	src, err := kubesource.New(kubesource.Options{
		Config:   rc,
		Settings: settings,
		Logger:   inst.log,
		OnChange: inst.reloadFromResources,
		OnLeader: metrics.Leader,
		OnRoutes: metrics.Routes,
	})
	if err != nil {
		return nil, err
	}
	if err := src.Start(ctx); err != nil {
		return nil, err
	}
	inst.Resources = src
	inst.cfgOpts.Resources = src.Routes
	inst.log.Info("reading routes from Kubernetes Route objects", "namespaces", settings.Namespaces, "namespace_selector", settings.NamespaceSelector,
		"lease", settings.LeaderElection.Name, "identity", src.Identity())
	return src.Stop, nil
}

// reloadFromResources compiles again after Route objects changed. A change
// seen before the first snapshot is in it already (the first compile reads
// the caches), so there is nothing to reload until the gateway runs.
func (inst *Instance) reloadFromResources() {
	inst.reloadMu.Lock()
	running := inst.Gateway != nil
	inst.reloadMu.Unlock()
	if running {
		_ = inst.Reload()
	}
}

// reportResources hands what a compile made of each Route object to the
// watcher, which logs it and (on the replica holding the Lease) writes it
// to the objects' status.
func (inst *Instance) reportResources(snap *snapshot.Snapshot) {
	if inst.Resources != nil {
		inst.Resources.Report(snap.Resources)
	}
}

// resourcesWatch is the start-only part of kube.resources: whether it
// runs, the API client, what it watches and the Lease. allow_urls and
// cluster_domain are compiled with the routes, so a reload applies them.
func resourcesWatch(f *config.File) *config.KubeResources {
	if f.Kube == nil || f.Kube.Resources == nil {
		return nil
	}
	r := f.Kube.Resources
	return &config.KubeResources{Kubeconfig: r.Kubeconfig, Namespaces: r.Namespaces, NamespaceSelector: r.NamespaceSelector, LeaderElection: r.LeaderElection}
}
