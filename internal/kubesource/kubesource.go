// Package kubesource reads routes from sekisho.io Route objects: a second
// source, beside the configuration file, for the same compiler. It keeps
// informer caches of the Route objects (and, with a namespace selector, of
// the selected Namespaces), tells the process when they changed so it
// compiles again, and writes what became of each object to its status
// (condition Accepted, observedGeneration) and as Events. Every replica
// watches and serves; only the one holding the Lease writes, so replicas
// never fight over an object's status.
package kubesource

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/kubeclient"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// Defaults of the Options durations.
const (
	DefaultSyncTimeout = time.Minute
	// DefaultDebounce gathers the changes of one kubectl apply of several
	// objects into one compile.
	DefaultDebounce = 150 * time.Millisecond
	// maxDelay bounds how long a stream of changes can hold a compile back.
	maxDelay = time.Second
	// retryAfter is when status writes that failed are tried again.
	retryAfter = 5 * time.Second
)

// CRDFile is the manifest that installs the Route resource, named in the
// error a cluster without it gets.
const CRDFile = "deploy/crds/routes.sekisho.io.yaml"

// Options configure a Source.
type Options struct {
	// Config reaches the API server (kubeclient.Config).
	Config *rest.Config
	// Settings is the file's kube.resources section, compiled (defaults
	// applied).
	Settings config.KubeResources
	// Identity names this replica in the Lease; the host name and a random
	// suffix if empty.
	Identity string
	// Logger receives the source's logs; none if nil.
	Logger *slog.Logger
	// OnChange is called, coalesced (Debounce), after Route objects or
	// selected namespaces changed: the process compiles again, reading
	// Routes, and hands the result to Report.
	OnChange func()
	// OnLeader is called when this replica becomes, or stops being, the
	// one writing status and Events (metrics).
	OnLeader func(bool)
	// OnRoutes is called by Report with the number of objects in each
	// state (metrics).
	OnRoutes func(accepted, invalid, conflicted int)
	// SyncTimeout bounds Start's wait for the caches; DefaultSyncTimeout
	// if zero.
	SyncTimeout time.Duration
	// Debounce is how long changes are gathered before OnChange;
	// DefaultDebounce if zero.
	Debounce time.Duration
	// Lease timing of leader election; client-go's usual 15 s, 10 s and
	// 2 s if zero.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Getenv reads POD_NAMESPACE for the Lease's default namespace;
	// os.Getenv if nil.
	Getenv func(string) string
}

// Source is the watcher of Route objects. Its methods are safe for
// concurrent use.
type Source struct {
	opts     Options
	log      *slog.Logger
	dyn      dynamic.Interface
	kube     kubernetes.Interface
	leaseNS  string
	identity string

	// routes are the Route informers: one per listed namespace, or one
	// for every namespace (key "").
	routes map[string]cache.SharedIndexInformer
	// namespaces caches the Namespaces the selector selects; nil without
	// namespace_selector.
	namespaces cache.SharedIndexInformer

	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder

	errMu    sync.Mutex
	listErrs map[string]error // the last list/watch error of each informer

	started atomic.Bool // initial sync done: changes now call OnChange
	leader  atomic.Bool

	debMu    sync.Mutex
	firing   sync.WaitGroup // OnChange calls under way
	timer    *time.Timer
	firstDue time.Time // when the first pending change came
	changes  atomic.Int64

	mu      sync.Mutex
	desired map[string]snapshot.ResourceStatus // by NAMESPACE/NAME, the last Report

	kick   chan struct{}
	writes atomic.Int64 // status writes made, for tests

	cancel   context.CancelFunc
	stopped  atomic.Bool
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New builds the clients and informers; it opens no connection.
func New(opts Options) (*Source, error) {
	if opts.Config == nil {
		return nil, errors.New("kubesource: no API client configuration")
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = 10 * time.Second
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = 2 * time.Second
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	s := &Source{
		opts:     opts,
		log:      opts.Logger,
		routes:   map[string]cache.SharedIndexInformer{},
		listErrs: map[string]error{},
		kick:     make(chan struct{}, 1),
		desired:  map[string]snapshot.ResourceStatus{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.leaseNS = opts.Settings.LeaderElection.Namespace
	if s.leaseNS == "" {
		ns, err := kubeclient.Namespace(opts.Getenv, "")
		if err != nil {
			return nil, fmt.Errorf("kube.resources.leader_election.namespace is unset and %w", err)
		}
		s.leaseNS = ns
	}
	s.identity = opts.Identity
	if s.identity == "" {
		s.identity = defaultIdentity()
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sekisho"
	}
	var err error
	if s.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	if s.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	namespaces := opts.Settings.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range slices.Compact(slices.Sorted(slices.Values(namespaces))) {
		inf := dynamicinformer.NewFilteredDynamicInformer(s.dyn, kubeapi.Routes, ns, 0, cache.Indexers{}, nil).Informer()
		if err := s.setup(inf, describeRoutes(ns), routeHandlers(s)); err != nil {
			return nil, err
		}
		s.routes[ns] = inf
	}
	if sel := opts.Settings.NamespaceSelector; sel != "" {
		f := informers.NewSharedInformerFactoryWithOptions(s.kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = sel
		}))
		s.namespaces = f.Core().V1().Namespaces().Informer()
		// A namespace that gains the label is added to the watch; one that
		// loses it is deleted from it (the API server's watch says so).
		h := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.changed() },
			DeleteFunc: func(any) { s.changed() },
		}
		if err := s.setup(s.namespaces, "namespaces selected by "+sel, h); err != nil {
			return nil, err
		}
	}
	s.broadcaster = events.NewBroadcaster(&events.EventSinkImpl{Interface: s.kube.EventsV1()})
	s.recorder = s.broadcaster.NewRecorder(nil, "sekisho")
	return s, nil
}

