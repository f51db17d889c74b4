package kubeclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	sa := t.TempDir()
	if err := os.WriteFile(filepath.Join(sa, "token"), []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		opts     Options
		wantHost string
		wantErr  string
	}{
		{"kubeconfig", Options{Kubeconfig: kc, ServiceHost: "10.0.0.1", ServicePort: "443"}, "https://127.0.0.1:6443", ""},
		{"in cluster", Options{ServiceHost: "10.0.0.1", ServicePort: "443", ServiceAccountDir: sa}, "https://10.0.0.1:443", ""},
		{"in cluster ipv6", Options{ServiceHost: "fd00::1", ServicePort: "443", ServiceAccountDir: sa}, "https://[fd00::1]:443", ""},
		{"no token", Options{ServiceHost: "10.0.0.1", ServicePort: "443", ServiceAccountDir: t.TempDir()}, "", "service-account token"},
		{"nowhere", Options{}, "", "no Kubernetes API server"},
		{"missing kubeconfig", Options{Kubeconfig: filepath.Join(sa, "nope")}, "", "kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Config(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost {
				t.Errorf("Host = %q, want %q", cfg.Host, tt.wantHost)
			}
		})
	}
}

func TestOptionsFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	// In a pod, the pod's account comes before $KUBECONFIG.
	o := OptionsFromEnv("", env(map[string]string{"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1", "KUBECONFIG": "/k"}))
	if o.Kubeconfig != "" {
		t.Errorf("in a pod: Kubeconfig = %q", o.Kubeconfig)
	}
	if o := OptionsFromEnv("", env(map[string]string{"KUBECONFIG": "/k"})); o.Kubeconfig != "/k" {
		t.Errorf("outside: Kubeconfig = %q", o.Kubeconfig)
	}
	if o := OptionsFromEnv("/set", env(map[string]string{"KUBECONFIG": "/k"})); o.Kubeconfig != "/set" {
		t.Errorf("named: Kubeconfig = %q", o.Kubeconfig)
	}
}

func TestNamespace(t *testing.T) {
	sa := t.TempDir()
	if err := os.WriteFile(filepath.Join(sa, "namespace"), []byte("team-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ns, err := Namespace(func(string) string { return "" }, sa); err != nil || ns != "team-a" {
		t.Errorf("from file: %q, %v", ns, err)
	}
	if ns, err := Namespace(func(k string) string { return map[string]string{"POD_NAMESPACE": "sekisho"}[k] }, sa); err != nil || ns != "sekisho" {
		t.Errorf("from env: %q, %v", ns, err)
	}
	if _, err := Namespace(func(string) string { return "" }, t.TempDir()); err == nil || !strings.Contains(err.Error(), "POD_NAMESPACE") {
		t.Errorf("neither: %v", err)
	}
}
