package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/testutil"
)

// Secret values the tests store; TestExecNeverLeaks greps for them.
const (
	filePassword = "file-s3cr3t-7Q9"
	jsonPassword = "json-s3cr3t-4K2"
	kubePassword = "kube-s3cr3t-8M1"
)

// secretValues are every value a test here stores, for the leak checks.
var secretValues = []string{filePassword, jsonPassword, kubePassword, "tls-key-s3cr3t"}

// secretFiles writes the file store's secrets and returns their
// directory: password (plain), db.json (a JSON object), key.pem.
func secretFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testutil.WriteFile(t, dir, "password", []byte(filePassword))
	testutil.WriteFile(t, dir, "db.json", []byte(`{"user":"app","password":"`+jsonPassword+`"}`))
	testutil.WriteFile(t, dir, "key.pem", []byte("tls-key-s3cr3t\n"))
	return dir
}

// baseEnv is a clean environment for sekisho: PATH and nothing a store
// could pick up from the machine.
func baseEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/bin:/bin"}, extra...)
}

// execRun runs `sekisho exec ARGS` with env and returns its exit code and
// everything it and the program wrote.
func execRun(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"exec"}, args...)...)
	cmd.Env = env
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String()
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("sekisho exec did not end; output:\n%s", out.String())
		return 0, ""
	}
}

// TestExecSubstitutes: references become their secrets (a whole file, a
// key of a JSON file), ordinary values and URL-like values stay, the
// program replaces sekisho (same PID) and its exit status is sekisho's.
func TestExecSubstitutes(t *testing.T) {
	dir := secretFiles(t)
	env := baseEnv(
		"DB_PASSWORD=sekisho+file://"+dir+"/password",
		"DB_USER=sekisho+file://"+dir+"/db.json#user",
		"DB_JSON_PASSWORD=sekisho+file://"+dir+"/db.json#password",
		"CONFIG=file:///etc/app.conf",
		"PLAIN=hello",
	)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(binary, "exec", "--", "sh", "-c",
		`echo $$ > "$1"; printf '%s|%s|%s|%s|%s\n' "$DB_PASSWORD" "$DB_USER" "$DB_JSON_PASSWORD" "$CONFIG" "$PLAIN"; exit 7`, "sh", pidFile)
	cmd.Env = env
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("exit %v; want the program's 7; stderr %s", err, ee.Stderr)
	}
	want := filePassword + "|app|" + jsonPassword + "|file:///etc/app.conf|hello\n"
	if string(out) != want {
		t.Errorf("program saw %q; want %q", out, want)
	}
	pid, _ := os.ReadFile(pidFile)
	if strings.TrimSpace(string(pid)) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("program ran as PID %s, sekisho as %d: sekisho did not replace itself", pid, cmd.Process.Pid)
	}

	// PATH lookup of the resolved environment; a missing program is 127.
	if code, out := execRun(t, env, "true"); code != 0 {
		t.Errorf("true: exit %d: %s", code, out)
	}
	if code, out := execRun(t, env, "no-such-program-here"); code != 127 || !strings.Contains(out, "no-such-program-here: not found in PATH") {
		t.Errorf("missing program: exit %d: %s", code, out)
	}
	if code, out := execRun(t, env, "/no/such/program"); code != 127 || !strings.Contains(out, "/no/such/program: no such file or directory") {
		t.Errorf("missing program by path: exit %d: %s", code, out)
	}
	notExec := testutil.WriteFile(t, t.TempDir(), "script", []byte("#!/bin/sh\n"))
	if code, out := execRun(t, env, notExec); code != 126 || !strings.Contains(out, "permission denied") {
		t.Errorf("program not executable: exit %d: %s", code, out)
	}
	if code, out := execRun(t, env); code != 2 || !strings.Contains(out, "usage: sekisho exec") {
		t.Errorf("no program: exit %d: %s", code, out)
	}
}

