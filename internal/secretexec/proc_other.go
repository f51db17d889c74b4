//go:build !linux

package secretexec

import "errors"

func becomeSubreaper() error {
	return errors.New("only Linux has child subreapers")
}

// memoryBacked cannot tell outside Linux: tempfiles need
// --allow-disk-tempfile there.
func memoryBacked(string) (bool, error) { return false, nil }
