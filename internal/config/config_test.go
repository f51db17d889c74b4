package config

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/proxy"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/testutil"
)

const minimal = `
listen: {http: "127.0.0.1:0"}
routes:
  - name: echo
    match: {path_prefix: /}
    to: builtin:echo
    public: true
`

func parse(t *testing.T, src string) (*snapshot.Snapshot, error) {
	t.Helper()
	s, _, err := compile(t, src)
	return s, err
}

// compile is parse that also returns the decoded file.
func compile(t *testing.T, src string) (*snapshot.Snapshot, *File, error) {
	t.Helper()
	s, f, err := Compile([]byte(src), "test.yaml", "/etc/sekisho", Options{})
	if s != nil {
		t.Cleanup(s.Close)
	}
	return s, f, err
}

func TestParseMinimal(t *testing.T) {
	s, f, err := compile(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if s.Routes.Len() != 1 {
		t.Fatalf("routes = %d, want 1", s.Routes.Len())
	}
	rt, name, ok := s.Routes.Match("example.com", "/x", "GET", nil)
	if !ok || name != "echo" || !rt.Public || rt.Upstream == nil {
		t.Fatalf("match = %v %q %v", rt, name, ok)
	}
	if f.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("admin default = %q", f.Admin.Listen)
	}
	if !*f.Log.Access {
		t.Error("access log should default to on")
	}
}

func TestWeightedUpstreams(t *testing.T) {
	_, err := parse(t, `
listen: {http: ":0"}
routes:
  - name: app
    match: {host: app.example.com}
    to:
      - {url: "http://127.0.0.1:1", weight: 90}
      - {url: "http://127.0.0.1:2", weight: 10}
      - http://127.0.0.1:3
    public: true
`)
	if err != nil {
		t.Fatal(err)
	}
}

func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir, abs := t.TempDir(), t.TempDir()
	leaf := testutil.NewCA(t).Server(t, "localhost")
	testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	keyFile := testutil.WriteFile(t, abs, "tls.key", leaf.KeyPEM)
	path := filepath.Join(dir, "sekisho.yaml")
	src := "listen: {http: ':0', https: ':0', tls: {cert_file: tls.crt, key_file: " + keyFile + "}}\n" + strings.TrimPrefix(minimal, "\nlisten: {http: \"127.0.0.1:0\"}")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s, f, err := LoadFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := f.Listen.TLS.CertFile, filepath.Join(dir, "tls.crt"); got != want {
		t.Errorf("cert_file = %q, want %q", got, want)
	}
	if got := f.Listen.TLS.KeyFile; got != keyFile {
		t.Errorf("key_file = %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), Options{}); err == nil {
		t.Fatal("missing file accepted")
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileBytes+10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big, Options{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "abc", 0}, {"lisen", "listen", 1}, {"kitten", "sitting", 3}, {"", "ab", 2}} {
		if got := editDistance(tt.a, tt.b); got != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.d)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the config parser: it must never panic,
// and anything it accepts must have compiled a route table.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("listen: {http: ':0'}\nroutes: [{name: a, match: {host: '*.x.com', path_prefix: /a}, to: [{url: 'http://a:1', weight: 3}], public: true}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("routes: [{to: {url: 1}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml", "/", Options{})
		if err != nil {
			return
		}
		defer s.Close()
		if s.Routes == nil || s.Trust == nil || s.Strip == nil {
			t.Fatalf("accepted config with missing parts: %+v", s)
		}
	})
}

