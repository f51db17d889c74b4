//go:build unix

package secretexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func execve(path string, args, env []string) error {
	return syscall.Exec(path, args, env)
}

// supervise runs the program as a child in a process group of its own,
// forwards every signal sekisho receives to that group, reaps every child
// that ends (the program's orphans too: sekisho is PID 1 or a child
// subreaper) and returns the program's exit status, 128+n when signal n
// killed it. The tempfiles are removed when the program has ended.
//
// With opts.Refresh it also resolves the references again at that
// interval; when a value changed it rewrites the files, stops the program
// (opts.StopSignal, then SIGKILL after opts.Grace) and starts it again
// with the new values. A refresh that fails leaves the program running.
func supervise(ctx context.Context, path string, opts Options, p *Prepared, stderr io.Writer) int {
	defer removeAll(p.TempFiles)
	if os.Getpid() != 1 {
		if err := becomeSubreaper(); err != nil {
			fmt.Fprintf(stderr, "sekisho exec: orphans of the program will not be reaped: %v\n", err)
		}
	}
	// Before the child starts, so neither its end nor a signal is missed.
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	start := func() (pid, code int) {
		proc, err := os.StartProcess(path, opts.Args, &os.ProcAttr{
			Env:   p.Env,
			Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
			Sys:   &syscall.SysProcAttr{Setpgid: true},
		})
		if err != nil {
			fmt.Fprintf(stderr, "sekisho exec: %s: %v\n", opts.Args[0], err)
			if errors.Is(err, fs.ErrNotExist) {
				return 0, ExitNotFound
			}
			return 0, ExitCannotRun
		}
		return proc.Pid, 0
	}
	pid, code := start()
	if code != 0 {
		return code
	}

	ticks := opts.ticks
	if ticks == nil && opts.Refresh > 0 && len(p.refs) > 0 {
		t := time.NewTicker(opts.Refresh)
		defer t.Stop()
		ticks = t.C
	}
	stopSig, grace := opts.StopSignal, opts.Grace
	if stopSig == 0 {
		stopSig = syscall.SIGTERM
	}
	if grace <= 0 {
		grace = DefaultGrace
	}
	note := func(outcome string) {
		if opts.refreshed != nil {
			opts.refreshed(outcome)
		}
	}
	type result struct {
		values   [][]byte
		failures []Failure
	}
	results := make(chan result, 1) // the resolving goroutine never blocks
	resolving := false
	restarting := false // the program was asked to stop for a restart
	var next [][]byte   // the values it restarts with
	var kill <-chan time.Time
	var killTimer *time.Timer
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGCHLD:
				status, done := reap(pid)
				if !done {
					continue
				}
				if !restarting {
					return exitCode(status)
				}
				restarting, kill = false, nil
				killTimer.Stop()
				p.update(next)
				if pid, code = start(); code != 0 {
					return code
				}
				note("restarted")
			case syscall.SIGURG:
				// The Go runtime preempts its own threads with SIGURG; one
				// sent to sekisho cannot be told apart, and no program
				// expects it.
			default:
				if restarting && (sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT) {
					// sekisho is being stopped too: the program's end
					// is sekisho's, not a restart.
					restarting = false
				}
				if err := syscall.Kill(-pid, sig.(syscall.Signal)); err != nil && err != syscall.ESRCH {
					fmt.Fprintf(stderr, "sekisho exec: forward %v: %v\n", sig, err)
				}
			}
		case <-ticks:
			if resolving || restarting {
				continue
			}
			resolving = true
			go func() {
				values, failures := p.resolve(ctx, opts.Timeout)
				results <- result{values, failures}
			}()
		case r := <-results:
			resolving = false
			if len(r.failures) > 0 {
				sortFailures(r.failures, opts.Environ)
				fmt.Fprintf(stderr, "sekisho exec: refresh: %s\n", describe(r.failures, "the program keeps running with the values it has"))
				note("failed")
				continue
			}
			names := p.changed(r.values)
			if len(names) == 0 {
				note("unchanged")
				continue
			}
			// The files first: if one cannot be written, the running
			// program is left alone.
			if _, failures := p.write(r.values, p.paths, opts); len(failures) > 0 {
				fmt.Fprintf(stderr, "sekisho exec: refresh: %s\n", describe(failures, "the program keeps running with the values it has"))
				note("failed")
				continue
			}
			fmt.Fprintf(stderr, "sekisho exec: refresh: %s changed; restarting the program\n", strings.Join(names, ", "))
			next, restarting = r.values, true
			if err := syscall.Kill(-pid, stopSig); err != nil && err != syscall.ESRCH {
				fmt.Fprintf(stderr, "sekisho exec: stop the program with %s: %v\n", unix.SignalName(stopSig), err)
			}
			killTimer = time.NewTimer(grace)
			kill = killTimer.C
			note("stopping")
		case <-kill:
			kill = nil
			fmt.Fprintf(stderr, "sekisho exec: the program did not stop within %v of %s; killing its process group\n", grace, unix.SignalName(stopSig))
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
				fmt.Fprintf(stderr, "sekisho exec: kill the program: %v\n", err)
			}
		}
	}
}

// reap collects every child that has ended; done is set once pid has,
// with its status.
func reap(pid int) (status syscall.WaitStatus, done bool) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || got <= 0 {
			return status, done
		}
		if got == pid {
			status, done = ws, true
		}
	}
}

func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return ExitCannotRun
}

// ParseSignal reads a signal name as kill(1) takes it: TERM, SIGTERM,
// or its number.
func ParseSignal(name string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	up := strings.ToUpper(name)
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	if sig := unix.SignalNum(up); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}
