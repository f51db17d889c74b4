package toolbin

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

// kubeSpec is a spec like kubetest's, for tests that never build it.
var kubeSpec = Spec{Name: "kube", Dir: "tools/kube", CacheEnv: "SEKISHO_TOOLBIN_TEST_CACHE", About: "a while",
	Bins: []Bin{{Name: "kube-apiserver", Pkg: "k8s.io/kubernetes/cmd/kube-apiserver"}, {Name: "etcd", Pkg: "go.etcd.io/etcd/server/v3"}}}

const toolsDir = "tools/kube"

// TestRepoRoot checks that the root is found from a package directory (as
// go test runs) and that a directory outside the repository is an error.
func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, toolsDir, "go.mod")); err != nil {
		t.Errorf("repoRoot() = %s, which has no %s/go.mod: %v", root, toolsDir, err)
	}
	t.Chdir(t.TempDir())
	if _, err := RepoRoot(); err == nil || !strings.Contains(err.Error(), module) {
		t.Errorf("RepoRoot() outside the repository: error = %v; want one naming %s", err, module)
	}
}

// TestToolsKey checks the key's form and that it changes with go.sum.
func TestToolsKey(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	key, err := toolsKey(filepath.Join(root, toolsDir))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(key) {
		t.Errorf("key = %q; want 12 hex digits", key)
	}

	dir := t.TempDir()
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(root, toolsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, dir, name, data)
	}
	if same, err := toolsKey(dir); err != nil || same != key {
		t.Errorf("key of a copy = %q, %v; want %q", same, err, key)
	}
	f, err := os.OpenFile(filepath.Join(dir, "go.sum"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("example.com/x v1.0.0 h1:AAAA=\n")
	f.Close()
	if changed, err := toolsKey(dir); err != nil || changed == key {
		t.Errorf("key after go.sum changed = %q, %v; want a key other than %q", changed, err, key)
	}
}

// fakeCache makes a cache directory (kubeSpec.CacheEnv) holding two files in
// place of the binaries, and the key file with key.
func fakeCache(t *testing.T, key string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(kubeSpec.CacheEnv, dir)
	testutil.WriteFile(t, dir, "kube-apiserver", []byte("#!/bin/sh\n"))
	testutil.WriteFile(t, dir, "etcd", []byte("#!/bin/sh\n"))
	testutil.WriteFile(t, dir, "key", []byte(key+"\n"))
	return dir
}

func currentKey(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	key, err := toolsKey(filepath.Join(root, toolsDir))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestEnsureCached checks that binaries built for the current key are used
// as they are, from the cache directory, without building.
func TestEnsureCached(t *testing.T) {
	dir := fakeCache(t, currentKey(t))
	var log testutil.SyncBuffer
	paths, err := Ensure(t.Context(), &log, kubeSpec)
	if err != nil {
		t.Fatal(err)
	}
	if paths["kube-apiserver"] != filepath.Join(dir, "kube-apiserver") || paths["etcd"] != filepath.Join(dir, "etcd") || len(paths) != 2 {
		t.Errorf("Ensure = %v; want both binaries in %s", paths, dir)
	}
	if log.String() != "" {
		t.Errorf("Ensure logged %q; want nothing (no build)", log.String())
	}
}

// TestEnsureStale checks that binaries built for another key are
// not used: a build starts (here cancelled at once) and the stale key is
// gone, so a half-replaced directory is never taken for a complete one.
func TestEnsureStale(t *testing.T) {
	dir := fakeCache(t, "000000000000")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var log testutil.SyncBuffer
	_, err := Ensure(ctx, &log, kubeSpec)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Ensure with stale binaries and a cancelled context: error = %v; want a cancelled build", err)
	}
	if !strings.Contains(log.String(), "building k8s.io/kubernetes/cmd/kube-apiserver") {
		t.Errorf("log = %q; want the build announced", log.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale key file: %v; want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary binary after a cancelled build: %v; want none", err)
	}
}

// TestEnsureWaitsForLock checks that a build in another process
// (holding the lock) is waited for, and the wait ends with the context.
func TestEnsureWaitsForLock(t *testing.T) {
	dir := fakeCache(t, "000000000000")
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var log testutil.SyncBuffer
	_, err = Ensure(ctx, &log, kubeSpec)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "lock") {
		t.Errorf("Ensure while another holds the lock: error = %v; want the wait for the lock to time out", err)
	}
	if !strings.Contains(log.String(), "waiting for another process") || strings.Contains(log.String(), "kube: building") {
		t.Errorf("log = %q; want a wait and no build", log.String())
	}
}

func TestRelease(t *testing.T) {
	if v, err := Release("tools/kube", "k8s.io/kubernetes"); err != nil || !strings.HasPrefix(v, "v1.") {
		t.Errorf("Release(tools/kube, k8s.io/kubernetes) = %q, %v", v, err)
	}
	if _, err := Release("tools/kube", "example.com/not-required"); err == nil || !strings.Contains(err.Error(), "does not require a release of example.com/not-required") {
		t.Errorf("a module the tools module does not require: %v", err)
	}
	if _, err := EnsureOne(t.Context(), io.Discard, Spec{Name: "two", Bins: []Bin{{Name: "a"}, {Name: "b"}}}, nil); err == nil {
		t.Error("EnsureOne took a tool of two binaries")
	}
}