// tmpfsDir returns a new directory on /dev/shm (tmpfs), removed after the
// test.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "sekisho-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestExecTempfile: ?destination=tempfile puts the secret in a 0600 file
// on the memory-backed directory and the variable holds its path;
// ?destination=/path writes there. A directory on disk is refused unless
// --allow-disk-tempfile.
func TestExecTempfile(t *testing.T) {
	dir := secretFiles(t)
	shm := tmpfsDir(t)
	dest := filepath.Join(t.TempDir(), "tls", "key.pem")
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("SEKISHO_TMPDIR="+shm,
		"TLS_KEY=sekisho+file://"+dir+"/key.pem?destination=tempfile",
		"DB_PASSWORD_FILE=sekisho+file://"+dir+"/db.json?destination="+dest+"#password")
	script := `for f in "$TLS_KEY" "$DB_PASSWORD_FILE"; do printf '%s %s ' "$f" "$(stat -c %a "$f")"; cat "$f"; echo; done`
	code, out := execRun(t, env, "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 { // key.pem ends in a newline of its own
		t.Fatalf("output %q", out)
	}
	path, rest, _ := strings.Cut(lines[0], " ")
	if filepath.Dir(path) != shm || rest != "600 tls-key-s3cr3t" {
		t.Errorf("tempfile line %q; want a 0600 file in %s holding the key", lines[0], shm)
	}
	if lines[2] != dest+" 600 "+jsonPassword {
		t.Errorf("destination line %q; want %s, 0600, the password", lines[2], dest)
	}
	// In exec mode sekisho is gone: the tempfile stays for the program.
	if _, err := os.Stat(path); err != nil {
		t.Errorf("tempfile removed under the program: %v", err)
	}

	disk := t.TempDir() // not tmpfs on this machine's /tmp
	env = baseEnv("SEKISHO_TMPDIR="+disk, "TLS_KEY=sekisho+file://"+dir+"/key.pem?destination=tempfile")
	code, out = execRun(t, env, "sh", "-c", `cat "$TLS_KEY"`)
	if mem, _ := isTmpfs(disk); mem {
		t.Skip("the test's temporary directory is on tmpfs")
	}
	if code != 125 || !strings.Contains(out, "TLS_KEY: sekisho+file://"+dir+"/key.pem?destination=tempfile: tempfile directory "+disk+" is not memory-backed") {
		t.Errorf("disk tempfile: exit %d: %s", code, out)
	}
	if entries, _ := os.ReadDir(disk); len(entries) != 0 {
		t.Errorf("refused, yet wrote %v", entries)
	}
	code, out = execRun(t, env, "--allow-disk-tempfile", "--", "sh", "-c", `cat "$TLS_KEY"`)
	if code != 0 || out != "tls-key-s3cr3t\n" {
		t.Errorf("--allow-disk-tempfile: exit %d: %q", code, out)
	}
}

func isTmpfs(dir string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Type == 0x01021994, nil
}

// stoppedKubeconfig is a kubeconfig for an API server that is not
// running: the port was free a moment ago.
func stoppedKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, testutil.FreeAddr(t))
	return testutil.WriteFile(t, t.TempDir(), "kubeconfig", []byte(cfg))
}

// TestExecFailClosed: a missing secret, a malformed reference, a missing
// JSON key and a store that is down each stop the program from starting;
// sekisho exits 125 and names every failed variable with its reference,
// in the environment's order, never a value.
func TestExecFailClosed(t *testing.T) {
	dir := secretFiles(t)
	marker := filepath.Join(t.TempDir(), "started")
	env := baseEnv(
		"GOOD=sekisho+file://"+dir+"/password",
		"MISSING=sekisho+file://"+dir+"/absent",
		"TYPO=sekisho+file://"+dir+"/password?verison=2",
		"NO_KEY=sekisho+file://"+dir+"/db.json#passwd",
		"NOT_JSON=sekisho+file://"+dir+"/password#user",
		"KUBE=sekisho+k8s://prod/db/password",
		"KUBECONFIG="+stoppedKubeconfig(t),
	)
	code, out := execRun(t, env, "--timeout", "20s", "--", "sh", "-c", `touch "$1"`, "sh", marker)
	if code != 125 {
		t.Errorf("exit %d; want 125", code)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the program started")
	}
	want := []string{
		"sekisho exec: 5 secret reference(s) did not resolve; the program was not started:",
		"  MISSING: sekisho+file://" + dir + "/absent: secret not found: no file " + dir + "/absent",
		`  TYPO: malformed secret reference "sekisho+file://` + dir + `/password?verison=2": unknown parameter "verison"`,
		`  NO_KEY: sekisho+file://` + dir + `/db.json#passwd: #passwd: secret not found: the JSON object has no key "passwd"`,
		"  NOT_JSON: sekisho+file://" + dir + "/password#user: #user: the secret is not a JSON object",
		"  KUBE: sekisho+k8s://prod/db/password: get Secret prod/db: ",
	}
	lines := strings.Split(out, "\n")
	if len(lines) < len(want) {
		t.Fatalf("output:\n%s", out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s…", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[5], "connection refused") {
		t.Errorf("store down: %s", lines[5])
	}
	assertNoSecrets(t, out)
}

// assertNoSecrets fails if text holds any secret value a test stored.
func assertNoSecrets(t *testing.T, text string) {
	t.Helper()
	for _, v := range secretValues {
		if strings.Contains(text, v) {
			t.Errorf("output holds the secret %q:\n%s", v, text)
		}
	}
}

// startExec starts `sekisho exec ARGS` and returns it with its output; the
// test ends it if still running.
func startExec(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"exec"}, args...)...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// In supervise mode the program outlives a killed sekisho and holds
	// the output pipe: do not wait for it.
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output:\n%s", p.out.String())
		}
	})
	return p
}

