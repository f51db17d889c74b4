package authz

import (
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
)

// paymentsSA is a service-account identity as the Kubernetes issuer builds it.
func paymentsSA(ns string) *identity.Identity {
	return &identity.Identity{
		Subject: "system:serviceaccount:" + ns + ":api", Username: "system:serviceaccount:" + ns + ":api",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
		Method: identity.MethodJWT, Kind: identity.KindService,
		Kube: &identity.Kube{Namespace: ns, ServiceAccount: "api", Pod: "api-7d4", Node: "node-1"},
	}
}

// TestKubeInCEL checks that identity.kube reaches policy for service
// accounts, and that a policy reading it on any other identity (or an
// anonymous request) denies: in an allow rule and in a deny rule alike.
func TestKubeInCEL(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name      string
		allow     string
		deny      string
		id        *identity.Identity
		wantAllow bool
	}{
		{"namespace matches", "identity.kube.namespace == 'payments'", "", paymentsSA("payments"), true},
		{"other namespace", "identity.kube.namespace == 'payments'", "", paymentsSA("shop"), false},
		{"service account and pod", "identity.kube.service_account == 'api' && identity.kube.pod.startsWith('api-') && identity.kube.node == 'node-1'", "", paymentsSA("payments"), true},
		{"has() on a service account", "has(identity.kube.namespace)", "", paymentsSA("payments"), true},
		{"user: allow reading kube", "identity.kube.namespace == 'payments'", "", alice(), false},
		{"user: negated allow reading kube", "identity.kube.namespace != 'payments'", "", alice(), false},
		{"user: deny reading kube", "true", "identity.kube.namespace != 'payments'", alice(), false},
		{"anonymous: allow reading kube", "identity.kube.namespace == ''", "", nil, false},
		{"api token: allow reading kube", "identity.kube.namespace == ''", "", ciBot(), false},
		{"user: even has() cannot match", "!has(identity.kube.namespace)", "", alice(), false},
		{"service account passes a deny on kube", "true", "identity.kube.namespace != 'payments'", paymentsSA("payments"), true},
		{"service account caught by a deny on kube", "true", "identity.kube.namespace != 'payments'", paymentsSA("shop"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var deny []Rule
			if tt.deny != "" {
				deny = []Rule{{When: tt.deny}}
			}
			p := mustCompile(t, env, []Rule{{When: tt.allow}}, deny)
			if d := p.Decide(tt.id, get("/")); d.Allow != tt.wantAllow {
				t.Fatalf("Decide = %+v, want allow %v", d, tt.wantAllow)
			}
		})
	}
}

// TestKubeFieldIsChecked: a misspelt kube field is a compile error, not a
// condition that fails at request time.
func TestKubeFieldIsChecked(t *testing.T) {
	env := newTestEnv(t)
	if _, err := Compile(env, "test", []Rule{{When: "identity.kube.namespaec == 'x'"}}, nil); err == nil {
		t.Fatal("a misspelt kube field compiled")
	}
}

// TestServiceAccountsRule: the service_accounts shortcut matches a
// namespace's accounts or one account, and nothing else.
func TestServiceAccountsRule(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, []Rule{{ServiceAccounts: []string{"payments/*", "shop/checkout"}}}, nil)
	checkout := paymentsSA("shop")
	checkout.Kube.ServiceAccount = "checkout"
	tests := []struct {
		name string
		id   *identity.Identity
		want bool
	}{
		{"any account of payments", paymentsSA("payments"), true},
		{"the listed account of shop", checkout, true},
		{"another account of shop", paymentsSA("shop"), false},
		{"a person", alice(), false},
		{"a person whose username looks like an account", alice(func(id *identity.Identity) { id.Username = "system:serviceaccount:payments:api" }), false},
		{"anonymous", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := p.Decide(tt.id, get("/")); d.Allow != tt.want {
				t.Fatalf("Decide = %+v, want allow %v", d, tt.want)
			}
		})
	}
	for _, bad := range []string{"payments", "/api", "payments/", "*/api", "a/b/c", "payments/api*"} {
		if _, err := Compile(env, "test", []Rule{{ServiceAccounts: []string{bad}}}, nil); err == nil {
			t.Errorf("service_accounts %q compiled", bad)
		}
	}
}
