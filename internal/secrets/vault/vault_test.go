package vault

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/baotest"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/testutil"
)

// Values the tests store: no error or log line may ever hold one.
var values = []string{"pw-one-7f3a", "pw-two-91c2", "user-b4d8", "single-e5a1", "deleted-0c6d", "destroyed-2b9e"}

// noLeak fails the test when s holds a secret value or one of extra (the
// tokens in play).
func noLeak(t *testing.T, what, s string, extra ...string) {
	t.Helper()
	for _, v := range append(slices.Clone(values), extra...) {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s %q holds a secret value or token", what, s)
		}
	}
}

// newProvider builds a provider for srv with opts (Address filled in),
// logging into a buffer the test checks for leaks at its end.
func newProvider(t *testing.T, srv *baotest.Server, opts Options, tokens ...string) *Provider {
	t.Helper()
	opts.Address = srv.Addr
	logs := &testutil.SyncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noLeak(t, "log", logs.String(), tokens...) })
	return p
}

// putFixtures writes secret/app in two versions, and secrets with one key,
// a number, a deleted and a destroyed version, and a deleted current
// version.
func putFixtures(t *testing.T, srv *baotest.Server) {
	t.Helper()
	m := baotest.KVMount
	srv.Put(t, m, "app", map[string]any{"password": "pw-one-7f3a", "user": "user-b4d8"})
	srv.Put(t, m, "app", map[string]any{"password": "pw-two-91c2", "user": "user-b4d8"})
	srv.Put(t, m, "single", map[string]any{"token": "single-e5a1"})
	srv.Put(t, m, "team/db/port", map[string]any{"port": 5432})
	srv.Put(t, m, "rotated", map[string]any{"v": "deleted-0c6d"})
	srv.Put(t, m, "rotated", map[string]any{"v": "destroyed-2b9e"})
	srv.Put(t, m, "rotated", map[string]any{"v": "pw-one-7f3a"})
	srv.Delete(t, m, "rotated", 1)
	srv.Destroy(t, m, "rotated", 2)
	srv.Put(t, m, "gone", map[string]any{"v": "deleted-0c6d"})
	srv.Delete(t, m, "gone", 1)
}

// TestResolve reads KV v2 secrets from a real OpenBao with a token whose
// policy allows read on secret/data/*: versions, #KEY, single-key
// secrets, and each way a secret can be missing.
func TestResolve(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	srv.Policy(t, "read-all", `path "secret/data/*" { capabilities = ["read"] }`)
	tok := srv.NewToken(t, 0, "read-all")
	p := newProvider(t, srv, Options{Token: tok.Token}, tok.Token)

	const app2 = `{"password":"pw-two-91c2","user":"user-b4d8"}`
	tests := []struct {
		ref      string
		want     string
		notFound bool
		err      string
	}{
		{ref: "sekisho+vault://secret/app#password", want: app2},
		// The answer does not depend on #KEY: the caller selects it, and
		// reports a key the secret lacks.
		{ref: "sekisho+vault://secret/app#passwd", want: app2},
		{ref: "sekisho+vault://secret/app?version=1#password", want: `{"password":"pw-one-7f3a","user":"user-b4d8"}`},
		{ref: "sekisho+vault://secret/single#token", want: `{"token":"single-e5a1"}`},
		{ref: "sekisho+vault://secret/team/db/port#port", want: `{"port":5432}`},
		{ref: "sekisho+vault://secret/rotated#v", want: `{"v":"pw-one-7f3a"}`},
		{ref: "sekisho+vault://secret/single", err: "name the key to use with #KEY"},
		{ref: "sekisho+vault://secret/nosuch#k", notFound: true, err: "no secret secret/nosuch"},
		{ref: "sekisho+vault://secret/app?version=9#password", notFound: true, err: "no version 9 of secret/app"},
		{ref: "sekisho+vault://secret/rotated?version=1#v", notFound: true, err: "version 1 of secret/rotated is deleted"},
		{ref: "sekisho+vault://secret/rotated?version=2#v", notFound: true, err: "version 2 of secret/rotated is destroyed"},
		{ref: "sekisho+vault://secret/gone#v", notFound: true, err: "the current version (1) of secret/gone is deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := p.Resolve(t.Context(), refFor(t, tt.ref))
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got a value, want an error saying %q", tt.err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.ref+": ") || !strings.Contains(msg, tt.err) {
				t.Errorf("error %q; want the reference and %q", msg, tt.err)
			}
			if errors.Is(err, secrets.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v, want %v", !tt.notFound, tt.notFound)
			}
			noLeak(t, "error", msg, tok.Token)
		})
	}
}

