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
