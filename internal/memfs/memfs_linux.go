package memfs

import "golang.org/x/sys/unix"

// MemoryBacked reports whether dir is on tmpfs or ramfs, whose files never
// reach a disk (unless the system swaps).
func MemoryBacked(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC, nil
}
