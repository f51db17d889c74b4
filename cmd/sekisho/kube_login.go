package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sekisho/sekisho/internal/kubelogin"
)

// cmdKubeLogin is kubectl's exec credential plugin: the ExecCredential on
// stdout, everything else on stderr.
func cmdKubeLogin(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	o, err := kubelogin.ParseLogin(args, stdout)
	if code, done := usageExit(err, "sekisho kube login", stderr); done {
		return code
	}
	o.ExecInfo = os.Getenv("KUBERNETES_EXEC_INFO")
	o.Stdout, o.Stderr = stdout, stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := kubelogin.Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "sekisho kube login: %v\n", err)
		return 1
	}
	return 0
}

// cmdKubeSetup prints the kubectl config lines that use `sekisho kube login`.
func cmdKubeSetup(args []string, stdout, stderr io.Writer) int {
	s, err := kubelogin.ParseSetup(args, stdout)
	if code, done := usageExit(err, "sekisho kube setup", stderr); done {
		return code
	}
	if err := kubelogin.WriteSetup(stdout, s); err != nil {
		fmt.Fprintf(stderr, "sekisho kube setup: %v\n", err)
		return 1
	}
	return 0
}

// usageExit maps a flag parsing error to the exit code: 0 after -h, 2 for
// a bad command line.
func usageExit(err error, name string, stderr io.Writer) (int, bool) {
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	default:
		fmt.Fprintf(stderr, "%s: %v (see %s -h)\n", name, err, name)
		return 2, true
	}
}
