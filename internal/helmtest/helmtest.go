// Package helmtest renders Helm charts for tests with the real helm CLI,
// built from the tools module tools/helm (its own go.mod and go.sum, so
// helm's dependencies never mix with sekisho's) once per machine by
// internal/toolbin. Tests render deploy/helm/sekisho exactly as
// `helm template` does for a user, rather than through a model of Helm's
// template engine.
//
// The binary is built on first use (EnsureBinary): about 2 minutes cold on 2 cores,
// once per machine. Under -short the tests that need it are skipped;
// otherwise a helm that cannot be built fails the test.
package helmtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/toolbin"
)

// toolsDir is the tools module, relative to the repository root, that pins
// helm.
const toolsDir = "tools/helm"

// helmModule is the module whose version the tools module pins.
const helmModule = "helm.sh/helm/v3"

// CacheEnv names a directory that overrides where the binary is kept (CI
// caches it between runs).
const CacheEnv = "SEKISHO_HELM_CACHE"

// Spec is what EnsureBinary builds, for the command that builds every tools
// module ahead of the tests (internal/toolbin/all).
func Spec() (toolbin.Spec, error) {
	version, err := toolbin.Release(toolsDir, helmModule)
	if err != nil {
		return toolbin.Spec{}, fmt.Errorf("helmtest: %w", err)
	}
	return toolbin.Spec{
		Name:     "helm",
		Dir:      toolsDir,
		CacheEnv: CacheEnv,
		About:    "about 2 minutes on 2 cores",
		Bins: []toolbin.Bin{{
			Name: "helm",
			Pkg:  helmModule + "/cmd/helm",
			// Without it `helm version` says v3.22 with no patch, and
			// charts that check .Capabilities.HelmVersion misjudge it.
			LDFlags: []string{"-X", helmModule + "/internal/version.version=" + version, "-X", helmModule + "/internal/version.gitTreeState=clean"},
		}},
	}, nil
}

// EnsureBinary returns the helm binary built from the tools module
// (tools/helm), building it first if this machine has not yet
// (toolbin.Ensure). $SEKISHO_HELM_CACHE overrides where it is kept.
func EnsureBinary(ctx context.Context, logw io.Writer) (string, error) {
	spec, err := Spec()
	return toolbin.EnsureOne(ctx, logw, spec, err)
}

// Binary returns the helm binary for a test, building it if needed
// (progress on stderr). It skips the test under -short.
func Binary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("helmtest: -short skips tests that run helm")
	}
	bin, err := EnsureBinary(tb.Context(), os.Stderr)
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// Chart is the sekisho chart, relative to the repository root.
const Chart = "deploy/helm/sekisho"

// Render is one `helm template` run.
type Render struct {
	// Release and Namespace name the release (defaults "sekisho" and
	// "sekisho").
	Release   string
	Namespace string
	// Values are values files' contents, applied in order after the
	// chart's values.yaml.
	Values [][]byte
	// Args are more `helm template` flags (--include-crds, --api-versions).
	Args []string
}

// Run runs helm with args in a directory of the test's own, with HOME and
// helm's own directories there too, so no user configuration or cache is
// read or written. It returns stdout; a failure returns an error holding
// stderr.
func Run(tb testing.TB, args ...string) ([]byte, error) {
	tb.Helper()
	bin := Binary(tb)
	home := tb.TempDir()
	cmd := exec.CommandContext(tb.Context(), bin, args...)
	cmd.Dir = home
	cmd.Env = []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data"),
		"KUBECONFIG=" + filepath.Join(home, "no-kubeconfig"),
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// Template renders the chart at chartDir (relative to the repository root)
// with r, failing the test if helm fails.
func Template(tb testing.TB, chartDir string, r Render) []byte {
	tb.Helper()
	root, err := toolbin.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	if r.Release == "" {
		r.Release = "sekisho"
	}
	if r.Namespace == "" {
		r.Namespace = "sekisho"
	}
	args := []string{"template", r.Release, filepath.Join(root, chartDir), "--namespace", r.Namespace}
	dir := tb.TempDir()
	for i, v := range r.Values {
		path := filepath.Join(dir, fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(path, v, 0o600); err != nil {
			tb.Fatal(err)
		}
		args = append(args, "--values", path)
	}
	args = append(args, r.Args...)
	out, err := Run(tb, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
