package helmtest

import (
	"strings"
	"testing"
)

// TestSpec: helm is built from tools/helm with the version of its go.mod
// in the ldflags (else `helm version` reports v3.22 without the patch).
func TestSpec(t *testing.T) {
	s, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bins) != 1 || s.Bins[0].Name != "helm" || s.Bins[0].Pkg != "helm.sh/helm/v3/cmd/helm" || s.CacheEnv != CacheEnv || s.Dir != toolsDir {
		t.Fatalf("spec %+v", s)
	}
	if flags := strings.Join(s.Bins[0].LDFlags, " "); !strings.Contains(flags, "helm.sh/helm/v3/internal/version.version=v3.") {
		t.Errorf("ldflags %q; want the version of tools/helm/go.mod", flags)
	}
}

// TestRun runs the built helm: its version is the pinned one, and a
// failing command returns an error holding helm's own message.
func TestRun(t *testing.T) {
	out, err := Run(t, "version", "--short")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Spec()
	if want := strings.TrimPrefix(s.Bins[0].LDFlags[1], "helm.sh/helm/v3/internal/version.version="); !strings.HasPrefix(string(out), want) {
		t.Errorf("helm version --short = %q; want %s", out, want)
	}
	_, err = Run(t, "template", "x", t.TempDir()+"/no-chart")
	if err == nil || !strings.Contains(err.Error(), "no-chart") {
		t.Errorf("helm template of a missing chart: error %v; want helm's message naming it", err)
	}
}
