package configtest

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/engine"
)

const routes = `
routes:
  - {name: api, match: {path_prefix: /api}, to: builtin:echo, allow: [{groups: [admin]}, {tokens: [ci-bot]}]}
`

// TestSnapshotVerifiesTokens: a snapshot built from YAML naming the Env's
// issuer and a token file accepts the Env's JWTs and the API token, and
// its JWT key fetch is counted in the Env's metrics.
func TestSnapshotVerifiesTokens(t *testing.T) {
	e := New(t)
	const ci = "skt_configtest-token-for-the-ci-bot-0123456789"
	snap := e.Snapshot(fmt.Sprintf("listen: {http: '127.0.0.1:0'}\njwt: [{issuer: %s, audiences: [api]}]\napi_tokens: {file: %s}\n%s",
		e.Issuer().URL, e.TokenFile("ci-bot", ci, "ci"), routes))
	for _, tt := range []struct {
		name, token string
		want        engine.Outcome
	}{
		{"admin JWT", e.Token(), engine.Allowed},
		{"dev JWT", e.Token("groups", []string{"dev"}), engine.Forbidden},
		{"API token", ci, engine.Allowed},
		{"no credential", "", engine.Unauthenticated},
	} {
		r := httptest.NewRequest("GET", "/api/x", nil)
		if tt.token != "" {
			r.Header.Set("Authorization", "Bearer "+tt.token)
		}
		if res := engine.Evaluate(context.Background(), snap, r, engine.Options{}); res.Outcome != tt.want {
			t.Errorf("%s: %v (%s), want %v", tt.name, res.Outcome, res.Reason, tt.want)
		}
	}
	rec := httptest.NewRecorder()
	e.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "jwks_refresh") {
		t.Errorf("the key fetch is not in the Env's metrics:\n%s", rec.Body.String())
	}
}

// TestCompileRefused: Compile hands back config.Parse's problems.
func TestCompileRefused(t *testing.T) {
	e := New(t)
	s, err := e.Compile("listen: {http: ':0'}\nroutes: [{name: a, match: {path: /a}, to: builtin:echo}]\n")
	var cerr *config.Error
	if s != nil || !errors.As(err, &cerr) || !strings.Contains(err.Error(), "test.yaml:2: routes[0]: route \"a\" has no allow rule") {
		t.Fatalf("Compile = %v, %v; want the problem located in test.yaml", s, err)
	}
}

// TestCleanupClosesSnapshots: when the test ends, its snapshots are closed
// and give back every part they took from the Env's pool.
func TestCleanupClosesSnapshots(t *testing.T) {
	var e *Env
	t.Run("inner", func(t *testing.T) {
		e = New(t)
		e.Snapshot(fmt.Sprintf("listen: {http: '127.0.0.1:0'}\njwt: [{issuer: %s, audiences: [api]}]\n%s", e.Issuer().URL, routes))
		if e.Reuse.Len() == 0 {
			t.Fatal("the snapshot holds nothing from the pool; the test cannot see a release")
		}
	})
	if n := e.Reuse.Len(); n != 0 {
		t.Errorf("after the test, the pool still holds %d parts", n)
	}
}

// TestRelativePathsResolveInDir: a relative file name in the config is a
// file in the Env's Dir.
func TestRelativePathsResolveInDir(t *testing.T) {
	e := New(t)
	src := "listen: {http: ':0'}\napi_tokens: {file: tokens.yaml}\n" + routes
	if _, err := e.Compile(src); err == nil || !strings.Contains(err.Error(), "tokens.yaml") {
		t.Fatalf("missing token file: %v", err)
	}
	e.WriteFile("tokens.yaml", []byte("[]\n"))
	if _, err := e.Compile(src); err != nil {
		t.Fatal(err)
	}
}