// TestPermissionDenied: a token whose policy allows read on secret/app
// only is refused other paths and other mounts with a message naming the
// path to grant; one it may read still resolves.
func TestPermissionDenied(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	tok := srv.ReadToken(t, baotest.KVMount, "app")
	p := newProvider(t, srv, Options{Token: tok.Token}, tok.Token)

	if _, err := p.Resolve(t.Context(), refFor(t, "sekisho+vault://secret/app#user")); err != nil {
		t.Fatalf("allowed path: %v", err)
	}
	for _, ref := range []string{"sekisho+vault://secret/single#token", "sekisho+vault://other/app#user"} {
		_, err := p.Resolve(t.Context(), refFor(t, ref))
		if !errors.Is(err, ErrPermissionDenied) || errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("%s: err %v; want permission denied", ref, err)
		}
		mount, path, _ := strings.Cut(strings.TrimPrefix(ref, "sekisho+vault://"), "/")
		path, _, _ = strings.Cut(path, "#")
		if msg := err.Error(); !strings.HasPrefix(msg, ref+": ") || !strings.Contains(msg, "read on that path") || !strings.Contains(msg, mount+"/data/"+path) {
			t.Errorf("error %q; want the reference and the path to grant", msg)
		}
		noLeak(t, "error", err.Error(), tok.Token)
	}
}

// TestRevokedToken: a token revoked after a first read is refused on the
// next, with permission denied and without the token in the message.
func TestRevokedToken(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	tok := srv.ReadToken(t, baotest.KVMount, "app")
	p := newProvider(t, srv, Options{Token: tok.Token}, tok.Token)
	ref := refFor(t, "sekisho+vault://secret/app#password")
	if _, err := p.Resolve(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	srv.Revoke(t, tok.Accessor)
	_, err := p.Resolve(t.Context(), ref)
	if !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("err %v; want permission denied", err)
	}
	if !strings.Contains(err.Error(), "invalid, expired or revoked") {
		t.Errorf("error %q does not say the token may be revoked", err)
	}
	noLeak(t, "error", err.Error(), tok.Token)
}

// TestTokenFile: the token is read from a file (a Vault Agent sink), once:
// a file rewritten later is not read again; an empty or missing file is an
// error naming the file.
func TestTokenFile(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	tok := srv.ReadToken(t, baotest.KVMount, "app")
	dir := t.TempDir()
	file := testutil.WriteFile(t, dir, "token", []byte(tok.Token+"\n"))
	env := map[string]string{"VAULT_ADDR": srv.Addr, "SEKISHO_VAULT_TOKEN_FILE": file}
	opts := OptionsFromEnv(getenv(env))
	p := newProvider(t, srv, opts, tok.Token)
	ref := refFor(t, "sekisho+vault://secret/app#password")
	if got, err := p.Resolve(t.Context(), ref); err != nil || !strings.Contains(string(got), "pw-two-91c2") {
		t.Fatalf("got %q, %v", got, err)
	}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resolve(t.Context(), ref); err != nil {
		t.Fatalf("the token was read again: %v", err)
	}

	for name, content := range map[string][]byte{"empty": []byte("\n"), "binary": []byte("a\x00b")} {
		path := testutil.WriteFile(t, dir, name, content)
		q := newProvider(t, srv, Options{TokenFile: path})
		_, err := q.Resolve(t.Context(), ref)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s token file: err %v; want one naming %s", name, err, path)
		}
	}
	q := newProvider(t, srv, Options{TokenFile: filepath.Join(dir, "none")})
	if _, err := q.Resolve(t.Context(), ref); err == nil || !strings.Contains(err.Error(), "read the token") {
		t.Errorf("missing token file: err %v", err)
	}
}

// jwtSetup enables JWT auth with a test key and a role "app" allowed to
// read secret/data/*, and writes a service-account-like token for it to a
// file. It returns the file and the token.
func jwtSetup(t *testing.T, srv *baotest.Server, ttl time.Duration) (*baotest.JWT, string, string) {
	t.Helper()
	srv.Policy(t, "read-all", `path "secret/data/*" { capabilities = ["read"] }`)
	j := srv.EnableJWT(t, "jwt", "https://kubernetes.default.svc.cluster.local")
	j.Role(t, "app", "system:serviceaccount:shop:app", "vault", ttl, "read-all")
	jwt := j.Sign(t, "system:serviceaccount:shop:app", "vault")
	file := testutil.WriteFile(t, t.TempDir(), "token", []byte(jwt))
	return j, file, jwt
}

// newAccessors returns the accessors in after that are not in before: the
// tokens created in between, one per login.
func newAccessors(before, after []string) []string {
	var out []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			out = append(out, a)
		}
	}
	return out
}

