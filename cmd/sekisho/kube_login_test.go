package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestKubeLoginExitCodes: kubectl shows the plugin's stderr and treats any
// non-zero exit as a failed credential; a bad command line is 2, a failed
// login 1, and stdout holds nothing but an ExecCredential.
func TestKubeLoginExitCodes(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	for _, tc := range []struct {
		name       string
		args       []string
		execInfo   string
		wantCode   int
		wantStderr string
	}{
		{"no issuer", []string{"kube", "login", "--client-id=kubectl"}, "", 2, "sekisho kube login: --issuer is required (see sekisho kube login -h)"},
		{"unknown flag", []string{"kube", "login", "--issuer=https://idp.example.com", "--client-id=k", "--browser"}, "", 2, "flag provided but not defined: -browser"},
		{"bad exec info", []string{"kube", "login", "--issuer=https://idp.example.com", "--client-id=k", "--cache-dir=" + cache}, "{", 1, "KUBERNETES_EXEC_INFO is not an ExecCredential"},
		{
			"non-interactive without cached tokens",
			[]string{"kube", "login", "--issuer=http://127.0.0.1:1/never-contacted", "--client-id=kubectl", "--cache-dir=" + cache},
			`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`,
			1, "a sign-in is needed, but kubectl runs this plugin without a terminal",
		},
		{"setup without client", []string{"kube", "setup", "--issuer=https://idp.example.com"}, "", 2, "sekisho kube setup: --client-id is required"},
		{"setup stray argument", []string{"kube", "setup", "--issuer=https://idp.example.com", "--client-id=k", "now"}, "", 2, `unexpected argument "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_EXEC_INFO", tc.execInfo)
			code, out, errb := runCLI(t, tc.args...)
			if code != tc.wantCode || out != "" || !strings.Contains(errb, tc.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and stderr with %q", code, out, errb, tc.wantCode, tc.wantStderr)
			}
		})
	}
}

func TestKubeSetup(t *testing.T) {
	code, out, errb := runCLI(t, "kube", "setup", "--issuer=http://127.0.0.1:8080/.sekisho/dev/dev", "--client-id=kubectl",
		"--name=alice", "--cluster=dev", "--server=https://127.0.0.1:6443", "--certificate-authority=ca crt.pem")
	want := "kubectl config set-credentials alice --exec-api-version=client.authentication.k8s.io/v1 --exec-command=sekisho " +
		"--exec-arg=kube --exec-arg=login --exec-arg=--issuer=http://127.0.0.1:8080/.sekisho/dev/dev --exec-arg=--client-id=kubectl " +
		"--exec-interactive-mode=IfAvailable\n" +
		"kubectl config set-cluster dev --server=https://127.0.0.1:6443 '--certificate-authority=ca crt.pem' --embed-certs=true\n" +
		"kubectl config set-context dev --cluster=dev --user=alice\n"
	if code != 0 || out != want || errb != "" {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errb, out, want)
	}
	if code, out, _ := runCLI(t, "kube", "login", "-h"); code != 0 || !strings.Contains(out, "-device-code") {
		t.Fatalf("kube login -h: exit %d\n%s", code, out)
	}
}
