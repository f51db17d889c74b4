package testutil

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSyncBufferConcurrent writes and reads from many goroutines (run with
// -race to catch a missing lock) and checks no write is lost or torn.
func TestSyncBufferConcurrent(t *testing.T) {
	const writers, lines = 8, 100
	var b SyncBuffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				if _, err := fmt.Fprintf(&b, "w%d-%d\n", w, i); err != nil {
					t.Errorf("write: %v", err)
				}
				_ = b.String()
			}
		}()
	}
	wg.Wait()

	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	seen := make(map[string]bool, len(got))
	for _, l := range got {
		seen[l] = true
	}
	for w := range writers {
		for i := range lines {
			if l := fmt.Sprintf("w%d-%d", w, i); !seen[l] {
				t.Errorf("line %q missing", l)
			}
		}
	}
}

// TestSyncBufferStringDoesNotConsume checks String can be read repeatedly, as
// tests do when polling a log for a line.
func TestSyncBufferStringDoesNotConsume(t *testing.T) {
	var b SyncBuffer
	if b.String() != "" {
		t.Fatalf("zero value = %q, want empty", b.String())
	}
	_, _ = b.Write([]byte("a"))
	_, _ = b.Write([]byte("b"))
	for range 2 {
		if got := b.String(); got != "ab" {
			t.Fatalf("String() = %q, want %q", got, "ab")
		}
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v, want %v", c.Now(), start)
	}
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("advanced by %v, want 90s", got)
	}
}
