package kubetest

import (
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/semver"

	"github.com/sekisho/sekisho/internal/toolbin"
)

// toolsDir is the tools module, relative to the repository root, that pins
// kube-apiserver and etcd.
const toolsDir = "tools/kube"

// CacheEnv names a directory that overrides where the binaries are kept
// (CI caches it between runs).
const CacheEnv = "SEKISHO_KUBE_CACHE"

// Binaries are the paths of the two servers a Cluster runs.
type Binaries struct {
	APIServer string
	Etcd      string
}

// Spec is what EnsureBinaries builds, for the command that builds every
// tools module ahead of the tests (internal/toolbin/all).
func Spec() (toolbin.Spec, error) {
	mod, err := toolbin.Module(toolsDir)
	if err != nil {
		return toolbin.Spec{}, fmt.Errorf("kubetest: %w", err)
	}
	version := toolbin.Required(mod, "k8s.io/kubernetes")
	if !semver.IsValid(version) {
		return toolbin.Spec{}, fmt.Errorf("kubetest: %s/go.mod does not require a release of k8s.io/kubernetes (%q)", toolsDir, version)
	}
	major, minor, _ := strings.Cut(strings.TrimPrefix(semver.MajorMinor(version), "v"), ".")
	// Without the version, kube-apiserver reports v0.0.0-master and
	// clients that check it misjudge its features.
	var apiserverFlags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		apiserverFlags = append(apiserverFlags,
			"-X", pkg+".gitVersion="+version, "-X", pkg+".gitMajor="+major, "-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean")
	}
	return toolbin.Spec{
		Name:     "kube",
		Dir:      toolsDir,
		CacheEnv: CacheEnv,
		About:    "about 15 minutes on 2 cores",
		Bins: []toolbin.Bin{
			{Name: "kube-apiserver", Pkg: "k8s.io/kubernetes/cmd/kube-apiserver", LDFlags: apiserverFlags},
			// etcd's version is a constant in its source.
			{Name: "etcd", Pkg: "go.etcd.io/etcd/server/v3"},
		},
	}, nil
}

// EnsureBinaries returns kube-apiserver and etcd built from the tools
// module (tools/kube), building them first if this machine has not yet
// (toolbin.Ensure): about 15 minutes cold on 2 cores, about a minute with
// a warm Go build cache. $SEKISHO_KUBE_CACHE overrides where they are kept.
func EnsureBinaries(ctx context.Context, logw io.Writer) (Binaries, error) {
	spec, err := Spec()
	if err != nil {
		return Binaries{}, err
	}
	paths, err := toolbin.Ensure(ctx, logw, spec)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{APIServer: paths["kube-apiserver"], Etcd: paths["etcd"]}, nil
}
