//go:build !linux

package secretexec

import "errors"

func becomeSubreaper() error {
	return errors.New("only Linux has child subreapers")
}
