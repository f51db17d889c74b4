// Package testutil is test support shared by the packages' tests; it is not
// used by production code.
package testutil

import (
	"bytes"
	"sync"
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
