package kubetest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestRepoRoot checks that the root is found from a package directory (as
// go test runs) and that a directory outside the repository is an error.
func TestRepoRoot(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, toolsDir, "go.mod")); err != nil {
		t.Errorf("repoRoot() = %s, which has no %s/go.mod: %v", root, toolsDir, err)
	}
	t.Chdir(t.TempDir())
	if _, err := repoRoot(); err == nil || !strings.Contains(err.Error(), module) {
		t.Errorf("repoRoot() outside the repository: error = %v; want one naming %s", err, module)
	}
}

// TestToolsKey checks the key's form, that it changes with go.sum, and
// the Kubernetes version read from the tools module.
func TestToolsKey(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	key, version, err := toolsKey(filepath.Join(root, toolsDir))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(key) {
		t.Errorf("key = %q; want 12 hex digits", key)
	}
	if version != "v1.37.2" {
		t.Errorf("version = %q; want v1.37.2 (tools/kube/go.mod's k8s.io/kubernetes)", version)
	}

	dir := t.TempDir()
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(root, toolsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, dir, name, data)
	}
	if same, _, err := toolsKey(dir); err != nil || same != key {
		t.Errorf("key of a copy = %q, %v; want %q", same, err, key)
	}
	f, err := os.OpenFile(filepath.Join(dir, "go.sum"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("example.com/x v1.0.0 h1:AAAA=\n")
	f.Close()
	if changed, _, err := toolsKey(dir); err != nil || changed == key {
		t.Errorf("key after go.sum changed = %q, %v; want a key other than %q", changed, err, key)
	}

	testutil.WriteFile(t, dir, "go.mod", []byte("module example.com/tools\n\ngo 1.26.0\n"))
	if _, _, err := toolsKey(dir); err == nil || !strings.Contains(err.Error(), "k8s.io/kubernetes") {
		t.Errorf("go.mod without k8s.io/kubernetes: error = %v; want one naming it", err)
	}
}

// fakeCache makes a $SEKISHO_KUBE_CACHE directory holding two files in
// place of the binaries, and the key file with key.
func fakeCache(t *testing.T, key string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(CacheEnv, dir)
	testutil.WriteFile(t, dir, "kube-apiserver", []byte("#!/bin/sh\n"))
	testutil.WriteFile(t, dir, "etcd", []byte("#!/bin/sh\n"))
	testutil.WriteFile(t, dir, "key", []byte(key+"\n"))
	return dir
}

func currentKey(t *testing.T) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := toolsKey(filepath.Join(root, toolsDir))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestEnsureBinariesCached checks that binaries built for the current key
// are used as they are, from $SEKISHO_KUBE_CACHE, without building.
func TestEnsureBinariesCached(t *testing.T) {
	dir := fakeCache(t, currentKey(t))
	var log testutil.SyncBuffer
	bins, err := EnsureBinaries(t.Context(), &log)
	if err != nil {
		t.Fatal(err)
	}
	want := Binaries{APIServer: filepath.Join(dir, "kube-apiserver"), Etcd: filepath.Join(dir, "etcd")}
	if bins != want {
		t.Errorf("EnsureBinaries = %+v; want %+v", bins, want)
	}
	if log.String() != "" {
		t.Errorf("EnsureBinaries logged %q; want nothing (no build)", log.String())
	}
}

// TestEnsureBinariesStale checks that binaries built for another key are
// not used: a build starts (here cancelled at once) and the stale key is
// gone, so a half-replaced directory is never taken for a complete one.
func TestEnsureBinariesStale(t *testing.T) {
	dir := fakeCache(t, "000000000000")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var log testutil.SyncBuffer
	_, err := EnsureBinaries(ctx, &log)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("EnsureBinaries with stale binaries and a cancelled context: error = %v; want a cancelled build", err)
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

// TestEnsureBinariesWaitsForLock checks that a build in another process
// (holding the lock) is waited for, and the wait ends with the context.
func TestEnsureBinariesWaitsForLock(t *testing.T) {
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
	_, err = EnsureBinaries(ctx, &log)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "lock") {
		t.Errorf("EnsureBinaries while another holds the lock: error = %v; want the wait for the lock to time out", err)
	}
	if !strings.Contains(log.String(), "waiting for another process") || strings.Contains(log.String(), "kubetest: building") {
		t.Errorf("log = %q; want a wait and no build", log.String())
	}
}
