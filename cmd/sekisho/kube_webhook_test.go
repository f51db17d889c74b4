package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestCheckWarnsAboutSystemNames: a mapping rule allowed to produce
// system: names is valid, but check says so.
func TestCheckWarnsAboutSystemNames(t *testing.T) {
	dir := t.TempDir()
	tokens := testutil.TokenFile(t, "break-glass", "skt_break_glass_0123456789abcdef01234567")
	cfg := testutil.WriteFile(t, dir, "sekisho.yaml", []byte(`api_tokens: {file: `+tokens+`}
kube:
  webhook:
    listen: 127.0.0.1:8443
    audiences: [https://kubernetes.default.svc.cluster.local]
    rules:
      - match: {tokens: [break-glass]}
        groups: [system:masters]
        allow_system: true
`))
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "warning: "+cfg+":9: kube.webhook.rules[0].allow_system: this rule may map identities to reserved system: names") {
		t.Errorf("stderr:\n%s", errb.String())
	}
	if !strings.Contains(out.String(), "ok with 1 warning(s) (0 routes)") {
		t.Errorf("stdout: %s", out.String())
	}
}

// TestCheckWarnsWithoutAudiences: without kube.webhook.audiences, every
// review kube-apiserver sends (it always names its API audiences) would
// refuse API tokens and IdP tokens alike; check says so.
func TestCheckWarnsWithoutAudiences(t *testing.T) {
	tokens := testutil.TokenFile(t, "ci", "skt_ci_0123456789abcdef0123456789abcdef")
	cfg := testutil.WriteFile(t, t.TempDir(), "sekisho.yaml", []byte("api_tokens: {file: "+tokens+"}\nkube:\n  webhook:\n    listen: 127.0.0.1:8443\n    default: {}\n"))
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "warning: "+cfg+":4: kube.webhook.audiences: not set: kube-apiserver asks about its API audiences") {
		t.Errorf("stderr:\n%s", errb.String())
	}
}

func TestKubeWebhookConfig(t *testing.T) {
	dir := t.TempDir()
	tokens := testutil.TokenFile(t, "ci", "skt_ci_0123456789abcdef0123456789abcdef")
	write := func(name, src string) string {
		return testutil.WriteFile(t, dir, name, []byte("api_tokens: {file: "+tokens+"}\n"+src))
	}
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "10.0.0.5")
	testutil.WriteFile(t, dir, "tls.crt", append(append([]byte{}, leaf.CertPEM...), ca.PEM...))
	testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	plain := write("plain.yaml", "kube: {webhook: {listen: '127.0.0.1:8443', default: {}}}\n")
	withTLS := write("tls.yaml", "kube: {webhook: {listen: '10.0.0.5:8443', tls: {cert_file: tls.crt, key_file: tls.key}, default: {}}}\n")
	none := write("none.yaml", "listen: {http: ':0'}\nroutes: [{name: a, match: {path_prefix: /}, to: 'builtin:echo', public: true}]\n")
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"plain loopback", []string{"--config", plain}, 0, "server: http://127.0.0.1:8443/tokenreview", ""},
		{"tls, CA from the chain, relative paths", []string{"--config", withTLS}, 0, "certificate-authority-data:", ""},
		{"server override", []string{"--config", withTLS, "--server", "https://sekisho.auth.svc:8443"}, 0, "server: https://sekisho.auth.svc:8443/tokenreview", ""},
		{"no webhook section", []string{"--config", none}, 1, "", "has no kube.webhook section"},
		{"no config", nil, 2, "", "usage: sekisho kube webhook-config"},
		{"half a client pair", []string{"--config", plain, "--client-cert", "x.crt"}, 1, "", "together"},
		{"missing file", []string{"--config", filepath.Join(dir, "missing.yaml")}, 1, "", "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"kube", "webhook-config"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errb.String(), tt.err) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
			}
		})
	}
}

// TestKubeWebhookExampleChecks: the example in examples/ (and in
// docs/kubernetes.md) is a valid file, and webhook-config turns it into a
// kubeconfig.
func TestKubeWebhookExampleChecks(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../examples/kube-webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testutil.WriteFile(t, dir, "sekisho.yaml", src)
	ca := testutil.NewCA(t)
	leaf, client := ca.Server(t, "sekisho.example.internal"), ca.Client(t, "kube-apiserver")
	for name, data := range map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "apiserver-ca.crt": ca.PEM, "ca.crt": ca.PEM, "client.crt": client.CertPEM, "client.key": client.KeyPEM} {
		testutil.WriteFile(t, dir, name, data)
	}
	testutil.WriteFile(t, dir, "tokens.yaml", []byte("[]\n"))
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", cfg}, &out, &errb); code != 0 || errb.Len() > 0 {
		t.Fatalf("examples/kube-webhook.yaml: exit %d\n%s", code, errb.String())
	}
	out.Reset()
	args := []string{"kube", "webhook-config", "--config", cfg, "--server", "https://sekisho.example.internal:8443",
		"--ca-file", filepath.Join(dir, "ca.crt"), "--client-cert", filepath.Join(dir, "client.crt"), "--client-key", filepath.Join(dir, "client.key")}
	if code := run(args, &out, &errb); code != 0 || !strings.Contains(out.String(), "client-certificate-data:") {
		t.Fatalf("webhook-config: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
