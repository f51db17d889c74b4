package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sekisho/sekisho/internal/helmtest"
	"github.com/sekisho/sekisho/internal/telemetry"
)

// TestDashboardMetrics checks that every series the Grafana dashboard
// queries is one sekisho exports (a renamed metric would otherwise leave
// an empty panel), and that every sekisho metric has a panel.
func TestDashboardMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), helmtest.Chart, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}

	// Record one of each so every family, labelled ones included, is
	// gathered.
	m := telemetry.NewMetrics()
	m.Request("r", 200, time.Millisecond)
	m.UpstreamError("r", "b", "connect")
	m.Reload(true, 1)
	m.JWTUnknownKID("i")
	m.JWKSRefresh("i", "updated")
	m.RestartRequired(true)
	m.TokenReview("authenticated", time.Millisecond)
	k := m.NewKubeRoutes()
	k.Routes(1, 1, 0)
	k.Leader(true)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "sekisho_") {
			exported[f.GetName()] = true
		}
	}

	series := regexp.MustCompile(`sekisho_[a-z_]+`)
	queried := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := series.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no sekisho series", p.Title, tg.Expr)
			}
			for _, n := range names {
				family := n
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if base, ok := strings.CutSuffix(n, suffix); ok && exported[base] {
						family = base
					}
				}
				if !exported[family] {
					t.Errorf("panel %q queries %s, which sekisho does not export", p.Title, n)
				}
				queried[family] = true
			}
		}
	}
	for name := range exported {
		if !queried[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// TestDashboardConfigMap: with grafanaDashboard on, the dashboard ships in
// a ConfigMap labelled for Grafana's sidecar, byte for byte; off by
// default, as is the ServiceMonitor.
func TestDashboardConfigMap(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(repoRoot(t), helmtest.Chart, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, obj := range objects(t, render(t, "monitoring")) {
		if obj.GetKind() != "ConfigMap" || obj.GetName() != release+"-dashboard" {
			continue
		}
		found = true
		if obj.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("labels %v; want grafana_dashboard: \"1\"", obj.GetLabels())
		}
		data, _, _ := unstructured.NestedString(obj.Object, "data", "sekisho.json")
		if data != string(want) {
			t.Errorf("dashboard in the ConfigMap differs from files/dashboard.json")
		}
	}
	if !found {
		t.Error("monitoring values render no dashboard ConfigMap")
	}
	for _, obj := range objects(t, render(t, "")) {
		if obj.GetKind() == "ServiceMonitor" || strings.HasSuffix(obj.GetName(), "-dashboard") {
			t.Errorf("defaults render %s; want it off by default", obj.GetKind())
		}
	}
}
