//go:build !unix

package secretexec

import (
	"context"
	"errors"
	"io"
	"syscall"
)

var errUnsupported = errors.New("sekisho exec runs on Linux and other Unix systems")

func execve(string, []string, []string) error { return errUnsupported }

func supervise(_ context.Context, _ string, _ Options, p *Prepared, stderr io.Writer) int {
	removeAll(p.TempFiles)
	io.WriteString(stderr, "sekisho exec: "+errUnsupported.Error()+"\n")
	return ExitCannotRun
}

// ParseSignal has no signals to name here.
func ParseSignal(string) (syscall.Signal, error) { return 0, errUnsupported }
