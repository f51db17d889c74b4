// Package secrets resolves secret references (internal/secretref) through
// one small interface per store, so `sekisho exec` and the tests treat
// every store alike.
package secrets

import (
	"context"
	"errors"

	"github.com/sekisho/sekisho/internal/secretref"
)

// Provider reads secrets from one store. A provider is built once per
// `sekisho exec` (or per process) and shares its client and credentials
// between references: credentials are fetched once and refreshed ahead of
// expiry, never per secret. It must be safe for concurrent use: references
// are resolved in parallel.
type Provider interface {
	// Resolve returns the secret ref names, whole (the caller selects
	// ref.Key). Errors name the reference and the reason, never a value.
	Resolve(ctx context.Context, ref secretref.Ref) ([]byte, error)
}

// ErrNotFound means the store answered and has no such secret (or version,
// or key): retrying will not help.
var ErrNotFound = errors.New("secret not found")