// describeRoutes names a Route informer in errors.
func describeRoutes(ns string) string {
	if ns == "" {
		return "routes.sekisho.io in every namespace"
	}
	return "routes.sekisho.io in namespace " + ns
}

// setup registers h on inf and records its list and watch errors.
func (s *Source) setup(inf cache.SharedIndexInformer, what string, h cache.ResourceEventHandler) error {
	// The caches keep what compiling and status need, not managedFields.
	if err := inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	}); err != nil {
		return fmt.Errorf("kubesource: %w", err)
	}
	if _, err := inf.AddEventHandler(h); err != nil {
		return fmt.Errorf("kubesource: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		s.watchError(what, err)
	}); err != nil {
		return fmt.Errorf("kubesource: %w", err)
	}
	return nil
}

// watchError records an informer's list or watch error for Start, and
// after the start logs those that are not the usual end of a watch.
func (s *Source) watchError(what string, err error) {
	s.errMu.Lock()
	s.listErrs[what] = err
	s.errMu.Unlock()
	switch {
	case !s.started.Load():
		// Start reports it.
	case apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || errors.Is(err, io.EOF):
		// A watch that ended as watches do: the informer lists again.
		s.log.Debug("watch restarted", "watch", what, "reason", err.Error())
	default:
		s.log.Warn("watching Kubernetes objects failed; serving the last routes seen and retrying", "watch", what, "error", explain(what, err))
	}
}

// routeHandlers starts a compile when a Route's spec changes. Status
// writes (this replica's own included) change neither generation nor
// spec: they only make the status writer look again, never a compile, so
// writing status cannot loop.
func routeHandlers(s *Source) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.changed() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			if !ok1 || !ok2 || o.GetGeneration() != n.GetGeneration() || !reflect.DeepEqual(o.Object["spec"], n.Object["spec"]) {
				s.changed()
				return
			}
			s.kickStatus()
		},
		DeleteFunc: func(any) { s.changed() },
	}
}

// explain turns the errors a cluster that is not set up gives into what to
// do about them.
func explain(what string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("list %s: %w: the Route resource is not installed in this cluster; install its CRD with `kubectl apply -f %s`", what, err, CRDFile)
	case apierrors.IsForbidden(err) && strings.HasPrefix(what, "namespaces"):
		return fmt.Errorf("list %s: %w: with kube.resources.namespace_selector, sekisho's account needs get, list and watch on namespaces (a ClusterRole)", what, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("list %s: %w: sekisho's account needs get, list and watch on routes.sekisho.io there", what, err)
	}
	return fmt.Errorf("list %s: %w", what, err)
}

// defaultIdentity is the host name (the pod's name) and a random suffix, so
// two processes on one host are two candidates.
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "sekisho"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "_" + hex.EncodeToString(b)
}

// Identity is this replica's name in the Lease.
func (s *Source) Identity() string { return s.identity }

// Start runs the informers and waits (at most SyncTimeout) until their
// caches hold every object, so the first compile serves every route. A
// cluster without the Route CRD, or an account without the permissions,
// fails at once with an error saying what to install or grant. Then it
// starts the status writer and the leader election; Stop ends them.
func (s *Source) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	run := func(inf cache.SharedIndexInformer) {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); inf.RunWithContext(ctx) }()
	}
	for _, inf := range s.routes {
		run(inf)
	}
	if s.namespaces != nil {
		run(s.namespaces)
	}
	if err := s.waitSynced(ctx); err != nil {
		s.Stop()
		return err
	}
	s.started.Store(true)
	if err := s.broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		s.Stop()
		return fmt.Errorf("kubesource: events: %w", err)
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.statusLoop(ctx) }()
	go func() { defer s.wg.Done(); s.elect(ctx) }()
	return nil
}

// waitSynced polls the informers (external state: the API server's
// answers) until all have synced, a decisive error comes, or the bound
// passes.
func (s *Source) waitSynced(ctx context.Context) error {
	deadline := time.NewTimer(s.opts.SyncTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.Synced() {
			return nil
		}
		s.errMu.Lock()
		var last error
		for what, err := range s.listErrs {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				s.errMu.Unlock()
				return fmt.Errorf("kube.resources: %w", explain(what, err))
			}
			last = explain(what, err)
		}
		s.errMu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube.resources: waiting for the Route objects: %w", ctx.Err())
		case <-deadline.C:
			if last == nil {
				last = errors.New("no answer")
			}
			return fmt.Errorf("kube.resources: the Route objects were not all read within %s: %w", s.opts.SyncTimeout, last)
		case <-tick.C:
		}
	}
}

