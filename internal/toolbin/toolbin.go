// Package toolbin builds the real servers the tests run (kube-apiserver,
// etcd, OpenBao, an AWS emulator) from the tools modules under tools/,
// once per machine, into a cache directory. They cannot be downloaded
// here, so they are compiled from the Go module proxy: each tools module
// has its own go.mod and committed go.sum, so their dependencies never
// mix with sekisho's and CI resolves nothing new.
//
// It is test support: production code never imports it (internal/deptest).
package toolbin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"

	"github.com/sekisho/sekisho/internal/testutil"
)

// module is sekisho's module path: the repository root is the directory of
// the go.mod that declares it.
const module = "github.com/sekisho/sekisho"

// Bin is one binary of a tools module.
type Bin struct {
	// Name is the file name in the cache directory.
	Name string
	// Pkg is the main package to build.
	Pkg string
	// LDFlags are passed to the linker (versions); "-s -w" is always
	// added: no symbol table or DWARF, a third less to write and cache.
	LDFlags []string
}

// Spec is a tools module and what to build from it.
type Spec struct {
	// Name prefixes the cache directory and the messages ("kube").
	Name string
	// Dir is the tools module, relative to the repository root.
	Dir string
	// CacheEnv names an environment variable that, when set, is the
	// directory to keep the binaries in (CI may cache it).
	CacheEnv string
	// Bins are built in order.
	Bins []Bin
	// About is how long a cold build takes, for the progress message.
	About string
}

// Ensure returns the path of each of spec's binaries by name, building
// them first if this machine has not yet. They live in $CacheEnv, or else
// in the user cache directory under a name derived from the tools module's
// go.mod and go.sum and the Go version, so changing any of them builds
// afresh. Parallel callers (go test runs packages in parallel processes)
// build once: the others wait on a file lock. Progress goes to logw.
func Ensure(ctx context.Context, logw io.Writer, spec Spec) (map[string]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	tools := filepath.Join(root, spec.Dir)
	key, err := toolsKey(tools)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	dir := os.Getenv(spec.CacheEnv)
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("%s: no cache directory for the binaries (set %s): %w", spec.Name, spec.CacheEnv, err)
		}
		dir = filepath.Join(base, "sekisho", spec.Name+"-"+key)
	}
	paths := make(map[string]string, len(spec.Bins))
	for _, b := range spec.Bins {
		paths[b.Name] = filepath.Join(dir, b.Name)
	}
	if built(dir, key, paths) {
		return paths, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: create %s: %w", spec.Name, dir, err)
	}
	unlock, err := lock(ctx, spec.Name, filepath.Join(dir, ".lock"), logw)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if built(dir, key, paths) { // another process built them while we waited
		return paths, nil
	}
	// The key file is written last: binaries without it are incomplete or
	// from other sources, and are rebuilt.
	if err := os.Remove(filepath.Join(dir, "key")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	for _, b := range spec.Bins {
		if err := build(ctx, logw, spec, tools, paths[b.Name], b); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte(key+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	return paths, nil
}

// Module reads the go.mod of the tools module dir (relative to the
// repository root), for the versions a Spec puts in its ldflags.
func Module(dir string) (*modfile.File, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, dir, "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the tools module: %w", err)
	}
	return modfile.ParseLax(path, data, nil)
}

// Required returns the version of mod that f requires, "" if none.
func Required(f *modfile.File, mod string) string {
	for _, r := range f.Require {
		if r.Mod.Path == mod {
			return r.Mod.Version
		}
	}
	return ""
}

// Release returns the version of mod that the tools module dir pins, for
// a Spec's ldflags; a module the tools module does not require is an
// error, so a renamed module is caught before a long build.
func Release(dir, mod string) (string, error) {
	f, err := Module(dir)
	if err != nil {
		return "", err
	}
	v := Required(f, mod)
	if !semver.IsValid(v) {
		return "", fmt.Errorf("%s/go.mod does not require a release of %s (%q)", dir, mod, v)
	}
	return v, nil
}

// EnsureOne is Ensure for a tool of one binary: that binary's path. spec
// and err are what the tool's Spec returned.
func EnsureOne(ctx context.Context, logw io.Writer, spec Spec, err error) (string, error) {
	if err != nil {
		return "", err
	}
	if len(spec.Bins) != 1 {
		return "", fmt.Errorf("%s: EnsureOne needs a tool of one binary, not %d", spec.Name, len(spec.Bins))
	}
	paths, err := Ensure(ctx, logw, spec)
	if err != nil {
		return "", err
	}
	return paths[spec.Bins[0].Name], nil
}

// built reports whether dir holds every binary built for key.
func built(dir, key string, paths map[string]string) bool {
	got, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil || strings.TrimSpace(string(got)) != key {
		return false
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// build compiles b.Pkg of the tools module into out: into a temporary file
// first, renamed into place when complete, so a reader never runs half a
// binary. -trimpath matches the flags scripts and developers use, so the
// Go build cache is shared; ldflags change only the link step.
func build(ctx context.Context, logw io.Writer, spec Spec, tools, out string, b Bin) error {
	tmp := out + ".tmp"
	ldflags := append([]string{"-s", "-w"}, b.LDFlags...)
	args := []string{"build", "-C", tools, "-trimpath", "-ldflags=" + strings.Join(ldflags, " "), "-o", tmp, b.Pkg}
	fmt.Fprintf(logw, "%s: building %s into %s (the first build on a machine takes %s)\n", spec.Name, b.Pkg, filepath.Dir(out), spec.About)
	start := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	// In a process group, like a server: the compilers go stops with it,
	// and with a test binary that go test's timeout kills.
	p, err := testutil.StartProcess(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.Name, err)
	}
	select {
	case <-p.Exited():
		err = p.Err()
	case <-ctx.Done():
		_ = p.Stop(0)
		err = ctx.Err()
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%s: go %s: %w", spec.Name, strings.Join(args, " "), err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("%s: %w", spec.Name, err)
	}
	fmt.Fprintf(logw, "%s: built %s in %s\n", spec.Name, filepath.Base(out), time.Since(start).Round(time.Second))
	return nil
}

// lock takes an exclusive lock on path, waiting for another process that
// holds it (it is building the binaries) until ctx ends.
func lock(ctx context.Context, name, path string, logw io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for said := false; ; said = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("%s: lock %s: %w", name, path, err)
		}
		if !said {
			fmt.Fprintf(logw, "%s: waiting for another process building the binaries (lock %s)\n", name, path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s: waiting for lock %s: %w", name, path, ctx.Err())
		case <-tick.C: // flock cannot wait on a context: poll it
		}
	}
}

// RepoRoot walks up from the working directory to the directory whose
// go.mod declares sekisho's module (go test runs in the package's
// directory, go run where it is called).
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modfile.ModulePath(data) == module {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod of module %s in %s or above", module, wd)
		}
	}
}

// toolsKey names a build of the tools module in dir: the first 12 hex
// digits of the SHA-256 of its go.mod, its go.sum and the Go version.
func toolsKey(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("read the tools module: %w", err)
		}
		h.Write(data)
	}
	h.Write([]byte(runtime.Version()))
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
