package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/kubesource/kubesourcetest"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/testutil"
)

// auditPolicy records who wrote a Route's status, so a test can tell which
// replica did.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [patch, update]
    resources: [{group: sekisho.io, resources: [routes/status]}]
  - level: None
`

// statusWriters counts the status writes in the audit log by user.
func statusWriters(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			User      struct{ Username string }
			ObjectRef struct{ Subresource string }
			Response  struct{ Code int } `json:"responseStatus"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.ObjectRef.Subresource == "status" && ev.Response.Code == http.StatusOK {
			out[strings.TrimPrefix(ev.User.Username, "system:serviceaccount:sekisho-system:")]++
		}
	}
	return out
}

// runReplica runs a gateway on src until stop is called or the test ends.
func runReplica(t *testing.T, src string) (inst *Instance, logs *testutil.SyncBuffer, stop func()) {
	t.Helper()
	logs = &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *Instance, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DefaultConfig: []byte(src), LogOutput: logs, Started: func(i *Instance) { started <- i }})
	}()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return within 20s of cancel")
		}
	}
	t.Cleanup(stop)
	select {
	case inst = <-started:
		return inst, logs, stop
	case err := <-done:
		once = true // nothing left to stop
		t.Fatalf("Run exited at start: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not start within 60s")
	}
	return nil, nil, nil
}

// get returns the status and body of GET path on inst's gateway.
// routesHost is the host of the test's routes: a shared host, on which
// both namespaces and the file may put routes.
const routesHost = "app.test"

func get(t *testing.T, inst *Instance, path string) (int, string) {
	t.Helper()
	return getHost(t, inst, routesHost, path)
}

func getHost(t *testing.T, inst *Instance, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+inst.Server.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// serves polls until GET path on every replica answers code and body (any
// body when empty).
func serves(t *testing.T, within time.Duration, path string, code int, body string, replicas ...*Instance) {
	t.Helper()
	for i, inst := range replicas {
		testutil.Eventually(t, within, fmt.Sprintf("replica %d: GET %s → %d %q", i, path, code, body), func() bool {
			c, b := get(t, inst, path)
			return c == code && (body == "" || b == body)
		})
	}
}

func kubeGauge(t *testing.T, m *telemetry.Metrics, name, state string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			if state == "" || (len(mt.GetLabel()) == 1 && mt.GetLabel()[0].GetValue() == state) {
				return mt.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{state=%q}", name, state)
	return 0
}

// TestResourcesStartOnly: what the watcher watches is read at start;
// allow_urls and cluster_domain are compiled with the routes, so a reload
// applies them.
func TestResourcesStartOnly(t *testing.T) {
	file := func(r config.KubeResources) *config.File { return &config.File{Kube: &config.Kube{Resources: &r}} }
	base := config.KubeResources{Namespaces: []string{"a"}, LeaderElection: config.LeaderElection{Name: "sekisho"}}
	tests := []struct {
		name    string
		change  func(*config.KubeResources)
		restart bool
	}{
		{"allow_urls", func(r *config.KubeResources) { r.AllowURLs = true }, false},
		{"cluster_domain", func(r *config.KubeResources) { r.ClusterDomain = "example.internal" }, false},
		{"shared_hosts", func(r *config.KubeResources) { r.SharedHosts = []string{"api.example.com"} }, false},
		{"namespaces", func(r *config.KubeResources) { r.Namespaces = []string{"a", "b"} }, true},
		{"namespace_selector", func(r *config.KubeResources) { r.NamespaceSelector = "x=y" }, true},
		{"kubeconfig", func(r *config.KubeResources) { r.Kubeconfig = "/k" }, true},
		{"lease", func(r *config.KubeResources) { r.LeaderElection.Name = "other" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := base
			changed.Namespaces = slices.Clone(base.Namespaces)
			tt.change(&changed)
			got := startOnlyChanges(file(base), file(changed))
			if restart := slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "kube.resources") }); restart != tt.restart {
				t.Errorf("changes = %q, want a restart: %v", got, tt.restart)
			}
		})
	}
}

