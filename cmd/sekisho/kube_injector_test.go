package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

func TestKubeInjectorManifests(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "sekisho-injector.sekisho.svc")
	testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	caFile := testutil.WriteFile(t, dir, "ca.crt", ca.PEM)
	cfg := testutil.WriteFile(t, dir, "inj.yaml", []byte("kube: {injector: {listen: ':9443', image: 'ghcr.io/sekisho/sekisho:v1', tls: {cert_file: tls.crt, key_file: tls.key}}}\n"))
	none := testutil.WriteFile(t, dir, "none.yaml", []byte("listen: {http: ':0'}\nroutes: [{name: a, match: {path_prefix: /}, to: 'builtin:echo', public: true}]\n"))
	for _, tt := range []struct {
		name string
		args []string
		code int
		out  []string
		err  string
	}{
		{"service", []string{"--config", cfg, "--ca-file", caFile}, 0, []string{
			"kind: MutatingWebhookConfiguration", "failurePolicy: Fail", "sideEffects: None", "port: 9443", "namespace: sekisho",
			"kind: ValidatingAdmissionPolicy\n", "kind: ValidatingAdmissionPolicyBinding", "kind: ClusterRole\n", "- configmaps", "- kube-system",
		}, ""},
		{"url", []string{"--config", cfg, "--url", "https://10.0.0.5:9443/mutate", "--ca-file", caFile}, 0, []string{"url: https://10.0.0.5:9443/mutate"}, ""},
		// A leaf signed by a CA is no CA bundle: kube-apiserver would trust
		// nothing else that CA signed, and nothing after a renewal.
		{"leaf without its CA", []string{"--config", cfg}, 1, nil, "give that CA with --ca-file"},
		{"no injector section", []string{"--config", none, "--ca-file", caFile}, 1, nil, "has no kube.injector section"},
		{"no config", nil, 2, nil, "usage: sekisho kube injector-manifests"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"kube", "injector-manifests"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.err) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
			}
			for _, want := range tt.out {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestKubeCopyBinary(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "sekisho")
	var out, errb bytes.Buffer
	if code := run([]string{"kube", "copy-binary", dest}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(self)
	b, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("copy differs from the executable (err %v)", err)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o555 {
		t.Fatalf("mode %v, want 0555", fi.Mode().Perm())
	}
	if code := run([]string{"kube", "copy-binary", filepath.Join(t.TempDir(), "no", "dir")}, &out, &errb); code != 1 {
		t.Fatalf("copy into a missing directory: exit %d", code)
	}
}
