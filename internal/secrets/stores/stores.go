// Package stores maps each reference scheme to its store's constructor and
// builds a store only when a reference names it, once per process: a
// program whose references are all files never loads AWS credentials or
// reaches a Kubernetes API server.
package stores

import (
	"context"
	"fmt"
	"sync"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/aws"
	"github.com/sekisho/sekisho/internal/secrets/file"
	"github.com/sekisho/sekisho/internal/secrets/gcp"
	"github.com/sekisho/sekisho/internal/secrets/kube"
	"github.com/sekisho/sekisho/internal/secrets/vault"
)

// Constructor builds a store from the environment (getenv).
type Constructor func(ctx context.Context, getenv func(string) string) (secrets.Provider, error)

// constructors has one line per store. A constructor returning a typed
// nil pointer with its error is handled by Set.
var constructors = map[secretref.Scheme]Constructor{
	secretref.File: func(ctx context.Context, getenv func(string) string) (secrets.Provider, error) {
		return nilIfErr(file.New(ctx, file.OptionsFromEnv(getenv)))
	},
	secretref.Kubernetes: func(ctx context.Context, getenv func(string) string) (secrets.Provider, error) {
		return nilIfErr(kube.New(ctx, kube.OptionsFromEnv(getenv)))
	},
	secretref.Vault: func(ctx context.Context, getenv func(string) string) (secrets.Provider, error) {
		return nilIfErr(vault.New(ctx, vault.OptionsFromEnv(getenv)))
	},
	// One AWS store serves Secrets Manager and Parameter Store (storeOf),
	// so both share one credentials cache and one STS exchange.
	secretref.AWSSecretsManager: func(ctx context.Context, getenv func(string) string) (secrets.Provider, error) {
		return nilIfErr(aws.New(ctx, aws.OptionsFromEnv(getenv)))
	},
	secretref.GCPSecretManager: func(ctx context.Context, getenv func(string) string) (secrets.Provider, error) {
		return nilIfErr(gcp.New(ctx, gcp.OptionsFromEnv(getenv)))
	},
}

// storeOf is the store behind a scheme: the scheme itself, except that
// both AWS schemes are the one AWS store.
func storeOf(scheme secretref.Scheme) secretref.Scheme {
	if scheme == secretref.AWSParameterStore {
		return secretref.AWSSecretsManager
	}
	return scheme
}

// nilIfErr turns a constructor's (*P, error) into (secrets.Provider,
// error) without the non-nil interface holding a nil pointer.
func nilIfErr[P secrets.Provider](p P, err error) (secrets.Provider, error) {
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Set is the stores of one process, built on first use.
type Set struct {
	getenv       func(string) string
	constructors map[secretref.Scheme]Constructor

	mu    sync.Mutex
	built map[secretref.Scheme]*entry
}

type entry struct {
	once sync.Once
	p    secrets.Provider
	err  error
}

// New returns a Set that builds stores from the environment getenv reads
// (os.Getenv in sekisho exec).
func New(getenv func(string) string) *Set {
	return &Set{getenv: getenv, constructors: constructors, built: map[secretref.Scheme]*entry{}}
}

// NewWith is New with other constructors, for tests.
func NewWith(getenv func(string) string, cs map[secretref.Scheme]Constructor) *Set {
	return &Set{getenv: getenv, constructors: cs, built: map[secretref.Scheme]*entry{}}
}

// Provider returns the store of scheme, building it on the first call
// (with that call's ctx); later calls, concurrent or not, share the store
// or its construction error. It has the signature of secrets.Providers.
func (s *Set) Provider(ctx context.Context, scheme secretref.Scheme) (secrets.Provider, error) {
	scheme = storeOf(scheme)
	s.mu.Lock()
	e := s.built[scheme]
	if e == nil {
		e = &entry{}
		s.built[scheme] = e
	}
	s.mu.Unlock()
	e.once.Do(func() {
		c, ok := s.constructors[scheme]
		if !ok {
			e.err = fmt.Errorf("the %s store is not part of this build of sekisho", scheme)
			return
		}
		e.p, e.err = c(ctx, s.getenv)
		if e.err != nil {
			e.err = fmt.Errorf("%s store: %w", scheme, e.err)
		}
	})
	return e.p, e.err
}

// Built reports which stores have been built, for tests that check a store
// is built only when a reference names it.
func (s *Set) Built() []secretref.Scheme {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []secretref.Scheme
	for _, sc := range secretref.Schemes {
		if _, ok := s.built[sc]; ok {
			out = append(out, sc)
		}
	}
	return out
}