// TestRoutesFromKubernetes runs two gateways reading Route objects from a
// real kube-apiserver, each as a service account with only the documented
// permissions: both serve every route live (create, update, delete);
// invalid and conflicting objects are refused with status and Events while
// the others serve; namespaces not listed are ignored; only the Lease
// holder writes status, and the other takes over when it stops.
func TestRoutesFromKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs a real kube-apiserver")
	}
	dir := t.TempDir()
	policy := testutil.WriteFile(t, dir, "audit-policy.yaml", []byte(auditPolicy))
	audit := filepath.Join(dir, "audit.log")
	c := kubetest.Start(t, kubetest.Options{Args: []string{"--audit-policy-file=" + policy, "--audit-log-path=" + audit}})
	kubesourcetest.InstallRouteCRD(t, c)
	for _, ns := range []string{"team-a", "team-b", "outside"} {
		kubesourcetest.Namespace(t, c, ns, nil)
	}
	backend := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	one, two := backend("one"), backend("two")
	// A setting read from a Secret, through the same account: the
	// watcher's start and Secret references work together.
	tokens, err := os.ReadFile(testutil.TokenFile(t, "ci", "skt_ci_5f0e9c1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a", "staff"))
	if err != nil {
		t.Fatal(err)
	}
	kubesourcetest.Namespace(t, c, "sekisho-system", nil)
	applySecret(t, c, "sekisho-system", "tokens", corev1.SecretTypeOpaque, map[string][]byte{"tokens.yaml": tokens})
	config := func(kubeconfig string) string {
		return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
api_tokens: {file: "sekisho+k8s://sekisho-system/tokens/tokens.yaml"}
routes:
  - {name: health, match: {host: app.test, path: /healthz}, to: builtin:echo, public: true}
kube:
  resources:
    kubeconfig: %s
    namespaces: [team-a, team-b]
    allow_urls: true
    shared_hosts: [app.test]
    leader_election: {namespace: sekisho-system, name: sekisho}
`, kubeconfig)
	}
	route := func(path, to string) string {
		return fmt.Sprintf(`{match: {host: app.test, path: %s}, to: %q, public: true}`, path, to)
	}

	// Served from the first request: the gateway reads the objects before
	// it starts listening.
	kubesourcetest.ApplyRoute(t, c, "team-a", "web", route("/web", one))
	a, logsA, stopA := runReplica(t, config(kubesourcetest.Grant(t, c, "sekisho-system", "sekisho-a", "sekisho-system", false, dir, "tokens")))
	if code, body := get(t, a, "/web"); code != http.StatusOK || body != "one" {
		t.Fatalf("first request: %d %q", code, body)
	}
	b, _, stopB := runReplica(t, config(kubesourcetest.Grant(t, c, "sekisho-system", "sekisho-b", "sekisho-system", false, dir, "tokens")))
	replicas := []*Instance{a, b}

	t.Run("create update delete", func(t *testing.T) {
		begin := time.Now()
		kubesourcetest.ApplyRoute(t, c, "team-a", "api", route("/api", one))
		serves(t, time.Second, "/api", http.StatusOK, "one", replicas...)
		t.Logf("a new route served by both replicas %v after kubectl apply", time.Since(begin).Round(time.Millisecond))
		kubesourcetest.ApplyRoute(t, c, "team-a", "api", route("/api", two))
		serves(t, time.Second, "/api", http.StatusOK, "two", replicas...)
		kubesourcetest.DeleteRoute(t, c, "team-a", "api")
		serves(t, time.Second, "/api", http.StatusNotFound, "", replicas...)
	})

	// service/NAME:PORT is the Service of the route's namespace, through
	// the cluster's DNS, which this machine has not: the request fails,
	// and the upstream errors name the Service's address.
	t.Run("service upstream", func(t *testing.T) {
		kubesourcetest.ApplyRoute(t, c, "team-a", "svc", `{match: {host: app.test, path: /svc}, to: "service/web:80", public: true}`)
		serves(t, time.Second, "/svc", http.StatusBadGateway, "", a)
		families, err := a.Metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var backends []string
		for _, f := range families {
			if f.GetName() != "sekisho_upstream_errors_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["route"] == "team-a/svc" {
					backends = append(backends, labels["backend"])
				}
			}
		}
		if !slices.Contains(backends, "web.team-a.svc.cluster.local:80") {
			t.Errorf("upstream errors of team-a/svc name %q", backends)
		}
		kubesourcetest.DeleteRoute(t, c, "team-a", "svc")
	})

	t.Run("invalid", func(t *testing.T) {
		kubesourcetest.ApplyRoute(t, c, "team-b", "bad", `{match: {host: app.test, path: /bad}, to: "`+two+`", allow: [{when: "identity.nope == 1"}]}`)
		testutil.Eventually(t, 10*time.Second, "status Invalid", func() bool {
			cond, _ := kubesourcetest.Accepted(t, c, "team-b", "bad")
			return cond != nil && cond.Status == "False" && cond.Reason == "Invalid" && strings.HasPrefix(cond.Message, "spec.allow[0].when: ") && strings.Contains(cond.Message, "undefined field 'nope'")
		})
		testutil.Eventually(t, 5*time.Second, "a Warning Event", func() bool {
			ev := kubesourcetest.Events(t, c, "team-b", "bad")
			return len(ev) == 1 && strings.HasPrefix(ev[0], "Warning Invalid: spec.allow[0].when: ")
		})
		serves(t, time.Second, "/web", http.StatusOK, "one", replicas...)
		serves(t, time.Second, "/bad", http.StatusNotFound, "", replicas...)
		if !strings.Contains(logsA.String(), `"msg":"route from Kubernetes refused","route":"team-b/bad"`) {
			t.Errorf("no WARN for the refused route:\n%s", logsA)
		}
	})

	t.Run("conflicts", func(t *testing.T) {
		kubesourcetest.ApplyRoute(t, c, "team-b", "web", route("/web", two))
		kubesourcetest.ApplyRoute(t, c, "team-b", "health", route("/healthz", two))
		for _, tt := range []struct{ name, winner string }{{"web", `route "team-a/web"`}, {"health", `route "health"`}} {
			testutil.Eventually(t, 10*time.Second, "team-b/"+tt.name+" Conflicted naming "+tt.winner, func() bool {
				cond, _ := kubesourcetest.Accepted(t, c, "team-b", tt.name)
				return cond != nil && cond.Reason == "Conflicted" && strings.Contains(cond.Message, tt.winner)
			})
		}
		serves(t, time.Second, "/web", http.StatusOK, "one", replicas...)
		if cond, _ := kubesourcetest.Accepted(t, c, "team-a", "web"); cond == nil || cond.Status != "True" {
			t.Errorf("the winner: %+v", cond)
		}
		for _, inst := range replicas {
			if got := kubeGauge(t, inst.Metrics, "sekisho_kube_routes", "conflicted"); got != 2 {
				t.Errorf("sekisho_kube_routes{state=conflicted} = %v", got)
			}
		}
	})

	// A host no shared_hosts entry names belongs to the namespace of its
	// oldest Route: another namespace cannot add a path to it, and so
	// cannot take a share of its requests and credentials.
	t.Run("host of another namespace", func(t *testing.T) {
		kubesourcetest.ApplyRoute(t, c, "team-a", "own", `{match: {host: a.test, path_prefix: /}, to: "`+one+`", public: true}`)
		kubesourcetest.ApplyRoute(t, c, "team-b", "steal", `{match: {host: a.test, path_prefix: /login/}, to: "`+two+`", public: true, pass_credentials: true}`)
		testutil.Eventually(t, 10*time.Second, "team-b/steal Conflicted", func() bool {
			cond, _ := kubesourcetest.Accepted(t, c, "team-b", "steal")
			return cond != nil && cond.Reason == "Conflicted" && strings.Contains(cond.Message, `host "a.test" belongs to namespace team-a`)
		})
		for _, inst := range replicas {
			if code, body := getHost(t, inst, "a.test", "/login/x"); code != http.StatusOK || body != "one" {
				t.Errorf("a.test/login/x answered %d %q, want team-a's upstream", code, body)
			}
		}
		kubesourcetest.DeleteRoute(t, c, "team-b", "steal")
		kubesourcetest.DeleteRoute(t, c, "team-a", "own")
	})

	t.Run("namespace not listed", func(t *testing.T) {
		kubesourcetest.ApplyRoute(t, c, "outside", "x", route("/outside", two))
		kubesourcetest.ApplyRoute(t, c, "team-b", "marker", route("/marker", two))
		serves(t, time.Second, "/marker", http.StatusOK, "two", replicas...)
		serves(t, 0, "/outside", http.StatusNotFound, "", replicas...)
		if cond, _ := kubesourcetest.Accepted(t, c, "outside", "x"); cond != nil {
			t.Errorf("a route of a namespace not listed got status: %+v", cond)
		}
	})

	t.Run("leader", func(t *testing.T) {
		leader, follower, stopLeader := a, b, stopA
		if kubeGauge(t, b.Metrics, "sekisho_kube_status_leader", "") == 1 {
			leader, follower, stopLeader = b, a, stopB
		}
		if kubeGauge(t, leader.Metrics, "sekisho_kube_status_leader", "") != 1 || kubeGauge(t, follower.Metrics, "sekisho_kube_status_leader", "") != 0 {
			t.Fatal("not exactly one leader")
		}
		name := map[*Instance]string{a: "sekisho-a", b: "sekisho-b"}
		writers := statusWriters(t, audit)
		if writers[name[leader]] == 0 || len(writers) != 1 {
			t.Fatalf("status written by %v; the leader is %s", writers, name[leader])
		}
		// Well before the Lease (15 s) would expire: the leader gave it up
		// on its way out.
		stopLeader()
		testutil.Eventually(t, 8*time.Second, "the other replica takes over", func() bool {
			return kubeGauge(t, follower.Metrics, "sekisho_kube_status_leader", "") == 1
		})
		kubesourcetest.ApplyRoute(t, c, "team-a", "later", route("/later", one))
		serves(t, time.Second, "/later", http.StatusOK, "one", follower)
		testutil.Eventually(t, 5*time.Second, "the new leader writes status", func() bool {
			cond, _ := kubesourcetest.Accepted(t, c, "team-a", "later")
			return cond != nil && cond.Status == "True"
		})
		if got := statusWriters(t, audit); got[name[follower]] == 0 {
			t.Errorf("status writes after the takeover: %v", got)
		}
	})
}
