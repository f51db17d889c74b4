package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a server a test runs in a process group of its own. Stopping
// it signals the whole group, because some servers leave children behind
// when only their leader is killed (nginx's workers outlive their master),
// and scripts/test.sh fails a run that leaves a server running.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // what Wait returned; read only after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts cmd in a new process group. On Linux the kernel also
// kills the leader when the test binary dies (go test's -timeout panics
// skip every Cleanup), so a crashed test leaves no server behind.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the leader's process ID, which is also the group's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the leader has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the leader exited (nil for status 0); call it only after
// Exited is closed.
func (p *Process) Err() error { return p.err }

// Stop ends the group: SIGTERM to every member, SIGKILL to the group when
// the leader has not exited within grace (0: SIGKILL at once, for servers
// whose state is thrown away anyway), and a final SIGKILL for any child
// that outlived its leader. It returns an error when the leader had to be
// killed after grace. Calling it again returns the first call's result.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(grace) })
	return p.stopErr
}

func (p *Process) stop(grace time.Duration) error {
	pgid := p.Pid()
	var err error
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			err = fmt.Errorf("process group %d (%s) did not stop on SIGTERM within %s; killed it", pgid, p.cmd.Path, grace)
		}
	}
	if e := syscall.Kill(-pgid, syscall.SIGKILL); e != nil && !errors.Is(e, syscall.ESRCH) {
		err = errors.Join(err, fmt.Errorf("kill process group %d: %w", pgid, e))
	}
	<-p.exited
	// The leader is reaped; anything still in its group is an orphan.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}

// Running reports whether pid is a live process. A zombie (dead, not yet
// reaped) does not count: an orphan's zombie waits for init, which may be
// slow to reap it, but it runs no code and holds no port.
func Running(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) // gone: it exited in between
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain ") ".
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	f := bytes.Fields(rest)
	return len(f) == 0 || (f[0][0] != 'Z' && f[0][0] != 'X')
}
