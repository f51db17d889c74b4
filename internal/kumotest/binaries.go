package kumotest

import (
	"context"
	"fmt"
	"io"

	"github.com/sekisho/sekisho/internal/toolbin"
)

// toolsDir is the tools module, relative to the repository root, that pins
// kumo.
const toolsDir = "tools/kumo"

// kumoModule is the emulator's module, whose version the tools module pins.
const kumoModule = "github.com/sivchari/kumo"

// CacheEnv names a directory that overrides where the binary is kept (CI
// caches it between runs).
const CacheEnv = "SEKISHO_KUMO_CACHE"

// Spec is what EnsureBinary builds, for the command that builds every tools
// module ahead of the tests (internal/toolbin/all).
func Spec() (toolbin.Spec, error) {
	if _, err := toolbin.Release(toolsDir, kumoModule); err != nil {
		return toolbin.Spec{}, fmt.Errorf("kumotest: %w", err)
	}
	return toolbin.Spec{
		Name:     "kumo",
		Dir:      toolsDir,
		CacheEnv: CacheEnv,
		About:    "about 8 CPU-minutes",
		Bins:     []toolbin.Bin{{Name: "kumo", Pkg: kumoModule + "/cmd/kumo"}},
	}, nil
}

// EnsureBinary returns the kumo binary built from the tools module
// (tools/kumo), building it first if this machine has not yet
// (toolbin.Ensure): about 8 CPU-minutes cold, seconds with a warm Go build
// cache. $SEKISHO_KUMO_CACHE overrides where it is kept.
func EnsureBinary(ctx context.Context, logw io.Writer) (string, error) {
	spec, err := Spec()
	return toolbin.EnsureOne(ctx, logw, spec, err)
}
