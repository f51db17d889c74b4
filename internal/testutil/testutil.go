// Package testutil is test support shared by the packages' tests; it is not
// used by production code.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn/apitoken"
)

// SyncBuffer captures output that servers, loggers and child processes write
// from their own goroutines while the test reads it, which a bare
// bytes.Buffer does not allow. The zero value is ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p, serialised with other writes and reads.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far, without consuming it.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TokenFile writes an API token file in a temporary directory with one
// token, stored (as in production) only as its hash, and returns its path.
func TokenFile(t testing.TB, name, token string, groups ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	src := fmt.Sprintf("- name: %s\n  hash: %s\n  groups: [%s]\n", name, apitoken.Hash([]byte(token)), strings.Join(groups, ", "))
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Clock is a settable time source for code that takes a `func() time.Time`:
// a test moves it forward instead of sleeping. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock that reads t until it is advanced.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the Clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the Clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// FreeAddr returns a loopback address with a port nothing listens on now,
// for a server that must be told its address before it starts (one that
// another server is configured to call). Another process may take the port
// in between; tests on one machine rarely race for it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Eventually polls cond every 10 ms until it holds, failing t with what
// after timeout: for state another goroutine or process changes and
// nothing signals (a server's status write, a watch, a parked socket).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling state nothing signals
	}
}
