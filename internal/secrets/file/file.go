// Package file is the store of `sekisho+file:///PATH` references: a file
// on the local file system, such as a secret a volume mounts. It reads
// nothing from the network, so a program whose references are all files
// starts without any store's credentials.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
)

// DefaultMaxSize bounds the file read when Options.MaxSize is zero: a
// secret is small, and a reference to /dev/zero must not fill the memory.
const DefaultMaxSize = 1 << 20

// Options configure the store.
type Options struct {
	// MaxSize is the largest file read, in bytes; DefaultMaxSize if zero.
	MaxSize int64
}

// OptionsFromEnv returns the options: the file store reads no
// environment.
func OptionsFromEnv(func(string) string) Options { return Options{} }

// Provider reads files. It is safe for concurrent use.
type Provider struct {
	max int64
}

// New returns the file store.
func New(_ context.Context, opts Options) (*Provider, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	return &Provider{max: opts.MaxSize}, nil
}

// Resolve reads the file ref.Path names, whole. A missing file is
// secrets.ErrNotFound.
func (p *Provider) Resolve(_ context.Context, ref secretref.Ref) ([]byte, error) {
	if ref.Scheme != secretref.File {
		return nil, fmt.Errorf("%s: not a file reference", ref.Raw)
	}
	f, err := os.Open(ref.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: no file %s", ref.Raw, secrets.ErrNotFound, ref.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Raw, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s: %s is a directory", ref.Raw, ref.Path)
	}
	data, err := io.ReadAll(io.LimitReader(f, p.max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", ref.Raw, ref.Path, err)
	}
	if int64(len(data)) > p.max {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", ref.Raw, ref.Path, p.max)
	}
	return data, nil
}