// wait returns the process's wait status once it has ended.
func (p *proc) wait(t *testing.T) syscall.WaitStatus {
	t.Helper()
	select {
	case <-p.done:
		p.done <- nil // for the cleanup
		return p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	case <-time.After(30 * time.Second):
		t.Fatal("sekisho exec did not end")
		return 0
	}
}

// trapScript says ready, then exits 42 on TERM and 43 on USR1.
// It gives up after a minute, so that a failed test leaves no process
// behind.
const trapScript = `trap 'exit 42' TERM; trap 'exit 43' USR1; echo ready; i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; exit 99`

// TestExecSignals: in exec mode signals reach the program itself (it is
// sekisho's process) and its status is what the parent sees; in supervise
// mode every signal is forwarded to the program's process group, and
// sekisho exits with the program's status, 128+n when signal n killed it.
func TestExecSignals(t *testing.T) {
	env := baseEnv("SECRET=sekisho+file://" + secretFiles(t) + "/password")
	for _, mode := range []struct {
		name string
		args []string
	}{{"exec", nil}, {"supervise", []string{"--supervise"}}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, tt := range []struct {
				sig  syscall.Signal
				want int
			}{{syscall.SIGTERM, 42}, {syscall.SIGUSR1, 43}} {
				p := startExec(t, env, append(mode.args, "--", "sh", "-c", trapScript)...)
				waitFor(t, "ready", func() bool { return strings.Contains(p.out.String(), "ready") })
				if err := p.cmd.Process.Signal(tt.sig); err != nil {
					t.Fatal(err)
				}
				if ws := p.wait(t); !ws.Exited() || ws.ExitStatus() != tt.want {
					t.Errorf("%v: status %v; want exit %d", tt.sig, ws, tt.want)
				}
			}
			// The program killed by a signal.
			p := startExec(t, env, append(mode.args, "--", "sh", "-c", `kill -KILL $$`)...)
			ws := p.wait(t)
			if mode.name == "exec" && (!ws.Signaled() || ws.Signal() != syscall.SIGKILL) {
				t.Errorf("killed program in exec mode: status %v; want killed by SIGKILL", ws)
			}
			if mode.name == "supervise" && (!ws.Exited() || ws.ExitStatus() != 128+9) {
				t.Errorf("killed program in supervise mode: status %v; want exit 137", ws)
			}
			// A plain exit status.
			p = startExec(t, env, append(mode.args, "--", "sh", "-c", `exit 3`)...)
			if ws := p.wait(t); !ws.Exited() || ws.ExitStatus() != 3 {
				t.Errorf("status %v; want exit 3", ws)
			}
		})
	}
}

// procStatus reads fields of /proc/PID/status; ok is false once the
// process is gone (reaped).
func procStatus(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "PPid":
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		case "State":
			state = strings.TrimSpace(v)
		}
	}
	return ppid, state, true
}

// TestExecReapsOrphans: in supervise mode an orphan of the program (its
// parent, a subshell, has exited) becomes sekisho's child, and when it
// dies sekisho reaps it: no zombie stays. sekisho is not PID 1 here, so
// this shows the child-subreaper setting PID 1 does not need.
func TestExecReapsOrphans(t *testing.T) {
	dir := t.TempDir()
	script := `(sleep 300 & echo $! > "$1/orphan.tmp"; mv "$1/orphan.tmp" "$1/orphan"); i=0; while [ ! -e "$1/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; exit 5`
	p := startExec(t, baseEnv(), "--supervise", "--", "sh", "-c", script, "sh", dir)
	var orphan int
	waitFor(t, "the orphan", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "orphan"))
		orphan, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })
	waitFor(t, "the orphan to be sekisho's child", func() bool {
		ppid, _, _ := procStatus(orphan)
		return ppid == p.cmd.Process.Pid
	})
	if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, state, ok := procStatus(orphan)
		if !ok {
			break // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead orphan was not reaped: state %s", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testutil.WriteFile(t, dir, "go", nil)
	if ws := p.wait(t); !ws.Exited() || ws.ExitStatus() != 5 {
		t.Errorf("status %v; want the program's exit 5", ws)
	}
}

