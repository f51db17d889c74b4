package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
	"github.com/sekisho/sekisho/internal/tokenreview"
)

// TestTokenWebhookWithKubeAPIServer: a real kube-apiserver configured to
// call the token webhook of a real sekisho (a file that runs only the
// webhook, over TLS with kube-apiserver's client certificate) takes
// Cognito-style JWTs and API tokens as the users the rules map them to, and
// RBAC authorizes those users.
func TestTokenWebhookWithKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs a real kube-apiserver")
	}
	issuer := jwttest.NewIssuer(t)
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	server, client := ca.Server(t, "127.0.0.1"), ca.Client(t, "kube-apiserver")
	files := map[string]string{}
	for name, data := range map[string][]byte{"tls.crt": server.CertPEM, "tls.key": server.KeyPEM, "ca.crt": ca.PEM, "client.crt": client.CertPEM, "client.key": client.KeyPEM} {
		files[name] = testutil.WriteFile(t, dir, name, data)
	}
	const deployer = "skt_deployer_5f0e9c1d2b3a4f5e6d7c8b9a0f1e2d3c"
	addr := testutil.FreeAddr(t)
	src := fmt.Sprintf(`
admin: {listen: 127.0.0.1:0}
jwt:
  - issuer: %[1]s
    audiences: [kubectl-client]
    claims: {groups: "cognito:groups"}
api_tokens: {file: %[2]s}
kube:
  webhook:
    listen: %[3]s
    tls: {cert_file: %[4]s, key_file: %[5]s, client_ca_file: %[6]s}
    audiences: [%[7]s]
    rules:
      - name: ci
        match: {tokens: [deployer]}
        username: "ci:{{token_name}}"
        groups: [deployers]
      - name: cognito
        match: {issuers: [%[1]s], groups: [admin, staff]}
        username: "cognito:{{email}}"
        groups: ["gid:{{groups}}"]
      - name: unprefixed
        match: {subjects: [mallory-id]}
        groups: ["{{groups}}"]
`, issuer.URL, testutil.TokenFile(t, "deployer", deployer), addr, files["tls.crt"], files["tls.key"], files["ca.crt"], kubetest.DefaultServiceAccountIssuer)
	inst, logs := startInstance(t, src)
	if inst.TokenReview == nil || inst.Server != nil {
		t.Fatalf("a webhook-only file: webhook %v, gateway listener %v", inst.TokenReview, inst.Server)
	}
	kc, err := tokenreview.Kubeconfig(tokenreview.Config{Listen: addr}, tokenreview.KubeconfigOptions{
		Server: "https://" + addr, CAFile: files["ca.crt"], ClientCertFile: files["client.crt"], ClientKeyFile: files["client.key"],
	})
	if err != nil {
		t.Fatal(err)
	}
	cluster := kubetest.Start(t, kubetest.Options{TokenWebhookConfig: kc})
	admin := cluster.Client()
	ctx := context.Background()

	token := func(kv ...any) string { return issuer.Token(t, append([]any{"aud", "kubectl-client"}, kv...)...) }
	alice := token("cognito:groups", []string{"admin"})
	bob := token("sub", "bob-id", "email", "bob@example.com", "cognito:groups", []string{"staff"})
	as := func(tok string) kubernetes.Interface {
		c, err := kubernetes.NewForConfig(cluster.BearerConfig(tok))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	whoami := func(tok string) (*authnv1.SelfSubjectReview, error) {
		return as(tok).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	}

	t.Run("mapped users", func(t *testing.T) {
		for _, tt := range []struct {
			name, token, user string
			groups            []string
		}{
			{"cognito admin", alice, "cognito:alice@example.com", []string{"gid:admin"}},
			{"cognito staff", bob, "cognito:bob@example.com", []string{"gid:staff"}},
			{"api token", deployer, "ci:deployer", []string{"deployers"}},
		} {
			r, err := whoami(tt.token)
			if err != nil {
				t.Fatalf("%s: SelfSubjectReview: %v", tt.name, err)
			}
			u := r.Status.UserInfo
			if u.Username != tt.user || !slices.Contains(u.Groups, tt.groups[0]) || !slices.Contains(u.Groups, "system:authenticated") {
				t.Errorf("%s: user %q groups %q, want %q in %q", tt.name, u.Username, u.Groups, tt.user, tt.groups)
			}
			if len(u.Extra["sekisho.io/rule"]) != 1 {
				t.Errorf("%s: extra %v", tt.name, u.Extra)
			}
		}
	})

	t.Run("RBAC on the mapped groups", func(t *testing.T) {
		for _, ns := range []string{"team-a", "team-b"} {
			if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		bind(t, admin, "team-a", "admins-view", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "gid:admin"})
		bind(t, admin, "team-a", "ci-view", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "deployers"})
		list := func(tok, ns string) error {
			_, err := as(tok).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		}
		// RBAC reads bindings from a watch cache: the allowed answers
		// come once it has seen the new ones.
		for _, tt := range []struct{ name, token string }{{"admin in its namespace", alice}, {"api token", deployer}} {
			deadline := time.Now().Add(30 * time.Second)
			for err := list(tt.token, "team-a"); err != nil; err = list(tt.token, "team-a") {
				if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
					t.Fatalf("%s: list pods: %v", tt.name, err)
				}
				time.Sleep(50 * time.Millisecond) // polling the API server, not synchronizing
			}
		}
		for _, tt := range []struct{ name, token, ns string }{{"staff", bob, "team-a"}, {"admin elsewhere", alice, "team-b"}} {
			if err := list(tt.token, tt.ns); !apierrors.IsForbidden(err) {
				t.Errorf("%s: list pods: %v, want 403 Forbidden", tt.name, err)
			}
		}
	})

	t.Run("refused tokens are 401", func(t *testing.T) {
		for name, tok := range map[string]string{
			"expired":              token("cognito:groups", []string{"admin"}, "iat", time.Now().Add(-2*time.Hour).Unix(), "exp", time.Now().Add(-time.Hour).Unix()),
			"another audience":     issuer.Token(t, "aud", "some-other-app", "cognito:groups", []string{"admin"}),
			"unmapped":             token("sub", "carol-id", "cognito:groups", []string{"contractor"}),
			"system:masters":       token("sub", "mallory-id", "cognito:groups", []string{"system:masters"}),
			"unknown API token":    "skt_unknown_00000000000000000000000000000000",
			"signed by a stranger": jwttest.Sign(t, jwttest.NewKey(t, "k1", "RS256"), issuer.Claims(time.Now(), "aud", "kubectl-client")),
		} {
			_, err := whoami(tok)
			if !apierrors.IsUnauthorized(err) {
				t.Errorf("%s: SelfSubjectReview: %v, want 401 Unauthorized", name, err)
			}
		}
	})

	out := logs.String()
	for _, secret := range []string{alice, bob, deployer} {
		if strings.Contains(out, secret) {
			t.Fatal("sekisho's log holds a token")
		}
	}
	if !strings.Contains(out, `"msg":"token review"`) {
		t.Errorf("no review was logged:\n%s", out)
	}
}