// TestJWTLoginOnce: with JWT auth, twenty secrets resolved in parallel by
// one provider cost one login: the server holds one new token afterwards.
func TestJWTLoginOnce(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	_, file, jwt := jwtSetup(t, srv, 0)
	env := map[string]string{"BAO_ADDR": srv.Addr, "SEKISHO_VAULT_AUTH": "jwt", "SEKISHO_VAULT_ROLE": "app", "SEKISHO_VAULT_JWT_FILE": file}
	p := newProvider(t, srv, OptionsFromEnv(getenv(env)), jwt)

	before := srv.Accessors(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := refFor(t, "sekisho+vault://secret/app#password")
			if i%2 == 1 {
				ref = refFor(t, "sekisho+vault://secret/single#token")
			}
			if _, err := p.Resolve(context.Background(), ref); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if logins := newAccessors(before, srv.Accessors(t)); len(logins) != 1 {
		t.Errorf("%d logins for 20 secrets; want 1", len(logins))
	}
	// And later secrets reuse the token.
	if _, err := p.Resolve(t.Context(), refFor(t, "sekisho+vault://secret/app?version=1#user")); err != nil {
		t.Fatal(err)
	}
	if logins := newAccessors(before, srv.Accessors(t)); len(logins) != 1 {
		t.Errorf("%d logins after one more secret; want 1", len(logins))
	}
}

// TestJWTLoginRefused: a token for another audience or subject, or an
// unknown role or mount, is refused at login with permission denied, and
// the message holds neither the JWT nor a value.
func TestJWTLoginRefused(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	j, good, _ := jwtSetup(t, srv, 0)
	dir := t.TempDir()
	wrongAud := j.Sign(t, "system:serviceaccount:shop:app", "other")
	wrongSub := j.Sign(t, "system:serviceaccount:shop:intruder", "vault")
	tests := []struct {
		name  string
		opts  Options
		jwt   string
		wants string
	}{
		{"audience", Options{Auth: AuthJWT, Role: "app", JWTFile: testutil.WriteFile(t, dir, "aud", []byte(wrongAud))}, wrongAud, "refused the login"},
		{"subject", Options{Auth: AuthJWT, Role: "app", JWTFile: testutil.WriteFile(t, dir, "sub", []byte(wrongSub))}, wrongSub, "refused the login"},
		{"role", Options{Auth: AuthJWT, Role: "nosuch", JWTFile: good}, "", `as role "nosuch"`},
		{"mount", Options{Auth: AuthJWT, Role: "app", AuthMount: "nosuch", JWTFile: good}, "", "auth/nosuch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProvider(t, srv, tt.opts, tt.jwt)
			_, err := p.Resolve(t.Context(), refFor(t, "sekisho+vault://secret/single#token"))
			if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("err %v; want permission denied saying %q", err, tt.wants)
			}
			if !strings.HasPrefix(err.Error(), "sekisho+vault://secret/single#token: ") {
				t.Errorf("error %q does not name the reference", err)
			}
			noLeak(t, "error", err.Error(), tt.jwt)
		})
	}
}