// TestExecNeverLeaks runs sekisho exec through success and every kind of
// failure and greps all it wrote (stdout, stderr) for the secret values;
// in supervise mode it also reads sekisho's own command line and
// environment in /proc, which hold the references, never the values.
func TestExecNeverLeaks(t *testing.T) {
	dir := secretFiles(t)
	var all strings.Builder
	runs := []struct {
		env  []string
		args []string
	}{
		{baseEnv("A=sekisho+file://" + dir + "/password"), []string{"true"}},
		{baseEnv("A=sekisho+file://" + dir + "/password"), []string{"--supervise", "--", "true"}},
		{baseEnv("A=sekisho+file://" + dir + "/password#key"), []string{"true"}},
		{baseEnv("A=sekisho+file://" + dir + "/db.json#nope"), []string{"true"}},
		{baseEnv("A=sekisho+file://" + dir + "/key.pem#k"), []string{"true"}},
		{baseEnv("A=sekisho+file://" + dir + "/password?destination=/nonexistent/dir/f"), []string{"true"}},
		{baseEnv("A=sekisho+file://"+dir+"/password", "B=sekisho+file://"+dir+"/missing"), []string{"true"}},
		{baseEnv("A=sekisho+file://" + dir + "/password"), []string{"/nonexistent/program"}},
		{baseEnv("A=sekisho+file://"+dir+"/password", "KUBECONFIG="+stoppedKubeconfig(t), "B=sekisho+k8s://a/b/c"), []string{"--timeout", "10s", "true"}},
	}
	for _, r := range runs {
		code, out := execRun(t, r.env, r.args...)
		fmt.Fprintf(&all, "exit %d\n%s", code, out)
	}
	assertNoSecrets(t, all.String())
	if !strings.Contains(all.String(), "exit 125") || !strings.Contains(all.String(), "exit 127") {
		t.Errorf("the failures did not happen:\n%s", all.String())
	}

	p := startExec(t, baseEnv("A=sekisho+file://"+dir+"/password"), "--supervise", "--", "sh", "-c", trapScript)
	waitFor(t, "ready", func() bool { return strings.Contains(p.out.String(), "ready") })
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p.cmd.Process.Pid, f))
		if err != nil {
			t.Fatal(err)
		}
		assertNoSecrets(t, string(b))
		if f == "environ" && !strings.Contains(string(b), "A=sekisho+file://") {
			t.Errorf("sekisho's environ %q; want the reference", b)
		}
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
	assertNoSecrets(t, p.out.String())
}

