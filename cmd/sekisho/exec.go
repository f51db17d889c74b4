package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sekisho/sekisho/internal/secretexec"
)

const execUsage = `usage: sekisho exec [--supervise] [--refresh D [--stop-signal SIG] [--grace D]]
                    [--timeout D] [--allow-disk-tempfile] [--] CMD [ARGS...]

Replaces every secret reference in the environment (sekisho+file:///…,
sekisho+k8s://NS/SECRET/KEY, …) with the secret, then runs CMD in place of
sekisho. If any reference does not resolve, CMD is not started and sekisho
exits 125, naming each variable and reference. Exit 127: CMD not found;
126: it could not be started; otherwise CMD's own status.

With --refresh, sekisho supervises CMD and resolves the references again
at that interval; when a secret changed it stops CMD (--stop-signal, then
SIGKILL after --grace) and starts it again with the new values. A refresh
that fails leaves CMD running with the values it has.

`

func cmdExec(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, execUsage)
		fs.PrintDefaults()
	}
	supervise := fs.Bool("supervise", false, "run CMD as a child: forward signals to its process group, reap orphans, exit with its status (on by itself as PID 1)")
	timeout := fs.Duration("timeout", secretexec.DefaultTimeout, "time allowed to resolve all references")
	allowDisk := fs.Bool("allow-disk-tempfile", false, "let ?destination=tempfile write to a directory that is not memory-backed")
	refresh := fs.Duration("refresh", 0, "resolve the references again at this interval and restart CMD when a secret changed (implies --supervise; 0: never)")
	stopSignal := fs.String("stop-signal", "TERM", "signal that asks CMD to stop before a restart")
	grace := fs.Duration("grace", secretexec.DefaultGrace, "time CMD has to stop before a restart kills it")
	if err := fs.Parse(args); err != nil {
		return secretexec.ExitUsage
	}
	sig, err := secretexec.ParseSignal(*stopSignal)
	if err != nil {
		fmt.Fprintf(stderr, "sekisho exec: --stop-signal: %v\n", err)
		return secretexec.ExitUsage
	}
	if *refresh < 0 || *grace <= 0 {
		fmt.Fprintln(stderr, "sekisho exec: --refresh must not be negative and --grace must be positive")
		return secretexec.ExitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return secretexec.ExitUsage
	}
	return secretexec.Run(context.Background(), secretexec.Options{
		Args:              fs.Args(),
		Environ:           os.Environ(),
		Supervise:         *supervise,
		Timeout:           *timeout,
		AllowDiskTempfile: *allowDisk,
		Refresh:           *refresh,
		StopSignal:        sig,
		Grace:             *grace,
		Stderr:            stderr,
	})
}