// Synced reports whether every cache has been filled once.
func (s *Source) Synced() bool {
	for _, inf := range s.routes {
		if !inf.HasSynced() {
			return false
		}
	}
	return s.namespaces == nil || s.namespaces.HasSynced()
}

// Stop ends the watches, the status writer and the election (giving the
// Lease up, so another replica takes over at once) and waits for them.
func (s *Source) Stop() {
	s.stopOnce.Do(func() {
		s.debMu.Lock()
		s.stopped.Store(true)
		s.debMu.Unlock()
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.broadcaster.Shutdown()
		s.debMu.Lock()
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		s.debMu.Unlock()
		s.firing.Wait() // no compile starts from here on
	})
}

// Leader reports whether this replica writes status and Events now.
func (s *Source) Leader() bool { return s.leader.Load() }

// Routes returns the routes of the Route objects in the caches, in the
// namespaces read (and selected). Config calls it on each compile.
func (s *Source) Routes() []config.ResourceRoute {
	var out []config.ResourceRoute
	for _, inf := range s.routes {
		for _, o := range inf.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok || !s.selected(u.GetNamespace()) {
				continue
			}
			spec, err := json.Marshal(u.Object["spec"])
			if err != nil { // decoded from JSON: cannot fail
				spec = []byte("null")
			}
			out = append(out, config.ResourceRoute{
				Namespace:  u.GetNamespace(),
				Name:       u.GetName(),
				Generation: u.GetGeneration(),
				Created:    u.GetCreationTimestamp().Time,
				Spec:       spec,
			})
		}
	}
	return out
}

// selected reports whether ns passes the namespace selector.
func (s *Source) selected(ns string) bool {
	if s.namespaces == nil {
		return true
	}
	_, ok, err := s.namespaces.GetStore().GetByKey(ns)
	return err == nil && ok
}

// changed schedules OnChange: after Debounce without another change, and
// at most maxDelay after the first.
func (s *Source) changed() {
	s.changes.Add(1)
	if !s.started.Load() || s.stopped.Load() {
		return // the first compile reads the whole cache
	}
	s.debMu.Lock()
	defer s.debMu.Unlock()
	now := time.Now()
	if s.timer == nil {
		s.firstDue = now
		s.timer = time.AfterFunc(s.opts.Debounce, s.fire)
		return
	}
	if now.Sub(s.firstDue) < maxDelay {
		s.timer.Reset(s.opts.Debounce)
	}
}

func (s *Source) fire() {
	s.debMu.Lock()
	s.timer = nil
	if s.stopped.Load() {
		s.debMu.Unlock()
		return
	}
	s.firing.Add(1)
	s.debMu.Unlock()
	defer s.firing.Done()
	if s.opts.OnChange != nil {
		s.opts.OnChange()
	}
}

// pending reports whether a compile is scheduled (tests).
func (s *Source) pending() bool {
	s.debMu.Lock()
	defer s.debMu.Unlock()
	return s.timer != nil
}

// Report takes what the last compile made of each object: it logs the
// counts and every newly refused object, and the leader writes it to the
// objects' status.
func (s *Source) Report(statuses []snapshot.ResourceStatus) {
	var accepted, invalid, conflicted int
	desired := make(map[string]snapshot.ResourceStatus, len(statuses))
	s.mu.Lock()
	for _, st := range statuses {
		key := st.Namespace + "/" + st.Name
		desired[key] = st
		switch {
		case st.Accepted:
			accepted++
		case st.Reason == kubeapi.ReasonConflicted:
			conflicted++
		default:
			invalid++
		}
		if prev, ok := s.desired[key]; !st.Accepted && (!ok || prev.Reason != st.Reason || prev.Message != st.Message) {
			s.log.Warn("route from Kubernetes refused", "route", key, "generation", st.Generation, "reason", st.Reason, "error", st.Message)
		}
	}
	s.desired = desired
	s.mu.Unlock()
	s.log.Info("routes from Kubernetes resources compiled", "accepted", accepted, "invalid", invalid, "conflicted", conflicted)
	if s.opts.OnRoutes != nil {
		s.opts.OnRoutes(accepted, invalid, conflicted)
	}
	s.kickStatus()
}

// kickStatus makes the status writer compare again.
func (s *Source) kickStatus() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// object returns the cached Route ns/name.
func (s *Source) object(ns, name string) *unstructured.Unstructured {
	inf := s.routes[ns]
	if inf == nil {
		inf = s.routes[metav1.NamespaceAll]
	}
	if inf == nil {
		return nil
	}
	o, ok, err := inf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	u, _ := o.(*unstructured.Unstructured)
	return u
}
