// Command all builds every real server the tests run (kube-apiserver and
// etcd, and the secret stores) and tools (helm) unless this machine has them already, and
// prints where they are. scripts/test.sh runs it as a step of its own, so
// the long first builds are timed apart from the tests and never meet go
// test's timeout:
//
//	go run ./internal/toolbin/all
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sekisho/sekisho/internal/baotest"
	"github.com/sekisho/sekisho/internal/helmtest"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/kumotest"
	"github.com/sekisho/sekisho/internal/toolbin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// One line per tools module; each module's test helper owns its Spec.
	specs := []func() (toolbin.Spec, error){kubetest.Spec, kumotest.Spec, baotest.Spec, helmtest.Spec}
	for _, spec := range specs {
		s, err := spec()
		if err == nil {
			var paths map[string]string
			paths, err = toolbin.Ensure(ctx, os.Stderr, s)
			for _, b := range s.Bins {
				fmt.Println(paths[b.Name])
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
