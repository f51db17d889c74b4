//go:build tools

// Package openbao pins the real OpenBao server the tests run (bao server
// -dev, a Vault-compatible store with KV v2, token and JWT auth), built once
// per machine from this module (its own go.mod, so its dependencies never
// mix with sekisho's) into a cache directory by internal/baotest.
package openbao

import (
	_ "github.com/openbao/openbao"
)
