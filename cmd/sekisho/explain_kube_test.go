package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainServiceAccount: explain takes a service account's workload as
// --identity {"kube": ...} and decides on identity.kube like a verified
// token would.
func TestExplainServiceAccount(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sekisho.yaml")
	src := `listen: {http: "127.0.0.1:0"}
routes:
  - name: pay
    match: {path_prefix: /pay}
    to: builtin:echo
    allow: [{when: "identity.kube.namespace == 'payments' && identity.kube.service_account == 'api'"}]
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, identity string
		code           int
		want           string
	}{
		{"payments", `{"username":"system:serviceaccount:payments:api","kind":"service","kube":{"namespace":"payments","service_account":"api","pod":"api-1"}}`, 0, "decision:  allow (200)"},
		{"other namespace", `{"username":"system:serviceaccount:shop:api","kube":{"namespace":"shop","service_account":"api"}}`, 0, "decision:  deny (403)"},
		{"not a service account", `{"username":"alice"}`, 0, "decision:  deny (403)"},
		{"misspelt kube key", `{"username":"x","kube":{"namespase":"payments"}}`, 2, `unknown field "namespase"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, "explain", "--config", cfg, "--identity", tt.identity, "GET", "https://gw.example/pay/x")
			if code != tt.code || !strings.Contains(out+errs, tt.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s%s", code, tt.code, tt.want, out, errs)
			}
		})
	}
}
