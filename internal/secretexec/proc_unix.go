//go:build unix

package secretexec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
)

func execve(path string, args, env []string) error {
	return syscall.Exec(path, args, env)
}

// supervise runs the program as a child in a process group of its own,
// forwards every signal sekisho receives to that group, reaps every child
// that ends (the program's orphans too: sekisho is PID 1 or a child
// subreaper) and returns the program's exit status, 128+n when signal n
// killed it. The tempfiles are removed when the program has ended.
func supervise(path string, args []string, p *Prepared, stderr io.Writer) int {
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
	proc, err := os.StartProcess(path, args, &os.ProcAttr{
		Env:   p.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		fmt.Fprintf(stderr, "sekisho exec: %s: %v\n", args[0], err)
		if errors.Is(err, fs.ErrNotExist) {
			return ExitNotFound
		}
		return ExitCannotRun
	}
	pid := proc.Pid
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			if status, done := reap(pid); done {
				return exitCode(status)
			}
		case syscall.SIGURG:
			// The Go runtime preempts its own threads with SIGURG; one
			// sent to sekisho cannot be told apart, and no program
			// expects it.
		default:
			if err := syscall.Kill(-pid, sig.(syscall.Signal)); err != nil && err != syscall.ESRCH {
				fmt.Fprintf(stderr, "sekisho exec: forward %v: %v\n", sig, err)
			}
		}
	}
	return ExitCannotRun // not reached: sigs is never closed
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
