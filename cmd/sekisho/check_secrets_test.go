package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sekisho/sekisho/internal/kubesecret"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// TestCheckSecretReferences: check reads Secret references through the API
// server as serve does: a present Secret passes, a missing one is a problem
// at its line and key, and without any API server it is a problem saying
// so, not a crash. The Secrets' files are removed when check ends.
func TestCheckSecretReferences(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs a real kube-apiserver")
	}
	cluster := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	if err := cluster.EnsureServiceAccount(ctx, "gateway", "sekisho"); err != nil {
		t.Fatal(err)
	}
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "localhost")
	if _, err := cluster.Client().CoreV1().Secrets("gateway").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "gateway"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig, nil); err != nil {
		t.Fatal(err)
	}
	secretsDir := t.TempDir()
	t.Setenv(kubesecret.DirEnv, secretsDir)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	write := func(name, key string) string {
		return testutil.WriteFile(t, dir, name, []byte("listen: {https: ':0', tls: {cert_file: \"sekisho+k8s://gateway/tls/tls.crt\",\n  key_file: \"sekisho+k8s://gateway/tls/"+key+"\"}}\nroutes:\n"+routeA))
	}
	good, bad := write("good.yaml", "tls.key"), write("bad.yaml", "key.pem")
	tests := []struct {
		name, kubeconfig, config string
		code                     int
		want                     string
	}{
		{"present", kubeconfig, good, 0, "ok (1 routes)"},
		{"missing key", kubeconfig, bad, 1, bad + `:2: listen.tls.key_file: sekisho+k8s://gateway/tls/key.pem: Secret gateway/tls has no key "key.pem" (its keys: tls.crt, tls.key)`},
		{"no API server", "", good, 1, good + ":1: listen.tls.cert_file: sekisho+k8s://gateway/tls/tls.crt: cannot reach the Kubernetes API to read Secret gateway/tls: no Kubernetes API server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tt.kubeconfig)
			var out, errb bytes.Buffer
			if code := run([]string{"check", "--config", tt.config}, &out, &errb); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errb.String())
			}
			if got := out.String() + errb.String(); !strings.Contains(got, tt.want) {
				t.Errorf("check says:\n%s\nwant:\n%s", got, tt.want)
			}
			if strings.Contains(out.String()+errb.String(), "PRIVATE KEY") {
				t.Error("check printed key material")
			}
			if left, _ := os.ReadDir(secretsDir); len(left) != 0 {
				t.Errorf("check left the Secrets' files behind: %v", left)
			}
		})
	}
}
