//go:build unix

package kubelogin

import (
	"context"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path, waiting until it is free or
// ctx ends. kubectl may start several plugin processes at once (one per
// parallel request); the lock makes the second wait for the first's login
// and then reuse its tokens. The kernel drops the lock if the process dies.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("token cache lock: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- flock(f) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("token cache lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil // closing the descriptor releases the lock
	case <-ctx.Done():
		// The waiting goroutine keeps the descriptor until it gets the
		// lock, then lets it go at once.
		go func() {
			<-done
			f.Close()
		}()
		return nil, fmt.Errorf("waiting for another sekisho kube login to finish (lock %s): %w", path, ctx.Err())
	}
}

func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}
