package serve

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sekisho/sekisho/internal/kubesecret"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// runFails runs the gateway on the config file at path and returns the
// error it stops with at start.
func runFails(t *testing.T, path string) (logs string, err error) {
	t.Helper()
	out := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- Run(ctx, Options{ConfigPath: path, LogOutput: out}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil")
		}
		return out.String(), err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not fail within 20s")
	}
	return "", nil
}

// applySecret creates or replaces a Secret.
func applySecret(t *testing.T, c *kubetest.Cluster, ns, name string, typ corev1.SecretType, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: typ, Data: data}
	secrets := c.Client().CoreV1().Secrets(ns)
	_, err := secrets.Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// poll polls cond until it holds or 10 s pass.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tokensYAML(t *testing.T, name, token string) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.TokenFile(t, name, token, "staff"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSecretsFromKubernetes runs the gateway with its certificate, session
// key and API tokens in Kubernetes Secrets of a real API server: rotated
// Secrets take effect without a restart, a missing or forbidden one stops
// the start with a message naming it, and one that vanishes while the
// gateway runs keeps it serving.
func TestSecretsFromKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs a real kube-apiserver")
	}
	cluster := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig, nil); err != nil {
		t.Fatal(err)
	}
	// Outside a pod: the default client reads $KUBECONFIG.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", kubeconfig)
	t.Setenv(kubesecret.DirEnv, t.TempDir())
	const ns = "gateway"
	if err := cluster.EnsureServiceAccount(ctx, ns, "sekisho"); err != nil {
		t.Fatal(err)
	}
	ca := testutil.NewCA(t)
	leaf1, leaf2 := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	const token1, token2 = "skt_first_5f0e9c1d2b3a4f5e6d7c8b9a0f1e2d3c4b", "skt_second_0a1b2c3d4e5f60718293a4b5c6d7e8f90a"
	sessionKey := func(b byte) []byte {
		return []byte(hex.EncodeToString([]byte(strings.Repeat(string(rune('a'+b)), 32))) + "\n")
	}
	applySecret(t, cluster, ns, "tls", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": leaf1.CertPEM, "tls.key": leaf1.KeyPEM})
	applySecret(t, cluster, ns, "tokens", corev1.SecretTypeOpaque, map[string][]byte{"tokens.yaml": tokensYAML(t, "ci", token1)})
	applySecret(t, cluster, ns, "session", corev1.SecretTypeOpaque, map[string][]byte{"keys": sessionKey(0)})

	applySecret(t, cluster, ns, "decision-tls", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": leaf1.CertPEM, "tls.key": leaf1.KeyPEM})
	addr, decisionAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	config := func(t *testing.T, refs map[string]string) string {
		t.Helper()
		ref := func(k, def string) string {
			if v, ok := refs[k]; ok {
				return v
			}
			return "sekisho+k8s://" + ns + "/" + def
		}
		src := fmt.Sprintf(`
admin: {listen: 127.0.0.1:0}
listen: {https: %[1]q, tls: {cert_file: %[2]q, key_file: %[3]q}}
api_tokens: {file: %[4]q}
providers:
  - name: dev
    builtin: {issuer: "https://%[1]s/.sekisho/dev/dev", users: [{email: a@example.com, password: x}]}
session: {secret_file: %[5]q}
decision:
  listen: %[6]q
  tls: {cert_file: "sekisho+k8s://gateway/decision-tls/tls.crt", key_file: "sekisho+k8s://gateway/decision-tls/tls.key"}
routes:
  - {name: a, match: {path_prefix: /}, to: "builtin:echo", allow: [{groups: [staff]}], api: true}
`, addr, ref("cert", "tls/tls.crt"), ref("key", "tls/tls.key"), ref("tokens", "tokens/tokens.yaml"), ref("session", "session/keys"), decisionAddr)
		return testutil.WriteFile(t, t.TempDir(), "sekisho.yaml", []byte(src))
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	get := func(t *testing.T, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	serial := func(t *testing.T, addr string) *big.Int {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}

	t.Run("start errors", func(t *testing.T) {
		applySecret(t, cluster, ns, "partial", corev1.SecretTypeOpaque, map[string][]byte{"other": []byte("never-shown-value")})
		tests := []struct {
			name string
			refs map[string]string
			want []string
		}{
			{"missing Secret", map[string]string{"tokens": "sekisho+k8s://gateway/nope/tokens.yaml"},
				[]string{"api_tokens.file", "sekisho+k8s://gateway/nope/tokens.yaml", "Secret gateway/nope not found"}},
			{"missing key", map[string]string{"session": "sekisho+k8s://gateway/partial/keys"},
				[]string{"session.secret_file", `Secret gateway/partial has no key "keys" (its keys: other)`}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				logs, err := runFails(t, config(t, tt.refs))
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if strings.Contains(err.Error()+logs, "never-shown-value") {
					t.Errorf("a value was shown:\n%v\n%s", err, logs)
				}
			})
		}
		t.Run("forbidden", func(t *testing.T) {
			token, err := cluster.TokenFor(ctx, ns, "sekisho", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			kc := filepath.Join(t.TempDir(), "sa.kubeconfig")
			if err := cluster.WriteKubeconfig(kc, &clientcmdapi.AuthInfo{Token: token}); err != nil {
				t.Fatal(err)
			}
			t.Setenv("KUBECONFIG", kc)
			_, err = runFails(t, config(t, nil))
			for _, w := range []string{"listen.tls.cert_file", "not allowed to read Secret gateway/tls", "resourceNames [tls] in namespace gateway", "system:serviceaccount:gateway:sekisho"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	})

	t.Run("rotation", func(t *testing.T) {
		inst, logs := startFile(t, config(t, nil))
		for _, a := range []string{addr, decisionAddr} {
			if got, want := serial(t, a), leaf1.TLS.Leaf.SerialNumber; got.Cmp(want) != 0 {
				t.Fatalf("%s serves serial %v, want %v", a, got, want)
			}
		}
		if got := get(t, token1); got != http.StatusOK {
			t.Fatalf("token from the Secret: %d", got)
		}
		login := inst.Gateway.Snapshot().Login

		// A renewed certificate is served without a restart.
		applySecret(t, cluster, ns, "tls", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": leaf2.CertPEM, "tls.key": leaf2.KeyPEM})
		poll(t, "the renewed certificate served", func() bool { return serial(t, addr).Cmp(leaf2.TLS.Leaf.SerialNumber) == 0 })
		// So is the decision service's, from a Secret of its own.
		applySecret(t, cluster, ns, "decision-tls", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": leaf2.CertPEM, "tls.key": leaf2.KeyPEM})
		poll(t, "the decision service's renewed certificate served", func() bool { return serial(t, decisionAddr).Cmp(leaf2.TLS.Leaf.SerialNumber) == 0 })

		// A rotated token file: the new token in, the old one out.
		applySecret(t, cluster, ns, "tokens", corev1.SecretTypeOpaque, map[string][]byte{"tokens.yaml": tokensYAML(t, "ci", token2)})
		poll(t, "the new token accepted", func() bool { return get(t, token2) == http.StatusOK })
		if got := get(t, token1); got != http.StatusUnauthorized {
			t.Errorf("the rotated-out token: %d, want 401", got)
		}

		// A new session key rebuilds the login service (its parts are
		// reused by file content).
		applySecret(t, cluster, ns, "session", corev1.SecretTypeOpaque, map[string][]byte{"keys": sessionKey(1)})
		poll(t, "the login service rebuilt with the new key", func() bool { return inst.Gateway.Snapshot().Login != login })

		// The Secret vanishes: the gateway keeps its last files and
		// serves on; a reload says why it cannot apply.
		if err := cluster.Client().CoreV1().Secrets(ns).Delete(ctx, "tokens", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "a WARN for the deleted Secret", func() bool { return strings.Contains(logs.String(), "was deleted") })
		err := inst.Reload()
		if err == nil || !strings.Contains(err.Error(), "api_tokens.file: sekisho+k8s://gateway/tokens/tokens.yaml: Secret gateway/tokens not found") {
			t.Errorf("reload without the Secret: %v", err)
		}
		if got := get(t, token2); got != http.StatusOK {
			t.Errorf("after the Secret vanished: %d, want the running configuration's 200", got)
		}
		for _, secret := range [][]byte{leaf1.KeyPEM, leaf2.KeyPEM, []byte(token1), []byte(token2), sessionKey(0), sessionKey(1)} {
			if strings.Contains(logs.String(), strings.TrimSpace(string(secret))) {
				t.Errorf("a secret value reached the log")
			}
		}
	})
}
