package kubesecret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/testutil"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

var nsCount atomic.Int32

// namespace makes a namespace of the test's own.
func namespace(t *testing.T, c *kubetest.Cluster) string {
	t.Helper()
	ns := fmt.Sprintf("ks-%d", nsCount.Add(1))
	if err := c.EnsureServiceAccount(context.Background(), ns, "sekisho"); err != nil {
		t.Fatal(err)
	}
	return ns
}

func putSecret(t *testing.T, c *kubetest.Cluster, ns, name string, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	secrets := c.Client().CoreV1().Secrets(ns)
	if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

func ref(t *testing.T, s string) secretref.Ref {
	t.Helper()
	r, isRef, err := secretref.Parse(s)
	if err != nil || !isRef {
		t.Fatalf("Parse(%q) = %v, %v", s, isRef, err)
	}
	return r
}

// newMaterializer reads through cfg, in a directory of the test's own.
func newMaterializer(t *testing.T, cfg *rest.Config, logs *testutil.SyncBuffer) *Materializer {
	t.Helper()
	opts := Options{Dir: t.TempDir(), Wait: 5 * time.Second, RestConfig: func(string) (*rest.Config, error) { return cfg, nil }}
	if logs != nil {
		opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	m := New(opts)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileFollowsTheSecret(t *testing.T) {
	c := kube.Cluster(t)
	ns := namespace(t, c)
	putSecret(t, c, ns, "tls", map[string]string{"tls.crt": "cert-1", "tls.key": "key-1", "other": "unreferenced"})
	logs := &testutil.SyncBuffer{}
	m := newMaterializer(t, c.AdminConfig(), logs)
	ctx := context.Background()
	use := m.Use()
	crt, err := use.File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/tls/tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := use.File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/tls/tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, crt) + " " + readFile(t, key); got != "cert-1 key-1" {
		t.Fatalf("files hold %q", got)
	}
	if filepath.Dir(crt) != filepath.Dir(key) {
		t.Errorf("one Secret's keys in two directories: %s, %s", crt, key)
	}
	// Private: the directory 0700, the files 0600, and only the keys
	// referenced are written.
	for _, p := range []string{m.Dir(), filepath.Dir(crt)} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700", p, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(crt); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, %v; want 0600", crt, fi.Mode().Perm(), err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(crt), "other")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unreferenced key was written: %v", err)
	}

	// A rotation rewrites both keys in one step: a new generation
	// directory, then ..data renamed to point at it, the old one removed.
	gen1, _ := os.Readlink(filepath.Join(filepath.Dir(crt), "..data"))
	putSecret(t, c, ns, "tls", map[string]string{"tls.crt": "cert-2", "tls.key": "key-2", "other": "unreferenced"})
	eventually(t, "the rotated Secret written", func() bool { return readFile(t, crt) == "cert-2" })
	gen2, _ := os.Readlink(filepath.Join(filepath.Dir(crt), "..data"))
	if gen1 == gen2 || gen2 == "" {
		t.Errorf("..data: %q then %q; want a new generation", gen1, gen2)
	}
	if got := readFile(t, filepath.Join(filepath.Dir(crt), gen2, "tls.key")); got != "key-2" {
		t.Errorf("the new generation holds key %q", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(crt), gen1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old generation is kept: %v", err)
	}
	// A change to a key nobody references writes nothing.
	putSecret(t, c, ns, "tls", map[string]string{"tls.crt": "cert-2", "tls.key": "key-2", "other": "changed"})
	putSecret(t, c, ns, "marker", map[string]string{"k": "v"})
	if _, err := use.File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/marker/k")); err != nil {
		t.Fatal(err)
	}
	if gen3, _ := os.Readlink(filepath.Join(filepath.Dir(crt), "..data")); gen3 != gen2 {
		t.Errorf("an unreferenced key's change wrote a new generation")
	}
	if strings.Contains(logs.String(), "cert-") || strings.Contains(logs.String(), "unreferenced") {
		t.Errorf("a value reached the log:\n%s", logs)
	}

	// Close stops the watches and removes every file.
	dir := m.Dir()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close kept %s: %v", dir, err)
	}
	if _, err := m.Use().File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/tls/tls.crt")); err == nil {
		t.Error("File after Close: no error")
	}
}

func TestDeletedSecretKeepsItsFiles(t *testing.T) {
	c := kube.Cluster(t)
	ns := namespace(t, c)
	putSecret(t, c, ns, "session", map[string]string{"key": "s3cr3t-session-key", "gone": "x"})
	logs := &testutil.SyncBuffer{}
	m := newMaterializer(t, c.AdminConfig(), logs)
	ctx := context.Background()
	r := ref(t, "sekisho+k8s://"+ns+"/session/key")
	path, err := m.Use().File(ctx, "", r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Use().File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/session/gone")); err != nil {
		t.Fatal(err)
	}
	// A referenced key removed: its last file stays, WARN, and the next
	// reference fails.
	putSecret(t, c, ns, "session", map[string]string{"key": "s3cr3t-session-key"})
	eventually(t, "a WARN for the lost key", func() bool { return strings.Contains(logs.String(), `"key":"gone"`) })
	if _, err := m.Use().File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/session/gone")); err == nil || !strings.Contains(err.Error(), `no key "gone"`) {
		t.Errorf("a lost key: %v", err)
	}
	if err := c.Client().CoreV1().Secrets(ns).Delete(ctx, "session", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a WARN for the deletion", func() bool { return strings.Contains(logs.String(), "was deleted") })
	if got := readFile(t, path); got != "s3cr3t-session-key" {
		t.Errorf("after deletion the file holds %q", got)
	}
	_, err = m.Use().File(ctx, "", r)
	if err == nil || !strings.Contains(err.Error(), "Secret "+ns+"/session not found") || !strings.Contains(err.Error(), r.Raw) {
		t.Errorf("a deleted Secret: %v", err)
	}
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Errorf("a value reached the log:\n%s", logs)
	}
	// Back again: the next reference reads it.
	putSecret(t, c, ns, "session", map[string]string{"key": "new-key"})
	eventually(t, "the recreated Secret", func() bool { return readFile(t, path) == "new-key" })
}

