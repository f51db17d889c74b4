package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sekisho/sekisho/internal/secretref"
)

// DefaultTimeout bounds a whole Resolve when Resolver.Timeout is zero: a
// store that hangs must not keep the program from failing (and being
// restarted) for ever.
const DefaultTimeout = 30 * time.Second

// DefaultParallel is how many secrets a Resolver fetches at once when
// Resolver.Parallel is zero.
const DefaultParallel = 16

// Providers returns the provider of a scheme; stores.Set.Provider is one.
type Providers func(ctx context.Context, scheme secretref.Scheme) (Provider, error)

// Resolver resolves many references at once: in parallel, each distinct
// secret fetched once however many references select keys of it, all
// within one timeout.
type Resolver struct {
	Providers Providers
	// Timeout bounds the whole Resolve; DefaultTimeout if zero.
	Timeout time.Duration
	// Parallel bounds the fetches in flight; DefaultParallel if zero.
	Parallel int
}

// Error is the failure of one reference. Its message names the reference
// and the reason, never a value.
type Error struct {
	Ref secretref.Ref
	Err error
}

func (e *Error) Error() string {
	msg := e.Err.Error()
	if strings.Contains(msg, e.Ref.Raw) { // providers name the reference themselves
		return msg
	}
	return e.Ref.Raw + ": " + msg
}

func (e *Error) Unwrap() error { return e.Err }

// fetchKey identifies one fetch: references that differ only in #KEY or
// destination share it.
type fetchKey struct {
	scheme                       secretref.Scheme
	path, version, stage, region string
}

type fetch struct {
	ref  secretref.Ref // the first reference that asked, whose Raw errors name
	data []byte
	err  error
}

// Resolve returns values[i] for refs[i], or errs[i] when it failed; errs
// is nil when every reference resolved. A Ref with a Key gets that key of
// the JSON object the store holds.
func (r Resolver) Resolve(ctx context.Context, refs []secretref.Ref) (values [][]byte, errs []error) {
	timeout, parallel := r.Timeout, r.Parallel
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fetches := map[fetchKey]*fetch{}
	var order []*fetch
	for _, ref := range refs {
		k := fetchKey{ref.Scheme, ref.Path, ref.Version, ref.Stage, ref.Region}
		if fetches[k] == nil {
			fetches[k] = &fetch{ref: ref}
			order = append(order, fetches[k])
		}
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, f := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				f.err = timedOut(ctx, timeout)
				return
			}
			f.data, f.err = r.fetch(ctx, f.ref)
			if f.err != nil && ctx.Err() != nil {
				f.err = fmt.Errorf("%w (%v)", timedOut(ctx, timeout), f.err)
			}
		}()
	}
	wg.Wait()

	values = make([][]byte, len(refs))
	var failed bool
	errs = make([]error, len(refs))
	for i, ref := range refs {
		f := fetches[fetchKey{ref.Scheme, ref.Path, ref.Version, ref.Stage, ref.Region}]
		var err error
		if f.err != nil {
			err = f.err
		} else {
			values[i], err = SelectKey(f.data, ref.Key)
		}
		if err != nil {
			errs[i], failed = &Error{Ref: ref, Err: err}, true
		}
	}
	if !failed {
		errs = nil
	}
	return values, errs
}

func timedOut(ctx context.Context, timeout time.Duration) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("not resolved within %v", timeout)
	}
	return fmt.Errorf("not resolved: %w", context.Cause(ctx))
}

func (r Resolver) fetch(ctx context.Context, ref secretref.Ref) ([]byte, error) {
	p, err := r.Providers(ctx, ref.Scheme)
	if err != nil {
		return nil, err
	}
	data, err := p.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// SelectKey returns the top-level key of the JSON object data, or data
// itself when key is "". A string value is returned without its quotes;
// any other value as its JSON text. A secret that is not a JSON object, or
// has no such key, is an error; the message never quotes the secret
// (encoding/json's syntax errors would).
func SelectKey(data []byte, key string) ([]byte, error) {
	if key == "" {
		return data, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("#%s: the secret is not a JSON object", key)
	}
	raw, ok := obj[key]
	if !ok {
		return nil, fmt.Errorf("#%s: %w: the JSON object has no key %q", key, ErrNotFound, key)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("#%s: the value is not a valid JSON string", key)
		}
		return []byte(s), nil
	}
	return raw, nil
}