// TestExecKubernetesSecret: the README's example against a real
// kube-apiserver: a Secret's key read with a service account allowed to
// get that one Secret.
func TestExecKubernetesSecret(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	const ns = "exec-e2e"
	if err := c.EnsureServiceAccount(ctx, ns, "app"); err != nil {
		t.Fatal(err)
	}
	cs := c.Client()
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Data: map[string][]byte{"password": []byte(kubePassword)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"db"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "db"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "app", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := c.TokenFor(ctx, ns, "app", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, &clientcmdapi.AuthInfo{Token: token}); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("KUBECONFIG="+kubeconfig, "DB_PASSWORD=sekisho+k8s://"+ns+"/db/password")
	code, out := execRun(t, env, "sh", "-c", `echo "$DB_PASSWORD"`)
	if code != 0 || out != kubePassword+"\n" {
		t.Errorf("exit %d, %q", code, out)
	}
	env = baseEnv("KUBECONFIG="+kubeconfig, "OTHER=sekisho+k8s://"+ns+"/other/password")
	code, out = execRun(t, env, "sh", "-c", `echo PROGRAM-RAN`)
	if code != 125 || !strings.Contains(out, "OTHER: sekisho+k8s://"+ns+"/other/password: forbidden") || strings.Contains(out, "PROGRAM-RAN") {
		t.Errorf("forbidden Secret: exit %d, %q", code, out)
	}
}

// TestExecAsPID1: as PID 1 of a new PID namespace (as in a container)
// sekisho supervises on its own: the program's parent is sekisho (PID 1),
// an orphan the program leaves is reaped (its /proc entry goes away; a
// zombie's would stay), and SIGTERM sent to sekisho reaches the program.
// It needs unshare(1) and the right to make a PID namespace (root here).
func TestExecAsPID1(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a PID namespace: %v %s", err, out)
	}
	script := `echo "parent=$PPID"
(sh -c 'exit 0' & echo $! > "$1/orphan")
o=$(cat "$1/orphan"); i=0
while [ -e /proc/$o ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if [ -e /proc/$o ]; then echo "orphan $o not reaped: $(grep State /proc/$o/status)"; exit 1; fi
echo reaped; ` + trapScript
	dir := t.TempDir()
	cmd := exec.Command(unshare, "--pid", "--mount-proc", "--kill-child", "--fork", binary, "exec", "--", "sh", "-c", script, "sh", dir)
	cmd.Env = baseEnv("SECRET=sekisho+file://" + secretFiles(t) + "/password")
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	waitFor(t, "ready", func() bool {
		return strings.Contains(out.String(), "ready") || strings.Contains(out.String(), "not reaped")
	})
	if !strings.HasPrefix(out.String(), "parent=1\nreaped\nready") {
		t.Fatalf("output %q; want the program's parent to be PID 1 and the orphan reaped", out)
	}
	// SIGTERM to sekisho (unshare's child), which forwards it to the program.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	sekisho, err := strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		t.Fatalf("unshare's children %q", children)
	}
	if err := syscall.Kill(sekisho, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if code := cmd.ProcessState.ExitCode(); code != 42 {
			t.Errorf("exit %d (%v); want the program's 42\n%s", code, err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("did not end:\n%s", out)
	}
}

// TestExecRefresh: with --refresh the binary resolves again on its own
// clock and restarts the program when the secret file changed; the
// restarted program sees the new value. A program that exits ends
// sekisho with its status.
func TestExecRefresh(t *testing.T) {
	dir := t.TempDir()
	secret := testutil.WriteFile(t, dir, "password", []byte(filePassword))
	seen := filepath.Join(dir, "seen")
	script := `echo "$DB_PASSWORD" >> "$1"; ` + trapScript
	p := startExec(t, baseEnv("DB_PASSWORD=sekisho+file://"+secret), "--refresh", "50ms", "--", "sh", "-c", script, "sh", seen)
	read := func() string { b, _ := os.ReadFile(seen); return string(b) }
	waitFor(t, "the program to start", func() bool { return read() == filePassword+"\n" })
	testutil.WriteFile(t, dir, "password", []byte("rotated-value"))
	waitFor(t, "the program to restart with the new value", func() bool { return read() == filePassword+"\nrotated-value\n" })
	if !strings.Contains(p.out.String(), "refresh: DB_PASSWORD changed; restarting the program") {
		t.Errorf("output %q; want the restart named", p.out.String())
	}
	// The restarted program stops on SIGTERM sent to sekisho: 42.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if ws := p.wait(t); !ws.Exited() || ws.ExitStatus() != 42 {
		t.Errorf("status %v; want the program's 42", ws)
	}
	assertNoSecrets(t, p.out.String())

	if code, out := execRun(t, baseEnv("DB_PASSWORD=sekisho+file://"+secret), "--refresh", "1h", "--", "sh", "-c", "exit 3"); code != 3 {
		t.Errorf("exit %d; want the program's 3: %s", code, out)
	}
}

// TestExecRefreshFlags: a bad --stop-signal or --grace is a usage error;
// the program does not start.
func TestExecRefreshFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--refresh", "1m", "--stop-signal", "NOPE"}, `--stop-signal: unknown signal "NOPE"`},
		{[]string{"--refresh", "1m", "--grace", "0s"}, "--grace must be positive"},
		{[]string{"--refresh", "-1m"}, "--refresh must not be negative"},
	} {
		code, out := execRun(t, baseEnv(), append(tt.args, "--", "sh", "-c", "echo PROGRAM-RAN")...)
		if code != 2 || !strings.Contains(out, tt.want) || strings.Contains(out, "PROGRAM-RAN") {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tt.args, code, out, tt.want)
		}
	}
}
