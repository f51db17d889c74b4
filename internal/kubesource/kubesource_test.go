package kubesource

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/kubeclient"
	"github.com/sekisho/sekisho/internal/kubesource/kubesourcetest"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/testutil"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

// start runs a Source on settings (lease in namespace "leases" unless
// set) until the test ends, counting OnChange calls.
func start(t *testing.T, cfg *rest.Config, settings config.KubeResources, opts Options) (*Source, *atomic.Int64) {
	t.Helper()
	s, calls, err := startErr(t, cfg, settings, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, calls
}

func startErr(t *testing.T, cfg *rest.Config, settings config.KubeResources, opts Options) (*Source, *atomic.Int64, error) {
	t.Helper()
	if settings.LeaderElection.Name == "" {
		settings.LeaderElection.Name = "sekisho"
	}
	if settings.LeaderElection.Namespace == "" {
		settings.LeaderElection.Namespace = "leases"
	}
	calls := new(atomic.Int64)
	opts.Config, opts.Settings = cfg, settings
	opts.OnChange = func() { calls.Add(1) }
	if opts.SyncTimeout == 0 {
		opts.SyncTimeout = 20 * time.Second
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		return nil, nil, err
	}
	t.Cleanup(s.Stop)
	return s, calls, nil
}

// keys returns NAMESPACE/NAME of the routes in namespaces with prefix.
func keys(rs []config.ResourceRoute, prefix string) []string {
	var out []string
	for _, r := range rs {
		if strings.HasPrefix(r.Namespace, prefix) {
			out = append(out, r.Key())
		}
	}
	slices.Sort(out)
	return out
}

const spec = `{match: {host: x.test, path: /x}, to: "service/web:80", public: true}`

func TestSource(t *testing.T) {
	c := kube.Cluster(t)
	kubesourcetest.Namespace(t, c, "leases", nil)

	t.Run("no CRD", func(t *testing.T) {
		_, _, err := startErr(t, c.AdminConfig(), config.KubeResources{}, Options{})
		if err == nil || !strings.Contains(err.Error(), "kubectl apply -f "+kubesourcetest.CRDFile) {
			t.Fatalf("Start without the CRD: %v", err)
		}
	})
	kubesourcetest.InstallRouteCRD(t, c)

	t.Run("forbidden", func(t *testing.T) {
		dir := t.TempDir()
		if err := c.EnsureServiceAccount(t.Context(), "nobody", "nobody"); err != nil {
			t.Fatal(err)
		}
		kc := kubesourcetest.Kubeconfig(t, c, "nobody", "nobody", dir)
		granted := kubesourcetest.Grant(t, c, "granted", "sekisho", "leases", false, dir)
		tests := []struct {
			name       string
			kubeconfig string
			settings   config.KubeResources
			want       string
		}{
			{"routes", kc, config.KubeResources{}, `cannot list resource "routes"`},
			{"routes hint", kc, config.KubeResources{Namespaces: []string{"team"}}, "needs get, list and watch on routes.sekisho.io"},
			{"namespaces", granted, config.KubeResources{NamespaceSelector: "a=b"}, "needs get, list and watch on namespaces"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rc := restFromKubeconfig(t, tt.kubeconfig)
				_, _, err := startErr(t, rc, tt.settings, Options{})
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
			})
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		// The account the watcher runs as reads routes and writes their
		// status, nothing more: not their spec, not Secrets.
		kubesourcetest.Namespace(t, c, "lp", nil)
		kubesourcetest.ApplyRoute(t, c, "lp", "web", spec)
		rc := restFromKubeconfig(t, kubesourcetest.Grant(t, c, "lp", "sekisho", "leases", false, t.TempDir()))
		dyn, err := dynamic.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := dyn.Resource(kubeapi.Routes).Namespace("lp").Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if _, err := dyn.Resource(kubeapi.Routes).Namespace("lp").Update(t.Context(), obj, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("update a Route's spec: %v, want forbidden", err)
		}
		secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
		if _, err := dyn.Resource(secrets).Namespace("lp").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list Secrets: %v, want forbidden", err)
		}
	})

	t.Run("namespaces", func(t *testing.T) {
		for _, ns := range []string{"ns-a", "ns-b", "ns-c"} {
			kubesourcetest.Namespace(t, c, ns, nil)
			kubesourcetest.ApplyRoute(t, c, ns, "web", spec)
		}
		s, calls := start(t, c.AdminConfig(), config.KubeResources{Namespaces: []string{"ns-a", "ns-c"}}, Options{})
		if got := keys(s.Routes(), "ns-"); !slices.Equal(got, []string{"ns-a/web", "ns-c/web"}) {
			t.Fatalf("routes = %v", got)
		}
		obj := kubesourcetest.ApplyRoute(t, c, "ns-a", "api", `{match: {host: x.test, path: /api}, to: "service/api:8080", public: true}`)
		testutil.Eventually(t, 5*time.Second, "the change is reported", func() bool { return calls.Load() > 0 })
		var got config.ResourceRoute
		for _, r := range s.Routes() {
			if r.Key() == "ns-a/api" {
				got = r
			}
		}
		if got.Generation != 1 || !got.Created.Equal(obj.GetCreationTimestamp().Time) ||
			string(got.Spec) != `{"match":{"host":"x.test","path":"/api"},"public":true,"to":"service/api:8080"}` {
			t.Fatalf("route = %+v (spec %s)", got, got.Spec)
		}
	})

	t.Run("selector", func(t *testing.T) {
		kubesourcetest.Namespace(t, c, "sel-on", map[string]string{"sekisho.io/routes": "enabled"})
		kubesourcetest.Namespace(t, c, "sel-off", nil)
		kubesourcetest.ApplyRoute(t, c, "sel-on", "web", spec)
		kubesourcetest.ApplyRoute(t, c, "sel-off", "web", spec)
		s, calls := start(t, c.AdminConfig(), config.KubeResources{NamespaceSelector: "sekisho.io/routes=enabled"}, Options{})
		if got := keys(s.Routes(), "sel-"); !slices.Equal(got, []string{"sel-on/web"}) {
			t.Fatalf("routes = %v", got)
		}
		label := func(ns, value string) {
			t.Helper()
			patch := `{"metadata":{"labels":{"sekisho.io/routes":` + value + `}}}`
			if _, err := c.Client().CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		before := calls.Load()
		label("sel-off", `"enabled"`)
		label("sel-on", "null")
		testutil.Eventually(t, 5*time.Second, "sel-off's route is read and sel-on's dropped", func() bool {
			return slices.Equal(keys(s.Routes(), "sel-"), []string{"sel-off/web"})
		})
		testutil.Eventually(t, 5*time.Second, "the change is reported", func() bool { return calls.Load() > before })
	})

	t.Run("status", func(t *testing.T) {
		kubesourcetest.Namespace(t, c, "st", nil)
		kubesourcetest.ApplyRoute(t, c, "st", "good", spec)
		kubesourcetest.ApplyRoute(t, c, "st", "bad", `{match: {host: x.test, path: /y}, to: "service/web:80", allow: [{when: "nope"}]}`)
		s, calls := start(t, c.AdminConfig(), config.KubeResources{Namespaces: []string{"st"}, LeaderElection: config.LeaderElection{Name: "status"}}, Options{})
		testutil.Eventually(t, 10*time.Second, "the source leads", s.Leader)
		changes := s.changes.Load()
		s.Report([]snapshot.ResourceStatus{
			{Namespace: "st", Name: "good", Generation: 1, Accepted: true, Reason: kubeapi.ReasonAccepted, Message: "served as route st/good"},
			{Namespace: "st", Name: "bad", Generation: 1, Reason: kubeapi.ReasonInvalid, Message: "spec.allow[0].when: undeclared reference to 'nope'"},
			{Namespace: "st", Name: "deleted", Generation: 1, Accepted: true, Reason: kubeapi.ReasonAccepted},
		})
		testutil.Eventually(t, 5*time.Second, "both statuses are written", func() bool {
			g, _ := kubesourcetest.Accepted(t, c, "st", "good")
			b, _ := kubesourcetest.Accepted(t, c, "st", "bad")
			return g != nil && b != nil
		})
		cond, gen := kubesourcetest.Accepted(t, c, "st", "bad")
		if cond.Status != metav1.ConditionFalse || cond.Reason != "Invalid" || cond.Message != "spec.allow[0].when: undeclared reference to 'nope'" || cond.ObservedGeneration != 1 || gen != 1 {
			t.Errorf("bad: %+v, observedGeneration %d", cond, gen)
		}
		first, _ := kubesourcetest.Accepted(t, c, "st", "good")
		if first.Status != metav1.ConditionTrue || first.Reason != "Accepted" {
			t.Errorf("good: %+v", first)
		}
		testutil.Eventually(t, 5*time.Second, "an Event for each", func() bool {
			return slices.Equal(kubesourcetest.Events(t, c, "st", "bad"), []string{"Warning Invalid: spec.allow[0].when: undeclared reference to 'nope'"}) &&
				slices.Equal(kubesourcetest.Events(t, c, "st", "good"), []string{"Normal Accepted: served as route st/good"})
		})
		// The status is in the cache: another pass writes nothing, and
		// the status writes started no compile.
		testutil.Eventually(t, 5*time.Second, "the cache has both statuses", func() bool {
			for _, name := range []string{"good", "bad"} {
				if _, ok := s.object("st", name).Object["status"]; !ok {
					return false
				}
			}
			return true
		})
		writes := s.writes.Load()
		if failed := s.writeStatus(t.Context()); failed != 0 || s.writes.Load() != writes {
			t.Errorf("a second pass wrote %d statuses (%d failed)", s.writes.Load()-writes, failed)
		}
		if s.changes.Load() != changes || calls.Load() != 0 {
			t.Errorf("status writes were taken for changes: %d changes, %d compiles", s.changes.Load()-changes, calls.Load())
		}

		// A new generation, still accepted: observedGeneration follows,
		// the transition time and the Events stay.
		kubesourcetest.ApplyRoute(t, c, "st", "good", `{match: {host: x.test, path: /x}, to: "service/web:80", allow: [{users: [ann]}]}`)
		testutil.Eventually(t, 5*time.Second, "the spec change is reported", func() bool { return calls.Load() == 1 })
		testutil.Eventually(t, 5*time.Second, "the cache has generation 2", func() bool { return s.object("st", "good").GetGeneration() == 2 })
		s.Report([]snapshot.ResourceStatus{
			{Namespace: "st", Name: "good", Generation: 2, Accepted: true, Reason: kubeapi.ReasonAccepted, Message: "served as route st/good"},
			{Namespace: "st", Name: "bad", Generation: 1, Reason: kubeapi.ReasonInvalid, Message: "spec.allow[0].when: undeclared reference to 'nope'"},
		})
		testutil.Eventually(t, 5*time.Second, "observedGeneration 2", func() bool {
			_, gen := kubesourcetest.Accepted(t, c, "st", "good")
			return gen == 2
		})
		cond, _ = kubesourcetest.Accepted(t, c, "st", "good")
		if !cond.LastTransitionTime.Equal(&first.LastTransitionTime) || cond.ObservedGeneration != 2 {
			t.Errorf("after an accepted update: %+v (first %v)", cond, first.LastTransitionTime)
		}
		if ev := kubesourcetest.Events(t, c, "st", "good"); len(ev) != 1 {
			t.Errorf("events = %v", ev)
		}

		// Status someone else wrote is put back.
		if _, err := kubesourcetest.Dynamic(t, c).Resource(kubeapi.Routes).Namespace("st").Patch(t.Context(), "bad", types.MergePatchType,
			[]byte(`{"status":{"conditions":null,"observedGeneration":7}}`), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "the status is written again", func() bool {
			cond, gen := kubesourcetest.Accepted(t, c, "st", "bad")
			return cond != nil && cond.Reason == "Invalid" && gen == 1
		})
	})

	t.Run("debounce", func(t *testing.T) {
		kubesourcetest.Namespace(t, c, "deb", nil)
		s, calls := start(t, c.AdminConfig(), config.KubeResources{Namespaces: []string{"deb"}, LeaderElection: config.LeaderElection{Name: "deb"}}, Options{})
		for range 50 {
			s.changed()
		}
		testutil.Eventually(t, 5*time.Second, "one compile", func() bool { return !s.pending() && calls.Load() > 0 })
		if n := calls.Load(); n != 1 {
			t.Errorf("50 changes made %d compiles", n)
		}
	})

	t.Run("leader", func(t *testing.T) {
		kubesourcetest.Namespace(t, c, "le", nil)
		kubesourcetest.ApplyRoute(t, c, "le", "web", spec)
		// A Lease held by someone else: nobody here writes.
		now := metav1.NewMicroTime(time.Now())
		holder, secs := "someone-else", int32(3600)
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: "leases"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}
		if _, err := c.Client().CoordinationV1().Leases("leases").Create(t.Context(), lease, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		settings := config.KubeResources{Namespaces: []string{"le"}, LeaderElection: config.LeaderElection{Name: "held"}}
		fast := Options{LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
		var sources []*Source
		for _, id := range []string{"one", "two"} {
			o := fast
			o.Identity = id
			s, _ := start(t, c.AdminConfig(), settings, o)
			s.Report([]snapshot.ResourceStatus{{Namespace: "le", Name: "web", Generation: 1, Accepted: true, Reason: kubeapi.ReasonAccepted, Message: "ok"}})
			sources = append(sources, s)
		}
		if failed := sources[0].writeStatus(t.Context()); failed != 0 || sources[0].writes.Load()+sources[1].writes.Load() != 0 {
			t.Fatal("a replica without the Lease wrote status")
		}
		if cond, _ := kubesourcetest.Accepted(t, c, "le", "web"); cond != nil {
			t.Fatalf("status written while another holds the Lease: %+v", cond)
		}
		// The holder gives it up: one replica takes over and writes the
		// current state.
		if err := c.Client().CoordinationV1().Leases("leases").Delete(t.Context(), "held", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "one replica leads", func() bool { return sources[0].Leader() || sources[1].Leader() })
		testutil.Eventually(t, 5*time.Second, "the new leader writes the status", func() bool {
			cond, _ := kubesourcetest.Accepted(t, c, "le", "web")
			return cond != nil && cond.Message == "ok"
		})
		leader, follower := sources[0], sources[1]
		if follower.Leader() {
			leader, follower = follower, leader
		}
		if leader.Leader() == follower.Leader() || follower.writes.Load() != 0 || leader.writes.Load() != 1 {
			t.Fatalf("writes: leader %d, follower %d", leader.writes.Load(), follower.writes.Load())
		}
		// The leader stops and gives the Lease up: the other takes over.
		leader.Stop()
		testutil.Eventually(t, 10*time.Second, "the other replica takes over", follower.Leader)
		l, err := c.Client().CoordinationV1().Leases("leases").Get(t.Context(), "held", metav1.GetOptions{})
		if err != nil || *l.Spec.HolderIdentity != follower.Identity() {
			t.Fatalf("lease: %v %v", l, err)
		}
	})
}

// TestStartTimeout: an API server that keeps failing fails Start after
// SyncTimeout, with its last error.
func TestStartTimeout(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "etcd is down", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	_, _, err := startErr(t, cfg, config.KubeResources{}, Options{SyncTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "were not all read within 1s") || !strings.Contains(err.Error(), "etcd is down") {
		t.Fatalf("Start = %v", err)
	}
}

func restFromKubeconfig(t *testing.T, path string) *rest.Config {
	t.Helper()
	rc, err := kubeclient.Config(kubeclient.Options{Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestReport: each compile's counts are logged and reported; a refused
// object is logged once, and again only when its reason or message
// changes.
func TestReport(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	var counts [3]int
	s, err := New(Options{
		Config:   &rest.Config{Host: "https://127.0.0.1:1"}, // never reached
		Settings: config.KubeResources{LeaderElection: config.LeaderElection{Namespace: "sekisho", Name: "sekisho"}},
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
		OnRoutes: func(a, i, c int) { counts = [3]int{a, i, c} },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Watch errors after the start: the usual end of a watch is not worth
	// a warning; a refusal is, with what to do.
	s.started.Store(true)
	s.watchError("routes", apierrors.NewResourceExpired("too old resource version"))
	s.watchError("routes", io.EOF)
	if strings.Contains(logs.String(), "WARN") {
		t.Errorf("a watch's usual end logged a warning:\n%s", logs)
	}
	s.watchError(describeRoutes("team-a"), apierrors.NewForbidden(schema.GroupResource{Group: kubeapi.Group, Resource: kubeapi.RouteResource}, "", errors.New("no")))
	if out := logs.String(); !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, "needs get, list and watch on routes.sekisho.io") {
		t.Errorf("a refused watch:\n%s", out)
	}

	bad := snapshot.ResourceStatus{Namespace: "a", Name: "bad", Generation: 1, Reason: kubeapi.ReasonInvalid, Message: "spec.to: no upstream"}
	lost := snapshot.ResourceStatus{Namespace: "b", Name: "web", Generation: 1, Reason: kubeapi.ReasonConflicted, Message: `same match conditions as route "a/web"`}
	ok := snapshot.ResourceStatus{Namespace: "a", Name: "web", Generation: 1, Accepted: true, Reason: kubeapi.ReasonAccepted}
	fixedBad := bad
	fixedBad.Generation, fixedBad.Message = 2, "spec.timeout: not a duration"
	tests := []struct {
		name     string
		statuses []snapshot.ResourceStatus
		counts   [3]int
		warned   []string
	}{
		{"first", []snapshot.ResourceStatus{ok, bad, lost}, [3]int{1, 1, 1}, []string{"a/bad", "b/web"}},
		{"same again", []snapshot.ResourceStatus{ok, bad, lost}, [3]int{1, 1, 1}, nil},
		{"another problem", []snapshot.ResourceStatus{ok, fixedBad, lost}, [3]int{1, 1, 1}, []string{"a/bad"}},
		{"refused ones gone", []snapshot.ResourceStatus{ok}, [3]int{1, 0, 0}, nil},
		{"back", []snapshot.ResourceStatus{ok, lost}, [3]int{1, 0, 1}, []string{"b/web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(logs.String())
			s.Report(tt.statuses)
			var warned []string
			for _, line := range strings.Split(strings.TrimSpace(logs.String()[before:]), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if m["level"] == "WARN" {
					warned = append(warned, m["route"].(string))
				}
			}
			if !slices.Equal(warned, tt.warned) || counts != tt.counts {
				t.Errorf("warned %v, counts %v; want %v, %v", warned, counts, tt.warned, tt.counts)
			}
		})
	}
}
