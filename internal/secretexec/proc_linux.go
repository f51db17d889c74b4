package secretexec

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes sekisho the parent of the program's orphans (they
// would otherwise go to PID 1), so that it reaps them as PID 1 would.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// memoryBacked reports whether dir is on tmpfs or ramfs, whose files never
// reach a disk (unless the system swaps).
func memoryBacked(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC, nil
}
