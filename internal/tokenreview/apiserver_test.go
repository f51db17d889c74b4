package tokenreview

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"

	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/testutil"
)

// tlsFixture serves the webhook over TLS requiring a client certificate
// from ca, as in production, and writes the kubeconfig `sekisho kube
// webhook-config` would print for it.
func tlsFixture(t testing.TB) (f *fixture, ca *testutil.CA, kubeconfig string) {
	t.Helper()
	env := configtest.New(t)
	ca = testutil.NewCA(t)
	leaf := ca.Server(t, "127.0.0.1")
	client := ca.Client(t, "kube-apiserver")
	dir := t.TempDir()
	cfg := Config{Listen: "127.0.0.1:0", TLS: &listen.ServerTLS{
		CertFile:     testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM),
		KeyFile:      testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM),
		ClientCAFile: testutil.WriteFile(t, dir, "ca.crt", ca.PEM),
	}}
	f = serveSnapshot(t, env, env.Snapshot(webhookConfig(env, "")), cfg)
	out, err := Kubeconfig(cfg, KubeconfigOptions{
		Server:         f.url,
		CAFile:         cfg.TLS.ClientCAFile,
		ClientCertFile: testutil.WriteFile(t, dir, "client.crt", client.CertPEM),
		ClientKeyFile:  testutil.WriteFile(t, dir, "client.key", client.KeyPEM),
	})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig = filepath.Join(dir, "webhook.kubeconfig")
	if err := os.WriteFile(kubeconfig, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, ca, kubeconfig
}

// TestAPIServerWebhookClient drives the webhook with kube-apiserver's own
// webhook token authenticator (k8s.io/apiserver), configured from the
// kubeconfig Kubeconfig writes: the same client code, TLS and client
// certificate kube-apiserver uses, in both API versions.
func TestAPIServerWebhookClient(t *testing.T) {
	f, _, kubeconfig := tlsFixture(t)
	admin := f.env.Token("cognito:groups", []string{"admin"})
	for _, version := range []string{"v1", "v1beta1"} {
		t.Run(version, func(t *testing.T) {
			restConfig, err := webhookutil.LoadKubeconfig(kubeconfig, nil)
			if err != nil {
				t.Fatal(err)
			}
			implicit := authenticator.Audiences{"https://kubernetes.default.svc.cluster.local"}
			a, err := webhook.New(restConfig, version, implicit, wait.Backoff{Duration: 10 * time.Millisecond, Steps: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			resp, ok, err := a.AuthenticateToken(ctx, admin)
			if err != nil || !ok {
				t.Fatalf("admin token: ok=%v err=%v", ok, err)
			}
			if u := resp.User; u.GetName() != "alice@example.com" || !slices.Equal(u.GetGroups(), []string{"gid:admin"}) || u.GetExtra()["sekisho.io/issuer"][0] != f.env.Issuer().URL {
				t.Fatalf("user %+v", u)
			}
			resp, ok, err = a.AuthenticateToken(ctx, apiToken)
			if err != nil || !ok || resp.User.GetName() != "ci:deployer" {
				t.Fatalf("API token: %+v ok=%v err=%v", resp, ok, err)
			}
			// An unauthenticated status's error reaches kube-apiserver's
			// log as the authenticator's error; the request gets 401.
			if _, ok, err := a.AuthenticateToken(ctx, "skt_wrong"); ok || err == nil || err.Error() != "invalid credentials: unknown api token" {
				t.Fatalf("wrong token: ok=%v err=%v, want a refusal with the reason", ok, err)
			}
			// kube-apiserver asks about its API audiences: the token's
			// "aud" (api) is not one, and the webhook names none.
			actx := authenticator.WithAudiences(ctx, implicit)
			if _, ok, _ := a.AuthenticateToken(actx, admin); ok {
				t.Fatal("audience-bound review of a token for another audience succeeded")
			}
			actx = authenticator.WithAudiences(ctx, authenticator.Audiences{"api"})
			if resp, ok, err := a.AuthenticateToken(actx, admin); !ok || err != nil || !slices.Equal(resp.Audiences, authenticator.Audiences{"api"}) {
				t.Fatalf("audience-bound review of the token's audience: %+v ok=%v err=%v", resp, ok, err)
			}
		})
	}
}

// TestClientCertificateRequired: with tls.client_ca_file, a client without
// a certificate from that CA gets no review at all.
func TestClientCertificateRequired(t *testing.T) {
	f, ca, _ := tlsFixture(t)
	other := testutil.NewCA(t).Client(t, "intruder")
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "other CA": {other.TLS}} {
		t.Run(name, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}}
			resp, err := client.Post(f.url, "application/json", nil)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("answered %d without a valid client certificate", resp.StatusCode)
			}
		})
	}
}
