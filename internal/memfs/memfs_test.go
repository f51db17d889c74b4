package memfs

import (
	"os"
	"runtime"
	"testing"
)

func TestMemoryBacked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux tells")
	}
	if _, err := os.Stat(DefaultDir); err != nil {
		t.Skipf("%s: %v", DefaultDir, err)
	}
	if mem, err := MemoryBacked(DefaultDir); err != nil || !mem {
		t.Errorf("MemoryBacked(%s) = %v, %v; want true", DefaultDir, mem, err)
	}
	if _, err := MemoryBacked("/nonexistent/dir"); err == nil {
		t.Error("a missing directory: no error")
	}
}
