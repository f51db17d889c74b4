package stores_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/stores"
)

type constant []byte

func (c constant) Resolve(context.Context, secretref.Ref) ([]byte, error) { return c, nil }

// TestLazyOnce: a store is built when a reference first names it, once
// however many references ask at the same time, and a store no reference
// names is never built.
func TestLazyOnce(t *testing.T) {
	var fileBuilds, kubeBuilds atomic.Int32
	set := stores.NewWith(os.Getenv, map[secretref.Scheme]stores.Constructor{
		secretref.File: func(context.Context, func(string) string) (secrets.Provider, error) {
			fileBuilds.Add(1)
			return constant("v"), nil
		},
		secretref.Kubernetes: func(context.Context, func(string) string) (secrets.Provider, error) {
			kubeBuilds.Add(1)
			return nil, errors.New("unreachable")
		},
	})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := set.Provider(t.Context(), secretref.File); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := fileBuilds.Load(); n != 1 {
		t.Errorf("file store built %d times", n)
	}
	if kubeBuilds.Load() != 0 || !slices.Equal(set.Built(), []secretref.Scheme{secretref.File}) {
		t.Errorf("built %v; want only the file store", set.Built())
	}
	for range 2 {
		if _, err := set.Provider(t.Context(), secretref.Kubernetes); err == nil || err.Error() != "k8s store: unreachable" {
			t.Errorf("error %v", err)
		}
	}
	if n := kubeBuilds.Load(); n != 1 {
		t.Errorf("a failed store built %d times; want its error kept", n)
	}
	if _, err := set.Provider(t.Context(), "s3"); err == nil || !strings.Contains(err.Error(), "not part of this build") {
		t.Errorf("unknown scheme: %v", err)
	}
}

// TestRegistered: the stores this build has, through the real registry: a
// file reference resolves, and the Kubernetes store outside a pod without
// KUBECONFIG says what is missing.
func TestRegistered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(path, []byte("v"), 0o600); err != nil {
		t.Fatal(err)
	}
	set := stores.New(func(string) string { return "" })
	ref, _, err := secretref.Parse("sekisho+file://" + path)
	if err != nil {
		t.Fatal(err)
	}
	values, errs := secrets.Resolver{Providers: set.Provider}.Resolve(t.Context(), []secretref.Ref{ref})
	if errs != nil || string(values[0]) != "v" {
		t.Fatalf("%q %v", values[0], errs)
	}
	_, err = set.Provider(t.Context(), secretref.Kubernetes)
	if err == nil || !strings.Contains(err.Error(), "KUBECONFIG is unset") {
		t.Errorf("k8s without configuration: %v", err)
	}
}
