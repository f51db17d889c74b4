//go:build unix

package secretexec

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

// refreshRun is `sekisho exec --refresh` run in this process with a clock
// the test drives: tick resolves once and returns how that refresh ended.
type refreshRun struct {
	dir      string // the child appends what it sees to dir/seen
	ticks    chan time.Time
	outcomes chan string
	stderr   *testutil.SyncBuffer
	code     chan int
}

// childScript appends "PID DB_PASSWORD TLS_KEY-path TLS_KEY-content" to
// $1/seen when it starts and "stopped PID" when HUP stops it; USR1 makes
// it exit 7. $2 is the trap for TERM. It gives up after a minute, so a
// failed test leaves no process behind.
const childScript = `trap 'echo "stopped $$" >> "$1/seen"; exit 0' HUP; trap 'exit 7' USR1; trap "$2" TERM
echo "$$ $DB_PASSWORD $TLS_KEY $(cat "$TLS_KEY")" >> "$1/seen"
i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; exit 99`

// startRefresh writes the secrets (password and tls.key) and runs the
// child under Run with refresh on; termTrap is the child's TERM trap.
func startRefresh(t *testing.T, opts Options, termTrap string) *refreshRun {
	t.Helper()
	r := &refreshRun{
		dir:      t.TempDir(),
		ticks:    make(chan time.Time),
		outcomes: make(chan string, 10),
		stderr:   &testutil.SyncBuffer{},
		code:     make(chan int, 1),
	}
	testutil.WriteFile(t, r.dir, "password", []byte("pw-one-s3cr3t"))
	testutil.WriteFile(t, r.dir, "tls.key", []byte("key-one-s3cr3t"))
	opts.Args = []string{"sh", "-c", childScript, "sh", r.dir, termTrap}
	opts.Environ = []string{
		"PATH=/usr/bin:/bin",
		"SEKISHO_TMPDIR=" + t.TempDir(),
		"DB_PASSWORD=sekisho+file://" + r.dir + "/password",
		"TLS_KEY=sekisho+file://" + r.dir + "/tls.key?destination=tempfile",
	}
	opts.AllowDiskTempfile = true
	opts.Refresh = time.Hour // never: the test ticks
	opts.ticks = r.ticks
	opts.refreshed = func(o string) { r.outcomes <- o }
	opts.Stderr = r.stderr
	go func() { r.code <- Run(t.Context(), opts) }()
	t.Cleanup(func() {
		for _, s := range r.seen(t) {
			if pid, err := strconv.Atoi(s[0]); err == nil {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		select {
		case <-r.code:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
		if t.Failed() {
			t.Logf("stderr:\n%s", r.stderr)
		}
	})
	r.waitSeen(t, 1)
	return r
}

// seen returns the lines the child wrote, split in fields.
func (r *refreshRun) seen(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "seen"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			lines = append(lines, strings.Fields(l))
		}
	}
	return lines
}

// waitSeen polls until the child has written n lines.
func (r *refreshRun) waitSeen(t *testing.T, n int) [][]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s := r.seen(t); len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child wrote %v; want %d lines", r.seen(t), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tick runs one refresh and returns how it ended ("stopping" is
// followed by "restarted", which tick also waits for).
func (r *refreshRun) tick(t *testing.T) string {
	t.Helper()
	select {
	case r.ticks <- time.Now():
	case <-time.After(20 * time.Second):
		t.Fatal("the supervisor did not take the tick")
	}
	if o := r.outcome(t); o != "stopping" {
		return o
	}
	return r.outcome(t)
}

func (r *refreshRun) outcome(t *testing.T) string {
	t.Helper()
	select {
	case o := <-r.outcomes:
		return o
	case <-time.After(40 * time.Second):
		t.Fatal("the refresh did not end")
		return ""
	}
}

func alive(pid string) bool {
	n, _ := strconv.Atoi(pid)
	return n > 0 && syscall.Kill(n, 0) == nil
}

// TestRefresh: a refresh that finds the same values leaves the program
// alone; one that finds a changed secret stops the program with the stop
// signal and starts it again with the new value (the tempfile keeps its
// path, holds the new content); one whose store fails keeps the program
// and its values and warns without a value; the program exiting on its
// own ends sekisho with its status, without a restart.
func TestRefresh(t *testing.T) {
	r := startRefresh(t, Options{StopSignal: syscall.SIGHUP}, "exit 0")
	first := r.waitSeen(t, 1)[0]
	if len(first) != 4 || first[1] != "pw-one-s3cr3t" || first[3] != "key-one-s3cr3t" {
		t.Fatalf("the program saw %v", first)
	}

	if o := r.tick(t); o != "unchanged" {
		t.Fatalf("refresh with the same values: %s", o)
	}
	if s := r.seen(t); len(s) != 1 || !alive(first[0]) {
		t.Fatalf("the program was restarted without a change: %v", s)
	}

	testutil.WriteFile(t, r.dir, "tls.key", []byte("key-two-s3cr3t"))
	testutil.WriteFile(t, r.dir, "password", []byte("pw-two-s3cr3t"))
	if o := r.tick(t); o != "restarted" {
		t.Fatalf("refresh after the rotation: %s", o)
	}
	s := r.waitSeen(t, 3)
	if strings.Join(s[1], " ") != "stopped "+first[0] {
		t.Errorf("line %v; want the first program stopped by the stop signal (HUP)", s[1])
	}
	second := s[2]
	if len(second) != 4 || second[0] == first[0] || second[1] != "pw-two-s3cr3t" || second[2] != first[2] || second[3] != "key-two-s3cr3t" {
		t.Errorf("the restarted program saw %v; want a new PID, the new password, the same tempfile with the new key (first %v)", second, first)
	}
	if !strings.Contains(r.stderr.String(), "refresh: DB_PASSWORD, TLS_KEY changed; restarting the program") {
		t.Errorf("stderr %q; want the changed variables named", r.stderr)
	}

	if err := os.Remove(filepath.Join(r.dir, "password")); err != nil {
		t.Fatal(err)
	}
	if o := r.tick(t); o != "failed" {
		t.Fatalf("refresh with the secret gone: %s", o)
	}
	if s := r.seen(t); len(s) != 3 || !alive(second[0]) {
		t.Errorf("a failed refresh touched the program: %v", s)
	}
	warn := "sekisho exec: refresh: 1 secret reference(s) did not resolve; the program keeps running with the values it has:\n  DB_PASSWORD: sekisho+file://" + r.dir + "/password: secret not found"
	if !strings.Contains(r.stderr.String(), warn) {
		t.Errorf("stderr %q; want %q", r.stderr, warn)
	}
	for _, v := range []string{"pw-one", "pw-two", "key-one", "key-two"} {
		if strings.Contains(r.stderr.String(), v) {
			t.Errorf("stderr holds a secret value %s: %q", v, r.stderr)
		}
	}

	pid, _ := strconv.Atoi(second[0])
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-r.code:
		r.code <- code // for the cleanup
		if code != 7 {
			t.Errorf("exit %d; want the program's 7", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sekisho did not end with the program")
	}
	if len(r.seen(t)) != 3 {
		t.Errorf("the program was started again after it exited: %v", r.seen(t))
	}
	if _, err := os.Stat(second[2]); !os.IsNotExist(err) {
		t.Errorf("tempfile %s left behind: %v", second[2], err)
	}
}

// TestRefreshKillsAfterGrace: a program that ignores the stop signal is
// killed (its whole process group) once the grace period is over, then
// started again with the new value.
func TestRefreshKillsAfterGrace(t *testing.T) {
	r := startRefresh(t, Options{Grace: 200 * time.Millisecond}, "") // trap '' TERM: ignored
	first := r.waitSeen(t, 1)[0]
	testutil.WriteFile(t, r.dir, "password", []byte("pw-two-s3cr3t"))
	if o := r.tick(t); o != "restarted" {
		t.Fatalf("refresh after the rotation: %s", o)
	}
	s := r.waitSeen(t, 2)
	if len(s) != 2 || s[1][1] != "pw-two-s3cr3t" {
		t.Errorf("the child wrote %v; want the first killed (no 'stopped' line) and the second to see the new password", s)
	}
	if alive(first[0]) {
		t.Errorf("the first program %s still runs", first[0])
	}
	if !strings.Contains(r.stderr.String(), "the program did not stop within 200ms of SIGTERM; killing its process group") {
		t.Errorf("stderr %q; want the kill explained", r.stderr)
	}
}

// TestRefreshStoppedDuringRestart: a SIGTERM sent to sekisho while a
// restart waits for the program to stop is forwarded, and the program's
// end is sekisho's: no new program starts.
func TestRefreshStoppedDuringRestart(t *testing.T) {
	// WINCH is ignored by sh and sleep: the program does not stop for it.
	r := startRefresh(t, Options{StopSignal: syscall.SIGWINCH, Grace: time.Minute}, "exit 5")
	testutil.WriteFile(t, r.dir, "password", []byte("pw-two-s3cr3t"))
	r.ticks <- time.Now()
	if o := r.outcome(t); o != "stopping" {
		t.Fatalf("refresh after the rotation: %s", o)
	}
	// The supervisor catches every signal while it runs: this reaches
	// the program, not the test.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-r.code:
		r.code <- code
		if code != 5 {
			t.Errorf("exit %d; want the program's 5", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sekisho did not end with the program")
	}
	if s := r.seen(t); len(s) != 1 {
		t.Errorf("a program started after sekisho was stopped: %v", s)
	}
}