// bind lets subject list pods in ns. It makes its own Role: the built-in
// "view" ClusterRole is filled by the controller manager, which the test
// cluster does not run.
func bind(t *testing.T, c kubernetes.Interface, ns, name string, subject rbacv1.Subject) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}
	if _, err := c.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Role %s/%s: %v", ns, name, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := c.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RoleBinding %s/%s: %v", ns, name, err)
	}
}

// TestTokenWebhookReload: the mapping rules are reloaded with the file,
// while a change of the webhook's listener is reported as needing a
// restart.
func TestTokenWebhookReload(t *testing.T) {
	const tok = "skt_ci_0123456789abcdef0123456789abcdef"
	base := reloadBase + fmt.Sprintf(`api_tokens: {file: %s}
kube:
  webhook:
    listen: 127.0.0.1:0
    rules: [{match: {tokens: [ci]}, username: "USER"}]
`, testutil.TokenFile(t, "ci", tok))
	inst, logs := startInstance(t, strings.Replace(base, "USER", "ci-one", 1))
	url := "http://" + inst.TokenReview.Addr() + tokenreview.Path
	username := func() string {
		t.Helper()
		body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `"}}`
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr authnv1.TokenReview
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		return tr.Status.User.Username
	}
	if got := username(); got != "ci-one" {
		t.Fatalf("username %q", got)
	}
	for _, tt := range []struct{ name, src, user, restart string }{
		{"rules", strings.Replace(base, "USER", "ci-two", 1), "ci-two", ""},
		{"listener", strings.Replace(strings.Replace(base, "USER", "ci-three", 1), "listen: 127.0.0.1:0\n    rules", "listen: 127.0.0.1:1\n    rules", 1), "ci-three", "kube.webhook (listen, tls)"},
	} {
		inst.opts.DefaultConfig = []byte(tt.src)
		before := len(logs.String())
		if err := inst.Reload(); err != nil {
			t.Fatalf("%s: Reload: %v", tt.name, err)
		}
		if got := username(); got != tt.user {
			t.Errorf("%s: username %q after reload, want %q", tt.name, got, tt.user)
		}
		got := restartWarnings(t, logs.String()[before:])
		if (tt.restart == "") != (len(got) == 0) || (tt.restart != "" && got[0] != tt.restart) {
			t.Errorf("%s: restart warnings %q, want %q", tt.name, got, tt.restart)
		}
	}
}

