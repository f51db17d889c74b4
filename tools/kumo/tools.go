//go:build tools

// Package kumo pins the AWS emulator the tests run (Secrets Manager, SSM
// Parameter Store and STS on one port), built once per machine from this
// module (its own go.mod, so its dependencies never mix with sekisho's) into
// a cache directory by internal/kumotest.
package kumo

import (
	_ "github.com/sivchari/kumo/cmd/kumo"
)
