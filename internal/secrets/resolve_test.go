package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
)

// memStore is a provider over a map, counting fetches; block, when set,
// is waited on (or ctx) before answering.
type memStore struct {
	data    map[string]string
	calls   atomic.Int32
	block   chan struct{}
	arrived chan struct{}
}

func (m *memStore) Resolve(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	m.calls.Add(1)
	if m.arrived != nil {
		m.arrived <- struct{}{}
	}
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	v, ok := m.data[ref.Path]
	if !ok {
		return nil, fmt.Errorf("%s: %w", ref.Raw, secrets.ErrNotFound)
	}
	return []byte(v), nil
}

func parse(t *testing.T, raws ...string) []secretref.Ref {
	t.Helper()
	var refs []secretref.Ref
	for _, r := range raws {
		ref, ok, err := secretref.Parse(r)
		if err != nil || !ok {
			t.Fatalf("Parse(%q): %v %v", r, ok, err)
		}
		refs = append(refs, ref)
	}
	return refs
}

func only(p secrets.Provider) secrets.Providers {
	return func(context.Context, secretref.Scheme) (secrets.Provider, error) { return p, nil }
}

const secretJSON = `{"user":"app","password":"s3cr3t-Value","port":5432,"nested":{"a":1}}`

func TestResolveKeysAndErrors(t *testing.T) {
	m := &memStore{data: map[string]string{"/run/db.json": secretJSON, "/run/plain": "plain-s3cr3t", "/run/list": `["s3cr3t-Value"]`}}
	refs := parse(t,
		"sekisho+file:///run/db.json#password",
		"sekisho+file:///run/db.json#user",
		"sekisho+file:///run/db.json#port",
		"sekisho+file:///run/db.json#nested",
		"sekisho+file:///run/db.json",
		"sekisho+file:///run/plain",
		"sekisho+file:///run/db.json#missing",
		"sekisho+file:///run/plain#password",
		"sekisho+file:///run/list#password",
		"sekisho+file:///run/absent",
	)
	values, errs := secrets.Resolver{Providers: only(m)}.Resolve(t.Context(), refs)
	want := []string{"s3cr3t-Value", "app", "5432", `{"a":1}`, secretJSON, "plain-s3cr3t"}
	for i, w := range want {
		if errs[i] != nil || string(values[i]) != w {
			t.Errorf("%s = %q, %v; want %q", refs[i].Raw, values[i], errs[i], w)
		}
	}
	wantErr := []struct {
		msg      string
		notFound bool
	}{
		{`#missing: secret not found: the JSON object has no key "missing"`, true},
		{"#password: the secret is not a JSON object", false},
		{"#password: the secret is not a JSON object", false},
		{"secret not found", true},
	}
	for i, w := range wantErr {
		err := errs[len(want)+i]
		ref := refs[len(want)+i]
		var e *secrets.Error
		if !errors.As(err, &e) || e.Ref != ref || !strings.Contains(err.Error(), w.msg) || !strings.HasPrefix(err.Error(), ref.Raw+": ") {
			t.Errorf("%s: error %v; want one naming the reference and %q", ref.Raw, err, w.msg)
		}
		if errors.Is(err, secrets.ErrNotFound) != w.notFound {
			t.Errorf("%s: errors.Is(ErrNotFound) = %v", ref.Raw, !w.notFound)
		}
		for _, v := range []string{"s3cr3t", "5432", "app"} {
			if strings.Contains(strings.TrimPrefix(err.Error(), ref.Raw), v) {
				t.Errorf("%s: error %q holds a value", ref.Raw, err)
			}
		}
	}
	// db.json once for its five references, plain, list, absent: 4.
	if n := m.calls.Load(); n != 4 {
		t.Errorf("%d fetches; want 4 (one per distinct secret)", n)
	}
}

// TestResolveAllOK: errs is nil when everything resolved, so callers can
// test it alone.
func TestResolveAllOK(t *testing.T) {
	m := &memStore{data: map[string]string{"/a": "1"}}
	_, errs := secrets.Resolver{Providers: only(m)}.Resolve(t.Context(), parse(t, "sekisho+file:///a"))
	if errs != nil {
		t.Fatalf("errs %v", errs)
	}
}