// TestOwnBuiltinProviderAsIssuer: a jwt issuer that is the process's own
// built-in provider (so the token webhook accepts the ID tokens `sekisho
// kube login` gets from it) has its keys at once, served in-process,
// without waiting for the listener it is served on, also after a reload
// that rebuilds the provider.
func TestOwnBuiltinProviderAsIssuer(t *testing.T) {
	addr := testutil.FreeAddr(t)
	src := fmt.Sprintf(`
listen: {http: %q}
admin: {listen: 127.0.0.1:0}
providers:
  - name: dev
    builtin: {users: [{email: kim@example.com, password: pw, groups: [ops]}]}
jwt:
  - issuer: http://%s/.sekisho/dev/dev
    audiences: [kubectl]
kube:
  webhook:
    listen: 127.0.0.1:0
    default: {}
routes:
  - {name: a, match: {path_prefix: /}, to: builtin:echo, allow: [{groups: [ops]}]}
`, addr, addr)
	start := time.Now()
	inst, logs := startInstance(t, src)
	if d := time.Since(start); d > 5*time.Second || strings.Contains(logs.String(), "keys or login providers are not available yet") {
		t.Fatalf("start took %s waiting for its own provider's keys:\n%s", d, logs)
	}
	// A reload that changes the provider rebuilds it with new keys; the
	// kept verifier reaches the new one.
	inst.opts.DefaultConfig = []byte(strings.Replace(src, "password: pw", "password: pw2", 1))
	if err := inst.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !inst.Gateway.Snapshot().WaitReady(ctx) {
		t.Fatal("keys not ready after the reload")
	}
}

// TestReadyOnlyWhenServing: /readyz waits for every listener (the token
// webhook's too), not only for the first snapshot, and turns false on
// drain.
func TestReadyOnlyWhenServing(t *testing.T) {
	inst, _ := startInstance(t, reloadBase)
	if !inst.ready() {
		t.Fatal("not ready once started")
	}
	inst.serving.Store(false) // as before the listeners are bound
	if inst.ready() {
		t.Error("ready before the listeners are bound")
	}
	inst.serving.Store(true)
	inst.draining.Store(true)
	if inst.ready() {
		t.Error("ready while draining")
	}
	inst.draining.Store(false)
}
