// Command kubebin builds the kube-apiserver and etcd that the tests run,
// unless this machine has them already, and prints the directory that
// holds them. scripts/test.sh runs it as a step of its own, so the long
// first build is timed apart from the tests and never meets go test's
// timeout:
//
//	go run ./internal/kubetest/kubebin
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sekisho/sekisho/internal/kubetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bins, err := kubetest.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(filepath.Dir(bins.APIServer))
}
