package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

var binary string

// TestMain builds the real binary once: these tests run sekisho the way a
// user does, with signals, files and ports.
func TestMain(m *testing.M) {
	if os.Getenv(actAsBrowser) != "" {
		os.Exit(scriptedBrowser(os.Args[len(os.Args)-1])) // kube_login_test.go
	}
	dir, err := os.MkdirTemp("", "sekisho-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sekisho")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{out: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("sekisho output:\n%s", p.out.String())
		}
	})
	return p
}

// waitFor polls cond until it holds or the deadline passes: the process is
// another program, so there is no channel to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(url string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeConfig(t *testing.T, path, listen, admin, routes string) {
	t.Helper()
	src := fmt.Sprintf("listen: {http: %q, shutdown_timeout: 10s}\nadmin: {listen: %q}\nroutes:\n%s", listen, admin, routes)
	// Write then rename, as editors and ConfigMap updates do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func metric(t *testing.T, admin, name string) string {
	t.Helper()
	_, body := get("http://" + admin + "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

const routeA = "  - {name: a, match: {path_prefix: /a}, to: builtin:echo, public: true}\n"
const routeB = "  - {name: b, match: {path_prefix: /b}, to: builtin:echo, public: true}\n"

func TestReloadOnFileChangeAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sekisho.yaml")
	listen, admin := freePort(t), freePort(t)
	writeConfig(t, cfg, listen, admin, routeA)
	p := start(t, "serve", "--config", cfg)
	waitFor(t, "readiness", func() bool { c, _ := get("http://" + admin + "/readyz"); return c == 200 })

	if c, _ := get("http://" + listen + "/a/x"); c != 200 {
		t.Fatalf("route a: %d", c)
	}
	if c, _ := get("http://" + listen + "/b/x"); c != 404 {
		t.Fatalf("route b before reload: %d", c)
	}
	if g := metric(t, admin, "sekisho_config_generation"); g != "1" {
		t.Fatalf("generation = %q, want 1", g)
	}

	// A file change is picked up by the watcher.
	writeConfig(t, cfg, listen, admin, routeA+routeB)
	waitFor(t, "route b after file change", func() bool { c, _ := get("http://" + listen + "/b/x"); return c == 200 })

	// A broken file keeps the running routes and counts a failure.
	writeConfig(t, cfg, listen, admin, "  - {name: c, match: {path_prefx: /c}, to: builtin:echo, public: true}\n")
	waitFor(t, "reload failure metric", func() bool {
		return metric(t, admin, `sekisho_config_reloads_total{result="failure"}`) == "1"
	})
	if c, _ := get("http://" + listen + "/b/x"); c != 200 {
		t.Errorf("route b lost after a bad reload: %d", c)
	}
	if !strings.Contains(p.out.String(), "path_prefx") {
		t.Errorf("the log does not say why the reload failed:\n%s", p.out.String())
	}

	// SIGHUP reloads too (here: back to a only).
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("listen: {http: %q}\nadmin: {listen: %q}\nroutes:\n%s", listen, admin, routeA)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route b gone after SIGHUP", func() bool { c, _ := get("http://" + listen + "/b/x"); return c == 404 })
}

func TestSIGTERMDrainsInFlight(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	}))
	defer upstream.Close()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "sekisho.yaml")
	listen, admin := freePort(t), freePort(t)
	writeConfig(t, cfg, listen, admin, fmt.Sprintf("  - {name: slow, match: {path_prefix: /}, to: %q, public: true}\n", upstream.URL))
	p := start(t, "serve", "--config", cfg)
	waitFor(t, "readiness", func() bool { c, _ := get("http://" + admin + "/readyz"); return c == 200 })

	type result struct {
		code int
		body string
	}
	res := make(chan result, 1)
	go func() { c, b := get("http://" + listen + "/slow"); res <- result{c, b} }()
	<-arrived
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(release)
	r := <-res
	if r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request = %d %q, want 200 finished", r.code, r.body)
	}
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
		if err != nil {
			t.Fatalf("exit: %v, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sekisho did not exit after draining")
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("listen: {http: ':0'}\nroutes:\n"+routeA), 0o600)
	os.WriteFile(bad, []byte("listen: {http: ':0'}\nroutes:\n  - name: a\n    match: {path_prefix: /a}\n    to: builtin:echo\n    alow: [{groups: [admin]}]\n"), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", good}, &out, &errb); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "ok (1 routes)") {
		t.Errorf("check output = %q", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "--config", bad}, &out, &errb); code != 1 {
		t.Fatalf("bad config: exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":6:", `unknown key "alow"`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errb.String())
		}
	}

	// serve refuses to start on the same file.
	p := start(t, "serve", "--config", bad)
	select {
	case err := <-p.done:
		p.done <- err
		if err == nil {
			t.Fatal("serve started with a bad config")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve kept running with a bad config")
	}
}

