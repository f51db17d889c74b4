package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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

// actAsBrowser makes this test binary a scripted browser: `sekisho kube
// login --browser-command` runs it with the sign-in URL, and it signs in
// to the built-in provider as the user named in the variable.
const actAsBrowser = "SEKISHO_TEST_BROWSER_USER"

var (
	formID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	formCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

func scriptedBrowser(signIn string) int {
	email, password, _ := strings.Cut(os.Getenv(actAsBrowser), ":")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(signIn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 1
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, csrf := formID.FindSubmatch(body), formCSRF.FindSubmatch(body)
	if id == nil || csrf == nil {
		fmt.Fprintf(os.Stderr, "browser: no login form at %s\n", resp.Request.URL)
		return 1
	}
	resp, err = c.PostForm(resp.Request.URL.String(), url.Values{
		"id": {string(id[1])}, "csrf": {string(csrf[1])}, "email": {email}, "password": {password},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 1
	}
	resp.Body.Close()
	return 0
}

// TestKubeLoginAgainstServe runs the programs a kubectl user runs: `sekisho
// serve` with a built-in provider, and `sekisho kube login` as kubectl
// would, with a scripted browser; then again, from the cache, without one.
func TestKubeLoginAgainstServe(t *testing.T) {
	dir := t.TempDir()
	listen, admin := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: {http: %q}
admin: {listen: %q}
providers:
  - name: dev
    builtin: {users: [{email: kim@example.com, password: kim-pw, groups: [ops]}]}
routes:
  - {name: a, match: {path_prefix: /}, to: builtin:echo, allow: [{groups: [ops]}]}
`, listen, admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "serve", "--config", cfg)
	waitFor(t, "readiness", func() bool { c, _ := get("http://" + admin + "/readyz"); return c == 200 })

	self := testBinary(t)
	issuer := "http://" + listen + "/.sekisho/dev/dev"
	login := func(browser string) (string, string, error) {
		cmd := exec.Command(binary, "kube", "login", "--issuer="+issuer, "--client-id=kubectl", "--scope=email",
			"--cache-dir="+filepath.Join(dir, "cache"), "--browser-command="+self, "--timeout=30s")
		cmd.Env = append(os.Environ(), actAsBrowser+"="+browser,
			`KUBERNETES_EXEC_INFO={"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	out, errb, err := login("kim@example.com:kim-pw")
	if err != nil {
		t.Fatalf("kube login: %v\nstderr:\n%s", err, errb)
	}
	var cred struct {
		APIVersion string `json:"apiVersion"`
		Status     struct {
			Token               string `json:"token"`
			ExpirationTimestamp string `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &cred); err != nil || cred.Status.Token == "" || cred.Status.ExpirationTimestamp == "" {
		t.Fatalf("stdout is not an ExecCredential with a token: %v\n%s", err, out)
	}
	if strings.Contains(errb, cred.Status.Token) {
		t.Fatalf("stderr holds the token:\n%s", errb)
	}
	// The ID token is the built-in provider's, for the kubectl client.
	payload := strings.Split(cred.Status.Token, ".")
	if len(payload) != 3 {
		t.Fatalf("token is not a JWT")
	}
	claims, err := base64.RawURLEncoding.DecodeString(payload[1])
	if err != nil || !strings.Contains(string(claims), `"email":"kim@example.com"`) || !strings.Contains(string(claims), `"aud":["kubectl"]`) {
		t.Fatalf("claims %s (%v)", claims, err)
	}

	// From the cache: a browser that cannot sign in is never needed.
	again, errb, err := login("nobody@example.com:wrong")
	if err != nil || again != out {
		t.Fatalf("cached kube login: %v, same output %v\nstderr:\n%s", err, again == out, errb)
	}
}
