//go:build !linux

package memfs

// MemoryBacked cannot tell outside Linux: it answers false, so callers
// treat the directory as a disk.
func MemoryBacked(string) (bool, error) { return false, nil }