// TestCarryOver checks that a reload keeps the JWT verifier and the login
// service when their settings did not change, that the old snapshot then no
// longer closes them, and that a failed reload takes nothing away.
func TestCarryOver(t *testing.T) {
	pool, closes := newReusePool()
	opts := Options{Reuse: pool}
	src := `
listen: {http: "127.0.0.1:18999"}
jwt: [{issuer: "https://127.0.0.1:1", audiences: [x]}]
providers: [{name: dev, builtin: {users: [{email: a@example.com, password: x}]}}]
routes:
  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [x]}]}
`
	a, err := Parse([]byte(src), "a.yaml", ".", opts)
	if err != nil {
		t.Fatal(err)
	}
	held := pool.Len()
	bad := src + "  - {name: b, match: {path: /b}, to: builtin:echo, alow: []}\n"
	if _, err := Parse([]byte(bad), "bad.yaml", ".", opts); err == nil {
		t.Fatal("bad config accepted")
	}
	if pool.Len() != held || len(closes.take()) != 0 {
		t.Fatal("a failed reload closed or took parts of the running snapshot")
	}
	b, err := Parse([]byte(src+"  - {name: b, match: {path: /b}, to: builtin:echo, public: true}\n"), "b.yaml", ".", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Authn.JWT != a.Authn.JWT || b.Login != a.Login {
		t.Fatal("unchanged JWT and login settings were rebuilt instead of carried over")
	}
	a.Close() // must not close what b uses
	if got := closes.take(); len(got) != 0 {
		t.Fatalf("closing the old snapshot closed %d parts the new one uses", len(got))
	}
	if b.Login.Service == nil {
		t.Fatal("login gone")
	}
	c, err := Parse([]byte(strings.Replace(src, "audiences: [x]", "audiences: [y]", 1)), "c.yaml", ".", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Authn.JWT == b.Authn.JWT {
		t.Fatal("a changed jwt section reused the old verifier")
	}
	if c.Login != b.Login {
		t.Fatal("unchanged login settings were rebuilt")
	}
}

// TestPoolsCarriedOver: a reload keeps the pool of a route whose upstream
// settings did not change (warm connections, health state), builds a new
// one when they did, and the old snapshot's Close leaves carried pools alone.
func TestPoolsCarriedOver(t *testing.T) {
	pool, closes := newReusePool()
	opts := Options{Reuse: pool}
	src := `
listen: {http: "127.0.0.1:0"}
routes:
  - {name: a, match: {path: /a}, to: "http://127.0.0.1:1", public: true}
  - {name: b, match: {path: /b}, to: "http://127.0.0.1:2", public: true}
`
	a, err := Parse([]byte(src), "a.yaml", ".", opts)
	if err != nil {
		t.Fatal(err)
	}
	upstream := func(s *snapshot.Snapshot, path string) http.Handler {
		rt, _, _ := s.Routes.Match("x", path, "GET", nil)
		return rt.Upstream
	}
	if _, err := Parse([]byte(src+"  - {name: c, match: {path: /c}, to: bad, public: true}\n"), "bad.yaml", ".", opts); err == nil {
		t.Fatal("bad config accepted")
	}
	if pool.Len() != 2 || len(closes.take()) != 0 {
		t.Fatalf("a failed reload took or closed pools of the running snapshot: %d left", pool.Len())
	}
	b, err := Parse([]byte(strings.Replace(src, "127.0.0.1:2", "127.0.0.1:3", 1)), "b.yaml", ".", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if upstream(b, "/a") != upstream(a, "/a") {
		t.Error("route a's unchanged pool was rebuilt")
	}
	if upstream(b, "/b") == upstream(a, "/b") {
		t.Error("route b's changed pool was reused")
	}
	a.Close()
	if got := closes.take(); len(got) != 1 || got[0] != any(upstream(a, "/b")) {
		t.Errorf("closing the old snapshot closed %d pools, want only route b's old one", len(got))
	}
}

// TestUpstreamTransport: upstream_transport picks the pool's HTTP/1.1
// client (lean unless standard is named), and changing it on a reload
// builds a new pool.
func TestUpstreamTransport(t *testing.T) {
	pool, _ := newReusePool()
	load := func(transport string) *proxy.Pool {
		t.Helper()
		src := `
listen: {http: "127.0.0.1:0"}
routes:
  - {name: a, match: {path: /a}, to: "http://127.0.0.1:1", public: true` + transport + `}
`
		s, err := Parse([]byte(src), "a.yaml", ".", Options{Reuse: pool})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		rt, _, _ := s.Routes.Match("x", "/a", "GET", nil)
		return rt.Upstream
	}
	def, lean, std := load(""), load(", upstream_transport: lean"), load(", upstream_transport: standard")
	if !def.Lean() || !lean.Lean() || std.Lean() {
		t.Errorf("lean path: default %v, lean %v, standard %v; want true, true, false", def.Lean(), lean.Lean(), std.Lean())
	}
	if std == lean {
		t.Error("changing upstream_transport kept the pool")
	}
}

// TestCarryOverFollowsSecretFiles: a reload whose settings are unchanged
// but whose session key or HMAC secret file was rewritten (a rotation)
// builds the login service and the JWT verifier anew, and the secret files
// are watched so that the rotation reloads by itself.
func TestCarryOverFollowsSecretFiles(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "session.key")
	hmacFile := filepath.Join(dir, "hmac.secret")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(keyFile, strings.Repeat("ab", 32)+"\n")
	write(hmacFile, strings.Repeat("s", 32))
	src := `
listen: {http: "127.0.0.1:18998"}
jwt: [{issuer: "https://127.0.0.1:1", audiences: [x], algorithms: [HS256], hmac_secret_file: hmac.secret}]
providers: [{name: dev, builtin: {users: [{email: a@example.com, password: x}]}}]
session: {secret_file: session.key}
routes:
  - {name: a, match: {path: /a}, to: builtin:echo, allow: [{groups: [x]}]}
`
	pool, _ := newReusePool()
	load := func() *snapshot.Snapshot {
		t.Helper()
		s, err := Parse([]byte(src), filepath.Join(dir, "c.yaml"), dir, Options{Reuse: pool})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a := load()
	if got, want := a.WatchFiles, []string{keyFile, hmacFile}; !slices.Equal(got, want) {
		t.Errorf("WatchFiles = %q, want %q", got, want)
	}
	b := load()
	if b.Login != a.Login || b.Authn.JWT != a.Authn.JWT {
		t.Fatal("unchanged settings and files were rebuilt")
	}
	write(keyFile, strings.Repeat("cd", 32)+"\n"+strings.Repeat("ab", 32)+"\n")
	write(hmacFile, strings.Repeat("t", 32))
	c := load()
	if c.Login == b.Login {
		t.Error("a rotated session key kept the login service built with the old one")
	}
	if c.Authn.JWT == b.Authn.JWT {
		t.Error("a rotated HMAC secret kept the verifier built with the old one")
	}
}

func TestSessionSecureCookies(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		name   string
		f      File
		secure bool
	}{
		{"plain listener", File{Listen: Listen{HTTP: ":80"}}, false},
		{"https listener", File{Listen: Listen{HTTP: ":80", HTTPS: ":443"}}, true},
		{"behind a TLS proxy", File{Listen: Listen{HTTP: ":80"}, Session: Session{Secure: &yes}}, true},
		{"explicitly off", File{Listen: Listen{HTTPS: ":443"}, Session: Session{Secure: &no}}, false},
	} {
		if got := sessionSecure(&tt.f); got != tt.secure {
			t.Errorf("%s: sessionSecure = %v, want %v", tt.name, got, tt.secure)
		}
	}
}

func TestRouteCannotMatchForgeableHeaders(t *testing.T) {
	for _, name := range []string{"X-Forwarded-Email", "x_forwarded_user", "X-Auth-Request-Groups", "X-Api-Key"} {
		src := "listen: {http: ':0'}\ncredentials: {header: X-Api-Key}\nroutes:\n  - {name: a, match: {path: /a, headers: {" + name + ": x}}, to: builtin:echo, public: true}\n"
		if _, err := parse(t, src); err == nil || !strings.Contains(err.Error(), "cannot match on it") {
			t.Errorf("route matching on %s: %v", name, err)
		}
	}
	if _, err := parse(t, "listen: {http: ':0'}\nroutes:\n  - {name: a, match: {path: /a, headers: {X-Team: blue}}, to: builtin:echo, public: true}\n"); err != nil {
		t.Errorf("an ordinary header condition was refused: %v", err)
	}
}

// TestRouteCannotMatchForwardingHeaders: a route condition on a header
// through which a client describes its own address, host or path is refused
// at check time (the proxy stage strips them; the address is
// request.client_ip).
func TestRouteCannotMatchForwardingHeaders(t *testing.T) {
	for _, name := range []string{"X-Forwarded-For", "x_real_ip", "Forwarded", "X-Forwarded-Uri", "X-Original-URL", "X-Forwarded-Host", "X-Request-Id"} {
		src := "listen: {http: ':0'}\nroutes:\n  - {name: a, match: {path: /a, headers: {" + name + ": 10.0.0.1}}, to: builtin:echo, public: true}\n"
		if _, err := parse(t, src); err == nil || !strings.Contains(err.Error(), "cannot match on it") || !strings.Contains(err.Error(), "request.client_ip") {
			t.Errorf("route matching on %s: %v", name, err)
		}
	}
}
