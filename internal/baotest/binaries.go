package baotest

import (
	"context"
	"fmt"
	"io"

	"github.com/sekisho/sekisho/internal/toolbin"
)

// toolsDir is the tools module, relative to the repository root, that pins
// OpenBao.
const toolsDir = "tools/openbao"

// CacheEnv names a directory that overrides where the binary is kept (CI
// caches it between runs).
const CacheEnv = "SEKISHO_OPENBAO_CACHE"

// releases maps the pseudo-versions the tools module may pin to the
// OpenBao release they are: the module path has no /v2, so the proxy
// serves only pseudo-versions, and without the release in its ldflags bao
// reports 0.0.0-dev.
var releases = map[string]string{
	"v0.0.0-20250828202315-f9407a27fbee": "2.4.0",
}

// Spec is what EnsureBinary builds, for the command that builds every
// tools module ahead of the tests (internal/toolbin/all).
func Spec() (toolbin.Spec, error) {
	mod, err := toolbin.Module(toolsDir)
	if err != nil {
		return toolbin.Spec{}, fmt.Errorf("baotest: %w", err)
	}
	pseudo := toolbin.Required(mod, "github.com/openbao/openbao")
	release, ok := releases[pseudo]
	if !ok {
		return toolbin.Spec{}, fmt.Errorf("baotest: %s/go.mod requires github.com/openbao/openbao %q, which is no release this package knows: add it to releases", toolsDir, pseudo)
	}
	return toolbin.Spec{
		Name:     "openbao",
		Dir:      toolsDir,
		CacheEnv: CacheEnv,
		About:    "about 14 CPU-minutes",
		Bins: []toolbin.Bin{{
			Name:    "bao",
			Pkg:     "github.com/openbao/openbao",
			LDFlags: []string{"-X", "github.com/openbao/openbao/version.fullVersion=" + release},
		}},
	}, nil
}

// EnsureBinary returns the path of bao built from the tools module
// (tools/openbao), building it first if this machine has not yet
// (toolbin.Ensure). $SEKISHO_OPENBAO_CACHE overrides where it is kept.
func EnsureBinary(ctx context.Context, logw io.Writer) (string, error) {
	spec, err := Spec()
	return toolbin.EnsureOne(ctx, logw, spec, err)
}