// TestRenewal: a logged-in token is renewed once two thirds of its
// lifetime have passed (the same token, renewed on the server), not
// before; a token revoked meanwhile cannot be renewed, and the provider
// logs in again instead of failing.
func TestRenewal(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	_, file, jwt := jwtSetup(t, srv, time.Hour)
	p := newProvider(t, srv, Options{Auth: AuthJWT, Role: "app", JWTFile: file}, jwt)
	clock := testutil.NewClock(time.Now())
	setNow(p, clock.Now)
	ref := refFor(t, "sekisho+vault://secret/single#token")
	resolve := func() {
		t.Helper()
		if got, err := p.Resolve(t.Context(), ref); err != nil || string(got) != `{"token":"single-e5a1"}` {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	// The server reports last_renewal_time (Unix seconds) once a token
	// has been renewed.
	renewed := func(accessor string) bool {
		n, ok := srv.LookupAccessor(t, accessor)["last_renewal_time"].(json.Number)
		return ok && n != "0"
	}

	before := srv.Accessors(t)
	resolve()
	logins := newAccessors(before, srv.Accessors(t))
	if len(logins) != 1 {
		t.Fatalf("%d logins; want 1", len(logins))
	}
	first := logins[0]
	clock.Advance(39 * time.Minute) // before two thirds: the token is used as is
	resolve()
	if renewed(first) {
		t.Fatal("renewed before two thirds of its lifetime")
	}
	clock.Advance(2 * time.Minute) // 41 minutes: renewed
	resolve()
	if !renewed(first) {
		t.Fatal("not renewed after two thirds of its lifetime")
	}
	if logins := newAccessors(before, srv.Accessors(t)); len(logins) != 1 {
		t.Fatalf("%d logins after a renewal; want 1", len(logins))
	}

	srv.Revoke(t, first)
	clock.Advance(41 * time.Minute)
	resolve()
	logins = newAccessors(before, srv.Accessors(t))
	if len(logins) != 1 || logins[0] == first {
		t.Fatalf("tokens %v after the revoked one could not be renewed; want one new login", logins)
	}
}

// TestSealed: a sealed server is reported as such.
func TestSealed(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	p := newProvider(t, srv, Options{Token: srv.RootToken}, srv.RootToken)
	srv.Seal(t)
	_, err := p.Resolve(t.Context(), refFor(t, "sekisho+vault://secret/single#token"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "is sealed") {
		t.Fatalf("err %v; want sealed", err)
	}
	noLeak(t, "error", err.Error(), srv.RootToken)
}

// TestServerDown: with OpenBao stopped, a read and a login fail fast with
// "cannot reach" and the address, within the provider's timeout.
func TestServerDown(t *testing.T) {
	srv := baotest.Start(t)
	putFixtures(t, srv)
	_, file, jwt := jwtSetup(t, srv, 0)
	tok := srv.ReadToken(t, baotest.KVMount, "single")
	byToken := newProvider(t, srv, Options{Token: tok.Token}, tok.Token)
	byJWT := newProvider(t, srv, Options{Auth: AuthJWT, Role: "app", JWTFile: file}, jwt)
	srv.Stop()
	for name, p := range map[string]*Provider{"token": byToken, "jwt": byJWT} {
		start := time.Now()
		_, err := p.Resolve(t.Context(), refFor(t, "sekisho+vault://secret/single#token"))
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach "+srv.Addr) {
			t.Errorf("%s: err %v; want cannot reach %s", name, err, srv.Addr)
		}
		if d := time.Since(start); d > DefaultTimeout {
			t.Errorf("%s: took %s", name, d)
		}
		if err != nil {
			noLeak(t, "error", err.Error(), tok.Token, jwt)
		}
	}
}

// TestTLS: a server on https is trusted through BAO_CACERT; without it,
// the system's roots refuse its certificate and nothing is sent.
func TestTLS(t *testing.T) {
	srv := baotest.StartWith(t, baotest.Options{TLS: true})
	putFixtures(t, srv)
	ref := refFor(t, "sekisho+vault://secret/single#token")
	env := map[string]string{"BAO_ADDR": srv.Addr, "BAO_CACERT": srv.CAFile, "BAO_TOKEN": srv.RootToken}
	p := newProvider(t, srv, OptionsFromEnv(getenv(env)), srv.RootToken)
	if got, err := p.Resolve(t.Context(), ref); err != nil || string(got) != `{"token":"single-e5a1"}` {
		t.Fatalf("with the CA: %q, %v", got, err)
	}
	delete(env, "BAO_CACERT")
	q := newProvider(t, srv, OptionsFromEnv(getenv(env)), srv.RootToken)
	_, err := q.Resolve(t.Context(), ref)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v; want a certificate error", err)
	}
	noLeak(t, "error", err.Error(), srv.RootToken)
}

// TestNamespace: with BAO_NAMESPACE the secret is read in that namespace
// (OpenBao and Vault Enterprise keep a mount of the same name per
// namespace); without it, in the root namespace.
func TestNamespace(t *testing.T) {
	srv := baotest.Start(t)
	srv.Write(t, "sys/namespaces/team", nil)
	team := srv.Root.WithNamespace("team")
	if _, err := team.Logical().WriteWithContext(t.Context(), "sys/mounts/secret", map[string]any{"type": "kv", "options": map[string]any{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := team.KVv2("secret").Put(t.Context(), "app", map[string]any{"password": "pw-one-7f3a"}); err != nil {
		t.Fatal(err)
	}
	srv.Put(t, baotest.KVMount, "app", map[string]any{"password": "pw-two-91c2"})
	ref := refFor(t, "sekisho+vault://secret/app#password")
	for ns, want := range map[string]string{"team": "pw-one-7f3a", "": "pw-two-91c2"} {
		env := map[string]string{"BAO_ADDR": srv.Addr, "BAO_TOKEN": srv.RootToken, "BAO_NAMESPACE": ns}
		p := newProvider(t, srv, OptionsFromEnv(getenv(env)), srv.RootToken)
		if got, err := p.Resolve(t.Context(), ref); err != nil || string(got) != `{"password":"`+want+`"}` {
			t.Errorf("namespace %q: %q, %v", ns, got, err)
		}
	}
}
