package kubetest

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

// EnsureBinaries returns kube-apiserver and etcd built from the tools
// module, building them first if this machine has not yet: from source
// because they cannot be downloaded here, which takes about 15 minutes
// cold on 2 cores (a warm Go build cache makes it about a minute). They
// live in $SEKISHO_KUBE_CACHE, or else in the user cache directory under a
// name derived from the tools module's go.mod and go.sum and the Go
// version, so changing any of them builds afresh. Parallel callers (go test
// runs packages in parallel processes) build once: the others wait on a
// file lock. Progress goes to logw.
func EnsureBinaries(ctx context.Context, logw io.Writer) (Binaries, error) {
	root, err := repoRoot()
	if err != nil {
		return Binaries{}, err
	}
	key, version, err := toolsKey(filepath.Join(root, toolsDir))
	if err != nil {
		return Binaries{}, err
	}
	dir := os.Getenv(CacheEnv)
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return Binaries{}, fmt.Errorf("kubetest: no cache directory for the kube binaries (set %s): %w", CacheEnv, err)
		}
		dir = filepath.Join(base, "sekisho", "kube-"+key)
	}
	bins := Binaries{APIServer: filepath.Join(dir, "kube-apiserver"), Etcd: filepath.Join(dir, "etcd")}
	if built(dir, key, bins) {
		return bins, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("kubetest: create %s: %w", dir, err)
	}
	unlock, err := lock(ctx, filepath.Join(dir, ".lock"), logw)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	if built(dir, key, bins) { // another process built them while we waited
		return bins, nil
	}
	// The key file is written last: binaries without it are incomplete or
	// from other sources, and are rebuilt.
	if err := os.Remove(filepath.Join(dir, "key")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Binaries{}, fmt.Errorf("kubetest: %w", err)
	}
	major, minor, _ := strings.Cut(strings.TrimPrefix(semver.MajorMinor(version), "v"), ".")
	// -s -w: no symbol table or DWARF (panics still name functions), a
	// third less to write and to cache.
	apiserverFlags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		apiserverFlags = append(apiserverFlags,
			"-X", pkg+".gitVersion="+version, "-X", pkg+".gitMajor="+major, "-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean")
	}
	for _, b := range []struct {
		out, pkg string
		ldflags  []string
	}{
		// Without the version, kube-apiserver reports v0.0.0-master and
		// clients that check it misjudge its features.
		{bins.APIServer, "k8s.io/kubernetes/cmd/kube-apiserver", apiserverFlags},
		// etcd's version is a constant in its source.
		{bins.Etcd, "go.etcd.io/etcd/server/v3", []string{"-s", "-w"}},
	} {
		if err := build(ctx, logw, filepath.Join(root, toolsDir), b.out, b.pkg, b.ldflags); err != nil {
			return Binaries{}, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte(key+"\n"), 0o644); err != nil {
		return Binaries{}, fmt.Errorf("kubetest: %w", err)
	}
	return bins, nil
}

// built reports whether dir holds both binaries built for key.
func built(dir, key string, bins Binaries) bool {
	got, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil || strings.TrimSpace(string(got)) != key {
		return false
	}
	for _, p := range []string{bins.APIServer, bins.Etcd} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// build compiles pkg of the tools module into out: into a temporary file
// first, renamed into place when complete, so a reader never runs half a
// binary. -trimpath matches the flags scripts and developers use, so the
// Go build cache is shared; ldflags change only the link step.
func build(ctx context.Context, logw io.Writer, tools, out, pkg string, ldflags []string) error {
	tmp := out + ".tmp"
	args := []string{"build", "-C", tools, "-trimpath", "-ldflags=" + strings.Join(ldflags, " "), "-o", tmp, pkg}
	fmt.Fprintf(logw, "kubetest: building %s into %s (the first build on a machine takes about 15 minutes)\n", pkg, filepath.Dir(out))
	start := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	// In a process group, like a server: the compilers go stops with it,
	// and with a test binary that go test's timeout kills.
	p, err := testutil.StartProcess(cmd)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
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
		return fmt.Errorf("kubetest: go %s: %w", strings.Join(args, " "), err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	fmt.Fprintf(logw, "kubetest: built %s in %s\n", filepath.Base(out), time.Since(start).Round(time.Second))
	return nil
}

// lock takes an exclusive lock on path, waiting for another process that
// holds it (it is building the binaries) until ctx ends.
func lock(ctx context.Context, path string, logw io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
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
			return nil, fmt.Errorf("kubetest: lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(logw, "kubetest: waiting for another process building the kube binaries (lock %s)\n", path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kubetest: waiting for lock %s: %w", path, ctx.Err())
		case <-tick.C: // flock cannot wait on a context: poll it
		}
	}
}

// repoRoot walks up from the working directory to the directory whose
// go.mod declares sekisho's module (go test runs in the package's
// directory, go run where it is called).
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modfile.ModulePath(data) == module {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("kubetest: no go.mod of module %s in %s or above", module, wd)
		}
	}
}

// toolsKey names a build of the tools module in dir: the first 12 hex
// digits of the SHA-256 of its go.mod, its go.sum and the Go version. It
// also returns the Kubernetes version the go.mod requires.
func toolsKey(dir string) (key, version string, err error) {
	h := sha256.New()
	var mod []byte
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", "", fmt.Errorf("kubetest: read the tools module: %w", err)
		}
		if name == "go.mod" {
			mod = data
		}
		h.Write(data)
	}
	h.Write([]byte(runtime.Version()))
	f, err := modfile.ParseLax(filepath.Join(dir, "go.mod"), mod, nil)
	if err != nil {
		return "", "", fmt.Errorf("kubetest: %w", err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == "k8s.io/kubernetes" {
			version = r.Mod.Version
		}
	}
	if !semver.IsValid(version) {
		return "", "", fmt.Errorf("kubetest: %s/go.mod does not require a release of k8s.io/kubernetes (%q)", dir, version)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], version, nil
}
