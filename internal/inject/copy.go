package inject

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CopySelf copies the running executable to dest, mode 0555: the init
// container the injector adds runs `sekisho kube copy-binary` so the
// wrapped containers find sekisho in the shared volume, whatever their own
// image holds. The copy is written beside dest and renamed, so a
// container never sees half a binary.
func CopySelf(dest string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("copy-binary: find this executable: %w", err)
	}
	in, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("copy-binary: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".sekisho-*")
	if err != nil {
		return fmt.Errorf("copy-binary: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing is left to remove
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("copy-binary: write %s: %w", dest, err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return fmt.Errorf("copy-binary: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("copy-binary: write %s: %w", dest, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("copy-binary: %w", err)
	}
	return nil
}
