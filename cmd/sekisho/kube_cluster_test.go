package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// TestKubeLoginWithAPIServer is the whole kubectl path with real programs:
// `sekisho serve` runs the built-in provider and the TokenReview webhook;
// a real kube-apiserver asks that webhook about bearer tokens; client-go
// (what kubectl is built on) runs `sekisho kube login` as its exec plugin
// from a kubeconfig. The user signs in once in the (scripted) browser;
// later plugin runs take the cached ID token, and renew it with the
// refresh token once it is stale, without a browser.
func TestKubeLoginWithAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs kube-apiserver")
	}
	began := time.Now()
	dir := t.TempDir()
	listen, admin, hook, hookAdmin := freePort(t), freePort(t), freePort(t), freePort(t)
	issuer := "http://" + listen + "/.sekisho/dev/dev"
	const apiAudience = kubetest.DefaultServiceAccountIssuer // what kube-apiserver asks about

	// The webhook serves TLS and takes only kube-apiserver's client
	// certificate, as in production.
	pki := testutil.NewCA(t)
	serving, apiserverClient := pki.Server(t, "127.0.0.1"), pki.Client(t, "kube-apiserver")
	caFile := testutil.WriteFile(t, dir, "webhook-ca.crt", pki.PEM)
	certFile := testutil.WriteFile(t, dir, "webhook.crt", serving.CertPEM)
	keyFile := testutil.WriteFile(t, dir, "webhook.key", serving.KeyPEM)
	clientCert := testutil.WriteFile(t, dir, "apiserver-client.crt", apiserverClient.CertPEM)
	clientKey := testutil.WriteFile(t, dir, "apiserver-client.key", apiserverClient.KeyPEM)

	// Two sekisho processes: one runs the built-in provider on its gateway
	// listener, the other only the webhook, which verifies the provider's
	// ID tokens as it would any issuer's.
	idp := filepath.Join(dir, "idp.yaml")
	writeFile(t, idp, fmt.Sprintf(`listen: {http: %q}
admin: {listen: %q}
providers:
  - name: dev
    builtin: {users: [{email: kim@example.com, password: kim-pw, groups: [ops]}]}
routes:
  - {name: a, match: {path_prefix: /}, to: builtin:echo, allow: [{groups: [ops]}]}
`, listen, admin))
	cfg := filepath.Join(dir, "webhook.yaml")
	writeFile(t, cfg, fmt.Sprintf(`admin: {listen: %q}
jwt:
  - issuer: %q
    audiences: [kubectl]
    claims: {username: email}
kube:
  webhook:
    listen: %q
    tls: {cert_file: %q, key_file: %q, client_ca_file: %q}
    audiences: [%q]
    rules:
      - name: ops
        match: {groups: [ops]}
        username: "oidc:{{email}}"
        groups: ["gid:{{groups}}"]
`, hookAdmin, issuer, hook, certFile, keyFile, caFile, apiAudience))
	start(t, "serve", "--config", idp)
	waitFor(t, "readiness", func() bool { c, _ := get("http://" + admin + "/readyz"); return c == 200 })
	start(t, "serve", "--config", cfg)
	waitFor(t, "the webhook's readiness", func() bool { c, _ := get("http://" + hookAdmin + "/readyz"); return c == 200 })
	// The admin listener answers before the webhook's is up.
	asAPIServer, err := tls.X509KeyPair(apiserverClient.CertPEM, apiserverClient.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the webhook listener", func() bool {
		c, err := tls.Dial("tcp", hook, &tls.Config{RootCAs: pki.Pool(), Certificates: []tls.Certificate{asAPIServer}})
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// kube-apiserver's webhook kubeconfig, as an operator makes it.
	cmd := exec.Command(binary, "kube", "webhook-config", "--config", cfg, "--ca-file", caFile,
		"--client-cert", clientCert, "--client-key", clientKey)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	webhookKubeconfig, err := cmd.Output()
	if err != nil {
		t.Fatalf("kube webhook-config: %v\n%s", err, errb.String())
	}
	cluster := kubetest.Start(t, kubetest.Options{TokenWebhookConfig: webhookKubeconfig})
	ctx := t.Context()
	t.Logf("sekisho and kube-apiserver ready after %v", time.Since(began).Round(time.Millisecond))

	// client-go gives the plugin a terminal only when it has one itself
	// (interactiveMode IfAvailable, what `kube setup` configures): the
	// test's stdin becomes one. The plugin's stderr, which kubectl shows
	// the user, is kept to check it.
	stderr := pluginTerminal(t, dir)
	cacheDir := filepath.Join(dir, "cache")
	sent := &lastBearer{}
	client := func(t *testing.T, name, browserUser string, mode clientcmdapi.ExecInteractiveMode) kubernetes.Interface {
		t.Helper()
		kubeconfig := filepath.Join(dir, name+".kubeconfig")
		if err := cluster.WriteKubeconfig(kubeconfig, &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
			APIVersion: "client.authentication.k8s.io/v1",
			Command:    binary,
			Args: []string{"kube", "login", "--issuer=" + issuer, "--client-id=kubectl", "--scope=email",
				"--cache-dir=" + cacheDir, "--browser-command=" + testBinary(t), "--timeout=15s"},
			// The client's name makes its exec configuration differ from
			// the others', hence a new plugin process: client-go shares one
			// authenticator (and its credential, in memory) between equal
			// ones, as it would between the clients of one kubectl run.
			Env:             []clientcmdapi.ExecEnvVar{{Name: actAsBrowser, Value: browserUser}, {Name: "SEKISHO_TEST_CLIENT", Value: name}},
			InteractiveMode: mode,
		}}); err != nil {
			t.Fatal(err)
		}
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		rc.WrapTransport = sent.wrap
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	whoami := func(t *testing.T, cs kubernetes.Interface) authenticationv1.UserInfo {
		t.Helper()
		r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectReview: %v\nplugin stderr:\n%s", err, readFile(t, stderr))
		}
		return r.Status.UserInfo
	}

	// A kubeconfig that never lets the plugin interact (interactiveMode
	// Never, as for a program without a user) cannot sign in: the request
	// fails and the user is told what to do.
	if _, err := client(t, "never", "kim@example.com:kim-pw", clientcmdapi.NeverExecInteractiveMode).
		AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err == nil ||
		!strings.Contains(readFile(t, stderr), "a sign-in is needed, but kubectl runs this plugin without a terminal") {
		t.Fatalf("interactiveMode Never without cached tokens: %v\nplugin stderr:\n%s", err, readFile(t, stderr))
	}

	// First use: the plugin signs kim in through the browser.
	kim := client(t, "kim", "kim@example.com:kim-pw", clientcmdapi.IfAvailableExecInteractiveMode)
	u := whoami(t, kim)
	if u.Username != "oidc:kim@example.com" || !slices.Contains(u.Groups, "gid:ops") || !slices.Contains(u.Groups, "system:authenticated") ||
		!slices.Equal(u.Extra["sekisho.io/rule"], []string{"ops"}) || !slices.Equal(u.Extra["sekisho.io/issuer"], []string{issuer}) {
		t.Fatalf("kube-apiserver sees %+v", u)
	}
	first := sent.get()
	if strings.Count(first, ".") != 2 || first != cachedIDToken(t, cacheDir) {
		t.Fatalf("client-go did not send the cached ID token")
	}

	// RBAC decides on the mapped user: nothing before a binding for the
	// mapped group, the namespace it binds after.
	for _, ns := range []string{"team", "other"} {
		if _, err := cluster.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kim.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("pods in team before the binding: %v, want 403 Forbidden", err)
	}
	// Not the built-in "view": it is an aggregated role, and no
	// controller-manager aggregates its rules here.
	if _, err := cluster.Client().RbacV1().Roles("team").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client().RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ops-pod-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "gid:ops"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the binding to reach the authorizer", func() bool {
		_, err := kim.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
		return err == nil
	})
	if _, err := kim.CoreV1().Pods("other").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("pods in other: %v, want 403 Forbidden", err)
	}

	// Another kubectl, a new plugin process: the cached token, no sign-in
	// (its browser would fail one).
	again := client(t, "again", "nobody@example.com:wrong", clientcmdapi.IfAvailableExecInteractiveMode)
	if u := whoami(t, again); u.Username != "oidc:kim@example.com" {
		t.Fatalf("second client is %q", u.Username)
	}
	if sent.get() != first {
		t.Fatalf("second client sent another token than the cached one")
	}
	if _, err := again.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("second client: %v", err)
	}

	// The cached ID token goes stale: the next plugin run renews it with
	// the refresh token, silently, and kube-apiserver takes the new one.
	staleCache(t, cacheDir)
	renewed := client(t, "renewed", "nobody@example.com:wrong", clientcmdapi.IfAvailableExecInteractiveMode)
	if u := whoami(t, renewed); u.Username != "oidc:kim@example.com" || !slices.Contains(u.Groups, "gid:ops") {
		t.Fatalf("after the refresh kube-apiserver sees %+v", u)
	}
	second := sent.get()
	if second == first || second != cachedIDToken(t, cacheDir) {
		t.Fatalf("after the refresh client-go sent the old token (%v) or one that is not cached\nplugin stderr:\n%s", second == first, readFile(t, stderr))
	}
	if _, err := renewed.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("renewed client: %v", err)
	}

	// Once signed in, interactiveMode Never is served from the cache.
	never := client(t, "never-cached", "nobody@example.com:wrong", clientcmdapi.NeverExecInteractiveMode)
	if u := whoami(t, never); u.Username != "oidc:kim@example.com" || sent.get() != second {
		t.Fatalf("interactiveMode Never with cached tokens: %q, cached token sent %v", u.Username, sent.get() == second)
	}

	// What the user saw: one sign-in over the plugin runs, and never a
	// token.
	log := readFile(t, stderr)
	if n := strings.Count(log, "open this URL to sign in"); n != 1 {
		t.Errorf("the plugin asked %d times to sign in, want once:\n%s", n, log)
	}
	for _, tok := range []string{first, second} {
		if strings.Contains(log, tok) {
			t.Fatalf("the plugin's stderr holds a token:\n%s", log)
		}
	}
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// pluginTerminal makes the test's stdin a terminal and its stderr a file,
// until the test ends: client-go's exec plugin runs interactively only
// when its process's stdin is a terminal, and hands the plugin its own
// stdin and stderr. These are the process's, so the test does not run in
// parallel with others.
func pluginTerminal(t *testing.T, dir string) string {
	t.Helper()
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	stderrFile := filepath.Join(dir, "plugin-stderr")
	f, err := os.Create(stderrFile)
	if err != nil {
		t.Fatal(err)
	}
	oldIn, oldErr := os.Stdin, os.Stderr
	os.Stdin, os.Stderr = tty, f
	t.Cleanup(func() {
		os.Stdin, os.Stderr = oldIn, oldErr
		tty.Close()
		ptm.Close()
		f.Close()
	})
	return stderrFile
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// cacheEntryFile is the one entry `kube login` keeps in dir.
func cacheEntryFile(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("cache entries %v (%v), want one", files, err)
	}
	return files[0]
}

func cachedIDToken(t *testing.T, dir string) string {
	t.Helper()
	var e struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal([]byte(readFile(t, cacheEntryFile(t, dir))), &e); err != nil {
		t.Fatal(err)
	}
	return e.IDToken
}

// staleCache moves the cached ID token's expiry into the renewal window,
// as the clock would a few minutes later; the token itself, and the
// refresh token, are left as they are.
func staleCache(t *testing.T, dir string) {
	t.Helper()
	path := cacheEntryFile(t, dir)
	var e map[string]any
	if err := json.Unmarshal([]byte(readFile(t, path)), &e); err != nil {
		t.Fatal(err)
	}
	if e["refresh_token"] == "" || e["refresh_token"] == nil {
		t.Fatalf("the login left no refresh token")
	}
	e["id_token_expiry"] = time.Now().Add(10 * time.Second).Format(time.RFC3339Nano)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// lastBearer remembers the bearer token of the last request client-go
// sent: the exec plugin's credential, as the API server got it.
type lastBearer struct {
	mu    sync.Mutex
	token string
}

func (l *lastBearer) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			l.mu.Lock()
			l.token = tok
			l.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (l *lastBearer) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.token
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
