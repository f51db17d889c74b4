// Package configtest builds running snapshots from YAML for the tests of the
// stages that run on them (engine, gateway, decision, the commands), so each
// package's tests do not carry their own copy of "parse, close at the end,
// wait for the JWT keys". It is test support: production code never imports
// it (internal/deptest checks that).
//
// A test makes one Env, writes its config with the Env's issuer URL and
// token files in it, and compiles it:
//
//	env := configtest.New(t)
//	snap := env.Snapshot(fmt.Sprintf("jwt: [{issuer: %s, audiences: [api]}]\n...", env.Issuer().URL))
//	req.Header.Set("Authorization", "Bearer "+env.Token("groups", []string{"dev"}))
//
// Everything an Env starts or compiles is closed by the test's cleanup.
package configtest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/testutil"
)

// ReadyTimeout bounds how long Snapshot waits for the JWT keys and login
// providers of a snapshot: they are served by the test's own issuer on
// loopback, so reaching it means something is broken.
const ReadyTimeout = 10 * time.Second

// Env is what one test compiles its snapshots with, wired the way serve
// wires them: a logger, metrics fed by the JWT verifier and the proxy, and
// one reuse pool, so that a reload in a test shares unchanged parts as a
// reload in serve does.
type Env struct {
	t testing.TB
	// Dir is a temporary directory; relative paths in the config resolve
	// against it.
	Dir string
	// Logs holds what the snapshots (and whoever else uses Log) logged,
	// as JSON lines.
	Logs *testutil.SyncBuffer
	// Level is Log's level, info unless the test sets another.
	Level *slog.LevelVar
	Log   *slog.Logger
	// Metrics counts JWT key refreshes, unknown key IDs and upstream
	// errors of the snapshots.
	Metrics *telemetry.Metrics
	// Reuse is the pool every snapshot of the Env takes its parts from.
	Reuse *reuse.Pool

	issuer func() *jwttest.Issuer
}

// New makes an Env whose parts the test's cleanup closes.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{
		t:       t,
		Dir:     t.TempDir(),
		Logs:    &testutil.SyncBuffer{},
		Level:   &slog.LevelVar{},
		Metrics: telemetry.NewMetrics(),
		Reuse:   reuse.NewPool(reuse.Options{}),
	}
	e.Log = slog.New(slog.NewJSONHandler(e.Logs, &slog.HandlerOptions{Level: e.Level}))
	// Started on first use: most configs name no issuer.
	e.issuer = sync.OnceValue(func() *jwttest.Issuer { return jwttest.NewIssuer(t) })
	return e
}

// Issuer is a real OpenID issuer on loopback (discovery and JWKS), started
// on the first call, for the config's jwt: section.
func (e *Env) Issuer() *jwttest.Issuer { return e.issuer() }

// Token mints a JWT from Issuer: by default for an admin at example.com
// with audience api, changed by the claim/value pairs kv (see
// jwttest.Issuer.Claims).
func (e *Env) Token(kv ...any) string {
	e.t.Helper()
	return e.Issuer().Token(e.t, kv...)
}

// TokenFile writes an API token file with one token, stored as its hash as
// in production, and returns its path for api_tokens.file.
func (e *Env) TokenFile(name, token string, groups ...string) string {
	e.t.Helper()
	return testutil.TokenFile(e.t, name, token, groups...)
}

// WriteFile writes data to name in Dir and returns its path.
func (e *Env) WriteFile(name string, data []byte) string {
	e.t.Helper()
	return testutil.WriteFile(e.t, e.Dir, name, data)
}

// Options are the compile options of the Env's snapshots.
func (e *Env) Options() config.Options {
	return config.Options{
		Logger:          e.Log,
		OnUpstreamError: e.Metrics.UpstreamError,
		OnJWTUnknownKID: e.Metrics.JWTUnknownKID,
		OnJWKSRefresh:   e.Metrics.JWKSRefresh,
		OnTokenCache:    e.Metrics.TokenCache,
		OnSessionCache:  e.Metrics.SessionCache,
		Reuse:           e.Reuse,
	}
}

// Compile compiles src (named test.yaml in problems) with the Env's
// options and returns what config.Parse returns; the test's cleanup closes
// an accepted snapshot. For tests of refused configs and of reloads.
func (e *Env) Compile(src string) (*snapshot.Snapshot, error) {
	e.t.Helper()
	s, err := config.Parse([]byte(src), "test.yaml", e.Dir, e.Options())
	if s != nil {
		e.t.Cleanup(s.Close)
	}
	return s, err
}

// Snapshot compiles src, fails the test if it is refused, and waits until
// the snapshot is ready to serve (the JWT verifier has every issuer's keys,
// the login providers are discovered), as serve does before it swaps a
// snapshot in.
func (e *Env) Snapshot(src string) *snapshot.Snapshot {
	e.t.Helper()
	s, err := e.Compile(src)
	if err != nil {
		e.t.Fatalf("compile the test config: %v", err)
	}
	WaitReady(e.t, s)
	return s
}

// WaitReady waits up to ReadyTimeout for s to be ready to serve, and fails
// the test otherwise.
func WaitReady(t testing.TB, s *snapshot.Snapshot) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if !s.WaitReady(ctx) {
		t.Fatal("the snapshot never became ready: JWT keys or login providers not loaded")
	}
}
