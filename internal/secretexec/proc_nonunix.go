//go:build !unix

package secretexec

import (
	"errors"
	"io"
)

var errUnsupported = errors.New("sekisho exec runs on Linux and other Unix systems")

func execve(string, []string, []string) error { return errUnsupported }

func supervise(_ string, args []string, p *Prepared, stderr io.Writer) int {
	removeAll(p.TempFiles)
	io.WriteString(stderr, "sekisho exec: "+errUnsupported.Error()+"\n")
	return ExitCannotRun
}