func TestErrors(t *testing.T) {
	c := kube.Cluster(t)
	ns := namespace(t, c)
	putSecret(t, c, ns, "app", map[string]string{"password": "hunter2-value", "username": "u"})
	m := newMaterializer(t, c.AdminConfig(), nil)
	tests := []struct {
		name, ref string
		want      []string
	}{
		{"missing Secret", "sekisho+k8s://" + ns + "/nope/key", []string{"Secret " + ns + "/nope not found"}},
		{"missing key", "sekisho+k8s://" + ns + "/app/token", []string{`Secret ` + ns + `/app has no key "token" (its keys: password, username)`}},
		{"missing namespace", "sekisho+k8s://no-such-ns/app/password", []string{"Secret no-such-ns/app not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ref(t, tt.ref)
			_, err := m.Use().File(context.Background(), "", r)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tt.want, r.Raw) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error holds a value: %v", err)
			}
		})
	}
	t.Run("no API server", func(t *testing.T) {
		m := New(Options{Dir: t.TempDir(), RestConfig: func(string) (*rest.Config, error) { return nil, errors.New("no Kubernetes API server: not in a pod") }})
		defer m.Close()
		_, err := m.Use().File(context.Background(), "", ref(t, "sekisho+k8s://"+ns+"/app/password"))
		if err == nil || !strings.Contains(err.Error(), "cannot reach the Kubernetes API") || !strings.Contains(err.Error(), "not in a pod") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		cfg := &rest.Config{Host: "https://" + testutil.FreeAddr(t), TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
		m := New(Options{Dir: t.TempDir(), Wait: 500 * time.Millisecond, RestConfig: func(string) (*rest.Config, error) { return cfg, nil }})
		defer m.Close()
		_, err := m.Use().File(context.Background(), "", ref(t, "sekisho+k8s://"+ns+"/app/password"))
		if err == nil || !strings.Contains(err.Error(), "could not read Secret "+ns+"/app within 500ms") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestRBACResourceNames: a Role granting get, list and watch on one Secret
// by name (resourceNames) is all a reference needs; a Secret it does not
// name is refused at once, and the error says what to grant.
func TestRBACResourceNames(t *testing.T) {
	c := kube.Cluster(t)
	ns := namespace(t, c)
	ctx := context.Background()
	putSecret(t, c, ns, "allowed", map[string]string{"key": "v1"})
	putSecret(t, c, ns, "other", map[string]string{"key": "hidden-value"})
	rbac := c.Client().RbacV1()
	if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "sekisho-secrets"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"allowed"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sekisho-secrets"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "sekisho-secrets"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sekisho", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := c.TokenFor(ctx, ns, "sekisho", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.BearerConfig(token)
	m := New(Options{Dir: t.TempDir(), Wait: 30 * time.Second, RestConfig: func(string) (*rest.Config, error) { return cfg, nil }})
	t.Cleanup(func() { _ = m.Close() })
	// RBAC bindings take effect at once on a fresh API server, but poll
	// in case the authorizer's cache lags.
	var path string
	eventually(t, "the allowed Secret read", func() bool {
		path, err = m.Use().File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/allowed/key"))
		return err == nil
	})
	putSecret(t, c, ns, "allowed", map[string]string{"key": "v2"})
	eventually(t, "the watch on the allowed Secret", func() bool { return readFile(t, path) == "v2" })

	start := time.Now()
	r := ref(t, "sekisho+k8s://"+ns+"/other/key")
	_, err = m.Use().File(ctx, "", r)
	if err == nil {
		t.Fatal("a Secret the Role does not name was read")
	}
	for _, w := range []string{r.Raw, "not allowed to read Secret " + ns + "/other", "resourceNames [other] in namespace " + ns, "system:serviceaccount:" + ns + ":sekisho"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "hidden-value") {
		t.Errorf("error holds a value: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("a 403 took %s: it should not wait for the 30s bound", d)
	}
}

// TestRetain: Secrets the running configuration no longer references are
// not watched, and their files are removed.
func TestRetain(t *testing.T) {
	c := kube.Cluster(t)
	ns := namespace(t, c)
	putSecret(t, c, ns, "a", map[string]string{"k": "a1"})
	putSecret(t, c, ns, "b", map[string]string{"k": "b1"})
	m := newMaterializer(t, c.AdminConfig(), nil)
	ctx := context.Background()
	first := m.Use()
	pa, err := first.File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/a/k"))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := first.File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/b/k"))
	if err != nil {
		t.Fatal(err)
	}
	m.Retain(first)
	second := m.Use()
	if p, err := second.File(ctx, "", ref(t, "sekisho+k8s://"+ns+"/a/k")); err != nil || p != pa {
		t.Fatalf("a again: %q, %v; want the same file %q", p, err, pa)
	}
	m.Retain(second)
	if _, err := os.Stat(filepath.Dir(pb)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("b's files kept after the configuration dropped it: %v", err)
	}
	m.mu.Lock()
	n := len(m.watches)
	m.mu.Unlock()
	if n != 1 {
		t.Errorf("%d watches, want 1", n)
	}
	// a is still followed.
	putSecret(t, c, ns, "a", map[string]string{"k": "a2"})
	eventually(t, "a rotated", func() bool { return bytes.Equal([]byte(readFile(t, pa)), []byte("a2")) })
}
