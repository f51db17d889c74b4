package serve

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/testutil"
)

const reloadBase = `
listen: {http: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
log: {level: info}
routes:
  - {name: echo, match: {path_prefix: /}, to: builtin:echo, public: true}
`

// startInstance runs Run on src (no file, so nothing is watched and only
// the test reloads) until the test ends.
func startInstance(t *testing.T, src string) (*Instance, *testutil.SyncBuffer) {
	t.Helper()
	return startWith(t, Options{DefaultConfig: []byte(src)})
}

// startFile runs the gateway on the config file at path (watched, as in
// production) and returns the instance once it serves.
func startFile(t *testing.T, path string) (*Instance, *testutil.SyncBuffer) {
	t.Helper()
	return startWith(t, Options{ConfigPath: path})
}

// startWith runs Run with opts until the test ends and returns the
// instance once it serves, with its logs.
func startWith(t *testing.T, opts Options) (*Instance, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *Instance, 1)
	done := make(chan error, 1)
	opts.LogOutput, opts.Started = logs, func(i *Instance) { started <- i }
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	select {
	case inst := <-started:
		return inst, logs
	case err := <-done:
		t.Fatalf("Run exited at start: %v\n%s", err, logs)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not start within 20s")
	}
	return nil, nil
}

// restartWarnings returns the sections named by restart-needed WARN lines
// in log output.
func restartWarnings(t *testing.T, out string) []string {
	t.Helper()
	var sections []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["level"] == "WARN" && strings.Contains(m["msg"].(string), "restart") {
			s, _ := m["sections"].(string)
			sections = append(sections, s)
		}
	}
	return sections
}

func gauge(t *testing.T, m *telemetry.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestReloadReportsStartOnlySettings: a reload that changes listen, admin,
// log format/access, decision or tracing says at WARN which sections need a restart
// and sets sekisho_config_restart_required; the log level is applied live;
// an unchanged reload reports nothing.
func TestReloadReportsStartOnlySettings(t *testing.T) {
	inst, logs := startInstance(t, reloadBase)
	tests := []struct {
		name      string
		src       string
		sections  string // "" when nothing needs a restart
		wantDebug bool
	}{
		{"unchanged", reloadBase, "", false},
		{"route change only", strings.Replace(reloadBase, "name: echo", "name: echo2", 1), "", false},
		{"listen address", strings.Replace(reloadBase, `http: "127.0.0.1:0"`, `http: "127.0.0.1:1"`, 1), "listen", false},
		{"listen timeout", strings.Replace(reloadBase, `http: "127.0.0.1:0"`, `http: "127.0.0.1:0", idle_timeout: 7s`, 1), "listen", false},
		{"admin address", strings.Replace(reloadBase, `admin: {listen: "127.0.0.1:0"}`, `admin: {listen: "127.0.0.1:1"}`, 1), "admin", false},
		{"log format and listen", strings.Replace(strings.Replace(reloadBase, "level: info", "level: info, format: text", 1), `http: "127.0.0.1:0"`, `http: "127.0.0.1:1"`, 1), "listen, log", false},
		{"decision added", reloadBase + "decision: {listen: \"127.0.0.1:1\"}\n", "decision", false},
		{"tracing added", reloadBase + "tracing: {endpoint: \"http://127.0.0.1:1\"}\n", "tracing", false},
		{"route watcher added", reloadBase + "kube: {resources: {namespaces: [team-a]}}\n", "kube.resources (kubeconfig, namespaces, namespace_selector, leader_election)", false},
		{"log level is applied live", strings.Replace(reloadBase, "level: info", "level: debug", 1), "", true},
		{"back to the running settings", reloadBase, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst.opts.DefaultConfig = []byte(tt.src) // no reload runs concurrently
			before := len(logs.String())
			if err := inst.Reload(); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			out := logs.String()[before:]
			got := restartWarnings(t, out)
			switch {
			case tt.sections == "" && len(got) > 0:
				t.Errorf("restart warning %q for a reload that needs none:\n%s", got, out)
			case tt.sections != "" && (len(got) != 1 || got[0] != tt.sections):
				t.Errorf("restart warnings %q, want one naming %q:\n%s", got, tt.sections, out)
			}
			want := 0.0
			if tt.sections != "" {
				want = 1
			}
			if g := gauge(t, inst.Metrics, "sekisho_config_restart_required"); g != want {
				t.Errorf("sekisho_config_restart_required = %v, want %v", g, want)
			}
			if got := inst.log.Enabled(context.Background(), slog.LevelDebug); got != tt.wantDebug {
				t.Errorf("debug logging enabled = %v, want %v", got, tt.wantDebug)
			}
		})
	}
}

// TestReloadSharesParts: the process keeps one pool of shared parts, so a
// reload keeps an unchanged route's upstream pool, a failed reload keeps
// the running one, a changed route gets a new one, and the replaced
// snapshot gives its parts back (the pool does not grow with reloads).
func TestReloadSharesParts(t *testing.T) {
	src := reloadBase + "  - {name: up, match: {path_prefix: /up}, to: \"http://127.0.0.1:1\", public: true}\n"
	inst, _ := startInstance(t, src)
	upstream := func() http.Handler {
		t.Helper()
		rt, _, ok := inst.Gateway.Snapshot().Routes.Match("gw.test", "/up", "GET", nil)
		if !ok {
			t.Fatal("route up is gone")
		}
		return rt.Upstream
	}
	pool := inst.cfgOpts.Reuse
	first, held := upstream(), pool.Len()
	for _, tt := range []struct {
		name  string
		src   string
		fails bool
		same  bool
		parts int // shared parts held after the reload
	}{
		{"unchanged", src, false, true, held},
		{"failed reload", src + "  - {name: bad, match: {path: /bad}, to: bad, public: true}\n", true, true, held},
		{"another route", src + "  - {name: more, match: {path: /more}, to: builtin:echo, public: true}\n", false, true, held + 1},
		{"upstream changed", strings.Replace(src, "127.0.0.1:1\"", "127.0.0.1:2\"", 1), false, false, held},
	} {
		inst.opts.DefaultConfig = []byte(tt.src) // no reload runs concurrently
		if err := inst.Reload(); (err != nil) != tt.fails {
			t.Fatalf("%s: Reload = %v", tt.name, err)
		}
		if got := upstream() == first; got != tt.same {
			t.Errorf("%s: same upstream pool = %v, want %v", tt.name, got, tt.same)
		}
		if got := pool.Len(); got != tt.parts {
			t.Errorf("%s: %d shared parts after the reload, want %d", tt.name, got, tt.parts)
		}
	}
}
