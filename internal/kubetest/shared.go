package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Shared is one cluster for the tests of a package, started by the first
// test that asks for it and stopped when the package's tests are done:
// starting a cluster costs 4–8 s, sharing it costs the tests only
// distinct names. Declare it as a package variable, set Options before the
// first Cluster call (in TestMain, for instance after starting a webhook
// the options name), and make TestMain return Run:
//
//	var kube kubetest.Shared
//
//	func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }
type Shared struct {
	Options Options

	once    sync.Once
	cluster *Cluster
	dir     string
	err     error
}

// Cluster returns the package's cluster, starting it on the first call
// (building the servers first if needed). It skips the test under -short
// and fails it when the cluster could not start, in this or an earlier
// test. Only tests of a package whose TestMain returns Run may call it.
func (s *Shared) Cluster(tb testing.TB) *Cluster {
	tb.Helper()
	skipShort(tb)
	s.once.Do(func() {
		s.err = errors.New("kubetest: the shared cluster did not start (see the first test that asked for it)")
		s.cluster, s.err = s.start(tb)
	})
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.cluster
}

// start runs the cluster in a temporary directory of its own: tb's would be
// removed when the first test ends.
func (s *Shared) start(tb testing.TB) (*Cluster, error) {
	tb.Helper()
	ctx := context.Background() // not tb's: the cluster outlives the test
	bins, err := EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	s.dir, err = os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	return start(tb, ctx, bins, s.dir, s.Options)
}

// Run runs the package's tests, then stops the cluster if one started and
// removes its files, and returns the exit code for os.Exit. When a test
// failed, the last lines of the servers' logs are printed to stderr. No
// test can start the cluster after Run.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	s.once.Do(func() { s.err = errors.New("kubetest: Shared.Cluster called after Run") })
	if s.cluster != nil {
		if code != 0 {
			fmt.Fprint(os.Stderr, s.cluster.logTails(50))
		}
		if err := s.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			fmt.Fprintln(os.Stderr, "kubetest:", err)
		}
	}
	return code
}