// TestCheckMissingCertificates: a config whose listen.tls or decision.tls
// names certificate files that are not there fails `check` with the file,
// line and key, and `serve` refuses it with the same lines, before it
// binds anything.
func TestCheckMissingCertificates(t *testing.T) {
	for _, tt := range []struct {
		name, src, line, key string
	}{
		{"listen.tls", "listen:\n  https: '127.0.0.1:0'\n  tls:\n    cert_file: tls.crt\n    key_file: tls.key\nadmin: {listen: '127.0.0.1:0'}\nroutes:\n" + routeA,
			":4:", "listen.tls.cert_file"},
		{"decision.tls", "listen: {http: '127.0.0.1:0'}\nadmin: {listen: '127.0.0.1:0'}\ndecision:\n  listen: '127.0.0.1:0'\n  tls: {cert_file: dec.crt, key_file: dec.key}\nroutes:\n" + routeA,
			":5:", "decision.tls.cert_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "sekisho.yaml")
			if err := os.WriteFile(cfg, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			if code := run([]string{"check", "--config", cfg}, &out, &errb); code != 1 {
				t.Fatalf("check: exit %d, want 1; stdout %q", code, out.String())
			}
			problem, _, _ := strings.Cut(errb.String(), "\n")
			if !strings.HasPrefix(problem, cfg+tt.line+" "+tt.key+": open "+dir) || !strings.Contains(problem, "no such file") {
				t.Fatalf("check output = %q, want %s%s %s: and the missing file", errb.String(), cfg, tt.line, tt.key)
			}

			p := start(t, "serve", "--config", cfg)
			select {
			case err := <-p.done:
				p.done <- err
				if err == nil {
					t.Fatal("serve exited 0 with missing certificates")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("serve kept running with missing certificates")
			}
			if !strings.Contains(p.out.String(), problem) {
				t.Errorf("serve output does not carry check's problem %q:\n%s", problem, p.out.String())
			}
		})
	}
}

func TestUsageAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "Usage") {
		t.Errorf("no args: %d %q", code, errb.String())
	}
	if code := run([]string{"bogus"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sekisho ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// TestQuickstart runs the README's command: no flags, the embedded config.
func TestQuickstart(t *testing.T) {
	p := start(t, "serve")
	waitFor(t, "quickstart readiness", func() bool { c, _ := get("http://127.0.0.1:9090/readyz"); return c == 200 })
	c, body := get("http://127.0.0.1:8080/public/hello/../world?x=1")
	if c != 200 || !strings.Contains(body, `"path":"/public/world"`) {
		t.Fatalf("quickstart echo: %d %s", c, body)
	}
	if c, _ := get("http://127.0.0.1:8080/admin/"); c != 401 {
		t.Fatalf("quickstart /admin/ for a program: %d, want 401", c)
	}
	if !strings.Contains(p.out.String(), "sekisho started") {
		t.Errorf("no start line in the log:\n%s", p.out.String())
	}
}

// TestDecisionServiceRunsWithGateway: `decision:` starts the decision
// listener next to the gateway, on the same routes, and routes used only for
// decisions need no upstream.
func TestDecisionServiceRunsWithGateway(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(tokens, []byte("- name: ci\n  hash: sha256:"+"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"+"\n  groups: [ci]\n"), 0o600) // sha256("secret")
	cfg := filepath.Join(dir, "sekisho.yaml")
	listen, admin, dec := freePort(t), freePort(t), freePort(t)
	src := fmt.Sprintf(`listen: {http: %q}
admin: {listen: %q}
api_tokens: {file: tokens.yaml}
decision: {listen: %q}
routes:
  - {name: api, match: {host: api.example.com, path_prefix: /api}, allow: [{tokens: [ci]}]}
`, listen, admin, dec)
	os.WriteFile(cfg, []byte(src), 0o600)
	start(t, "serve", "--config", cfg)
	waitFor(t, "readiness", func() bool { c, _ := get("http://" + admin + "/readyz"); return c == 200 })

	ask := func(token string) (int, http.Header) {
		req, _ := http.NewRequest("GET", "http://"+dec+"/forward-auth", nil)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "api.example.com")
		req.Header.Set("X-Forwarded-Uri", "/api/x/../users")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, _ := ask(""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	code, h := ask("secret")
	if code != 200 || h.Get("X-Forwarded-User") != "token:ci" {
		t.Errorf("token: %d user %q, want 200 token:ci", code, h.Get("X-Forwarded-User"))
	}
	// The gateway itself has no upstream for the decision-only route.
	if c, _ := get("http://" + listen + "/api/x"); c != 404 && c != 401 {
		t.Errorf("gateway on a decision-only route: %d", c)
	}
}

// TestTokenFileReload: editing the API token file (in another directory
// than the config) reloads without a signal.
func TestTokenFileReload(t *testing.T) {
	cfgDir, tokDir := t.TempDir(), t.TempDir()
	tokens := filepath.Join(tokDir, "tokens.yaml")
	writeTokens := func(secret string) {
		t.Helper()
		sum := sha256.Sum256([]byte(secret))
		tmp := tokens + ".tmp"
		os.WriteFile(tmp, []byte(fmt.Sprintf("- name: ci\n  hash: sha256:%x\n", sum)), 0o600)
		if err := os.Rename(tmp, tokens); err != nil {
			t.Fatal(err)
		}
	}
	writeTokens("old-secret")
	cfg := filepath.Join(cfgDir, "sekisho.yaml")
	listen, admin := freePort(t), freePort(t)
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: {http: %q}\nadmin: {listen: %q}\napi_tokens: {file: %q}\nroutes:\n  - {name: a, match: {path_prefix: /}, to: builtin:echo, allow: [{tokens: [ci]}]}\n", listen, admin, tokens)), 0o600)
	start(t, "serve", "--config", cfg)
	waitFor(t, "readiness", func() bool { c, _ := get("http://" + admin + "/readyz"); return c == 200 })
	with := func(tok string) int {
		req, _ := http.NewRequest("GET", "http://"+listen+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := with("old-secret"); c != 200 {
		t.Fatalf("old token: %d", c)
	}
	writeTokens("new-secret")
	waitFor(t, "the new token", func() bool { return with("new-secret") == 200 })
	if c := with("old-secret"); c != 401 {
		t.Errorf("rotated-out token: %d, want 401", c)
	}
}

// TestFullExampleChecks keeps examples/sekisho.yaml valid: it is the
// design brief's configuration shape, and what a new user copies.
func TestFullExampleChecks(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../examples/sekisho.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sekisho.yaml")
	os.WriteFile(cfg, src, 0o600)
	writeTestCert(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	writeTestCert(t, filepath.Join(dir, "unused.crt"), filepath.Join(dir, "assertion.pem")) // a P-256 key
	os.WriteFile(filepath.Join(dir, "client-secret"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "session.key"), []byte(strings.Repeat("k", 32)), 0o600)
	sum := sha256.Sum256([]byte("ci-token"))
	os.WriteFile(filepath.Join(dir, "tokens.yaml"), []byte(fmt.Sprintf("- name: ci-bot\n  hash: sha256:%x\n  groups: [ci]\n", sum)), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("examples/sekisho.yaml: exit %d\n%s", code, errb.String())
	}
}

// writeTestCert writes a self-signed certificate and key for localhost.
func writeTestCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}
