package deploy

import (
	"bytes"
	"debug/elf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

// nonroot is the user the image runs as (distroless's nonroot).
const nonroot = 65532

// dockerBuildCommand returns the go build command of the Dockerfile's
// build stage: the RUN instruction that runs go build, from its
// environment assignments on.
func dockerBuildCommand(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(data), "\\\n", " ")
	for line := range strings.SplitSeq(joined, "\n") {
		if !strings.HasPrefix(line, "RUN ") || !strings.Contains(line, " go build ") {
			continue
		}
		i := strings.Index(line, "GOOS=")
		if i < 0 {
			t.Fatalf("Dockerfile: the go build line does not start with GOOS=: %q", line)
		}
		return strings.TrimSpace(line[i:])
	}
	t.Fatal("Dockerfile has no RUN ... go build line")
	return ""
}

// TestImageBinary builds sekisho with the Dockerfile's own build command
// (no container engine can run here: the image itself is not built) and
// checks what the image relies on: the binary is static (no interpreter,
// no shared libraries, so it runs on distroless static or scratch), it
// reports the version given at build time, and it serves as user 65532
// from a working directory it cannot write, with only /tmp writable.
func TestImageBinary(t *testing.T) {
	cmdline := dockerBuildCommand(t)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-o /out/sekisho", "./cmd/sekisho"} {
		if !strings.Contains(cmdline, want) {
			t.Fatalf("Dockerfile build command %q lacks %q", cmdline, want)
		}
	}
	// A directory user 65532 can read and run from.
	dir, err := os.MkdirTemp("", "sekisho-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sekisho")
	build := exec.CommandContext(t.Context(), "sh", "-c", strings.Replace(cmdline, "/out/sekisho", bin, 1))
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION=v0.0.0-imagetest")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v (%v); want none", libs, err)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v0.0.0-imagetest") {
		t.Errorf("sekisho version: %q, %v; want the version given at build time", out, err)
	}

	gateway, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := "listen: {http: \"" + gateway + "\"}\nadmin: {listen: \"" + admin + "\"}\nlog: {format: json}\n" +
		"routes:\n  - {name: hello, match: {path_prefix: /}, to: \"builtin:echo\", public: true}\n"
	if err := os.WriteFile(filepath.Join(dir, "sekisho.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	serve := exec.Command(bin, "serve", "--config", filepath.Join(dir, "sekisho.yaml"))
	serve.Dir = "/"
	serve.Env = []string{"HOME=/nonexistent", "TMPDIR=/tmp"}
	serve.Stdout, serve.Stderr = &logs, &logs
	if os.Getuid() == 0 {
		serve.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
	}
	p, err := testutil.StartProcess(serve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	waitOK(t, p, &logs, "http://"+admin+"/readyz")
	resp, err := http.Get("http://" + gateway + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("/hello")) {
		t.Errorf("GET /hello: %d %q; want the echo of the request", resp.StatusCode, body)
	}
}

// waitOK polls url until it answers 200, failing if the process exits or
// a deadline passes.
func waitOK(t *testing.T, p *testutil.Process, logs *testutil.SyncBuffer, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.Exited():
			t.Fatalf("sekisho exited: %v\n%s", p.Err(), logs.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 30s (%v)\n%s", url, err, logs.String())
		}
	}
}