// TestResolveParallel: distinct secrets are fetched at the same time (all
// three fetches are in flight before any answers), at most Parallel at
// once.
func TestResolveParallel(t *testing.T) {
	m := &memStore{data: map[string]string{"/a": "1", "/b": "2", "/c": "3"}, block: make(chan struct{}), arrived: make(chan struct{}, 3)}
	done := make(chan []error)
	go func() {
		_, errs := secrets.Resolver{Providers: only(m), Parallel: 3}.Resolve(context.Background(),
			parse(t, "sekisho+file:///a", "sekisho+file:///b", "sekisho+file:///c"))
		done <- errs
	}()
	for range 3 {
		select {
		case <-m.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the fetches did not run in parallel")
		}
	}
	close(m.block)
	if errs := <-done; errs != nil {
		t.Fatal(errs)
	}

	// Parallel 1: the second fetch starts only after the first answers.
	m = &memStore{data: map[string]string{"/a": "1", "/b": "2"}, block: make(chan struct{}), arrived: make(chan struct{}, 2)}
	go func() {
		_, errs := secrets.Resolver{Providers: only(m), Parallel: 1}.Resolve(context.Background(), parse(t, "sekisho+file:///a", "sekisho+file:///b"))
		done <- errs
	}()
	<-m.arrived
	select {
	case <-m.arrived:
		t.Fatal("two fetches in flight with Parallel 1")
	case <-time.After(100 * time.Millisecond):
	}
	close(m.block)
	<-m.arrived
	if errs := <-done; errs != nil {
		t.Fatal(errs)
	}
}

// TestResolveTimeout: a store that does not answer fails every reference
// once the overall timeout passes, naming the timeout.
func TestResolveTimeout(t *testing.T) {
	m := &memStore{data: map[string]string{"/a": "1"}, block: make(chan struct{})}
	start := time.Now()
	_, errs := secrets.Resolver{Providers: only(m), Timeout: 200 * time.Millisecond, Parallel: 1}.Resolve(t.Context(),
		parse(t, "sekisho+file:///a", "sekisho+file:///b"))
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "not resolved within 200ms") {
			t.Errorf("ref %d: %v; want a timeout", i, err)
		}
	}
}

// TestResolveProviderError: a store that cannot be built fails its
// references (and only those), with the reason.
func TestResolveProviderError(t *testing.T) {
	m := &memStore{data: map[string]string{"/a": "1"}}
	providers := func(_ context.Context, s secretref.Scheme) (secrets.Provider, error) {
		if s == secretref.Kubernetes {
			return nil, errors.New("k8s store: no Kubernetes API server")
		}
		return m, nil
	}
	values, errs := secrets.Resolver{Providers: providers}.Resolve(t.Context(), parse(t, "sekisho+file:///a", "sekisho+k8s://ns/s/k"))
	if errs[0] != nil || string(values[0]) != "1" {
		t.Errorf("file: %q %v", values[0], errs[0])
	}
	if errs[1] == nil || errs[1].Error() != "sekisho+k8s://ns/s/k: k8s store: no Kubernetes API server" {
		t.Errorf("k8s: %v", errs[1])
	}
}

// FuzzSelectKey: selecting a key of any secret never panics, and an error
// never quotes the secret (encoding/json's own errors would).
func FuzzSelectKey(f *testing.F) {
	f.Add([]byte(secretJSON), "password")
	f.Add([]byte(`{"k":"\u00zz"}`), "k")
	f.Add([]byte(`not json at all`), "k")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		if key == "" {
			return
		}
		_, err := secrets.SelectKey(data, key)
		if err == nil {
			return
		}
		switch err.Error() {
		case fmt.Sprintf("#%s: the secret is not a JSON object", key),
			fmt.Sprintf("#%s: secret not found: the JSON object has no key %q", key, key),
			fmt.Sprintf("#%s: the value is not a valid JSON string", key):
		default:
			t.Fatalf("error %q says more than its fixed text", err)
		}
	})
}
