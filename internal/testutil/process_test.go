package testutil

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startShell runs script under sh in its own group and returns the process
// and the first line it prints (scripts print a child's PID, or "ready").
func startShell(t *testing.T, script string) (*Process, string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(0) })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the script's first line: %v", err)
	}
	return p, strings.TrimSpace(line)
}

// waitGone polls until pid no longer runs: a killed process takes a moment
// to die.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for Running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still exists 5s after Stop", pid)
		}
		time.Sleep(10 * time.Millisecond) // poll of a process the test cannot wait for
	}
}

// TestProcessStopKillsTheGroup checks that Stop ends a child the leader
// started, not only the leader, with and without a grace period.
func TestProcessStopKillsTheGroup(t *testing.T) {
	for _, grace := range []time.Duration{0, 5 * time.Second} {
		t.Run(grace.String(), func(t *testing.T) {
			p, line := startShell(t, "sleep 300 & echo $!; wait")
			child, err := strconv.Atoi(line)
			if err != nil {
				t.Fatalf("child PID %q: %v", line, err)
			}
			if pgid, err := syscall.Getpgid(child); err != nil || pgid != p.Pid() {
				t.Fatalf("child's group = %d, %v; want the leader's %d", pgid, err, p.Pid())
			}
			if err := p.Stop(grace); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			select {
			case <-p.Exited():
			default:
				t.Fatal("Stop returned before the leader exited")
			}
			waitGone(t, p.Pid())
			waitGone(t, child)
		})
	}
}

// TestProcessStopKillsWhatIgnoresTERM checks that a server ignoring
// SIGTERM is killed after the grace period and that Stop says so.
func TestProcessStopKillsWhatIgnoresTERM(t *testing.T) {
	p, _ := startShell(t, `trap "" TERM; echo ready; while :; do sleep 1; done`)
	err := p.Stop(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not stop on SIGTERM") {
		t.Fatalf("Stop = %v; want the forced kill reported", err)
	}
	waitGone(t, p.Pid())
	if again := p.Stop(0); again != err {
		t.Errorf("second Stop = %v; want the first result %v", again, err)
	}
}

// TestRunning checks the live and the dead case of Running.
func TestRunning(t *testing.T) {
	if !Running(syscall.Getpid()) {
		t.Error("Running(own PID) = false")
	}
	p, _ := startShell(t, "echo ready; exec sleep 300")
	if !Running(p.Pid()) {
		t.Error("Running(sleeping child) = false")
	}
	if err := p.Stop(0); err != nil {
		t.Fatal(err)
	}
	if Running(p.Pid()) {
		t.Error("Running(stopped and reaped child) = true")
	}
}
