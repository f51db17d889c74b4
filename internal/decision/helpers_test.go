package decision

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/testutil"
)

const ciToken = "skt_decision-test-token-for-the-ci-bot-0123456789"

// testRoutes are shared by the gateway and every decision dialect. The
// upstreams are only used by the gateway.
const testRoutes = `
routes:
  - name: api1
    match: {path_prefix: /api1}
    to: builtin:echo
    allow: [{groups: [admin]}, {tokens: [ci-bot]}]
  - name: api2
    match: {path_prefix: /api2}
    to: builtin:echo
    allow: [{groups: [dev]}]
  - name: files
    match: {path_prefix: /files}
    to: builtin:echo
    allow_encoded_slash: true
    allow: [{groups: [admin]}]
  - name: reads
    match: {path_prefix: /ro, methods: [GET, HEAD]}
    to: builtin:echo
    allow: [{groups: [dev]}]
  - name: board-admin
    match: {path_prefix: /board, methods: [POST, PUT, PATCH, DELETE]}
    to: builtin:echo
    allow: [{groups: [admin]}]
  - name: board
    match: {path_prefix: /board}
    to: builtin:echo
    public: true
  - name: dav
    match: {path_prefix: /dav}
    to: builtin:echo
    allow_extension_methods: true
    allow: [{groups: [dev]}]
  - name: forms-delete
    match: {path_prefix: /forms, methods: [DELETE]}
    to: builtin:echo
    allow_method_override: true
    allow: [{groups: [admin]}]
  - name: forms
    match: {path_prefix: /forms}
    to: builtin:echo
    allow_method_override: true
    allow: [{groups: [dev], methods: [GET, POST, PUT]}, {groups: [admin]}]
  - name: pass
    match: {path_prefix: /pass}
    to: builtin:echo
    pass_credentials: true
    allow: [{groups: [admin]}]
  - name: api
    match: {path_prefix: /api}
    to: builtin:echo
    api: true
    allow: [{groups: [admin]}]
  - name: office
    match: {path_prefix: /office}
    to: builtin:echo
    allow: [{groups: [admin], when: "request.client_ip == '203.0.113.7'"}]
  - name: open
    match: {path_prefix: /open}
    to: builtin:echo
    public: true
  - name: app
    match: {host: app.example.com}
    to: builtin:echo
    allow: [{emails: [alice@example.com]}]
`

// tokens are credentials with known decisions on testRoutes.
type tokens struct {
	admin, dev, ops, expired string
}

type fixture struct {
	iss    *jwttest.Issuer
	snap   *snapshot.Snapshot
	dec    *Server
	srv    *httptest.Server // the HTTP decision endpoints
	grpc   authv3.AuthorizationClient
	logs   *testutil.SyncBuffer
	tokens tokens
}

// snapshotYAML is a config with a real JWT issuer and an API token file.
func snapshotYAML(t testing.TB, iss *jwttest.Issuer, extra string) (string, string) {
	t.Helper()
	file := testutil.TokenFile(t, "ci-bot", ciToken, "ci")
	dir := filepath.Dir(file)
	return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - issuer: %s
    audiences: [api]
    claims: {username: email}
api_tokens: {file: %s}
%s
%s`, iss.URL, file, extra, testRoutes), dir
}

// newFixture compiles testRoutes (plus extra top-level config), starts the
// HTTP decision endpoints on httptest and the gRPC service on a loopback
// listener, and waits for the issuer's keys.
func newFixture(t testing.TB, cfg Config, extra string) *fixture {
	t.Helper()
	return newFixtureWith(t, cfg, extra, nil)
}

// newFixtureWith is newFixture with setup run on the server before it
// serves (SetTracer).
func newFixtureWith(t testing.TB, cfg Config, extra string, setup func(*Server)) *fixture {
	t.Helper()
	env := configtest.New(t)
	env.Level.Set(slog.LevelDebug)
	iss := env.Issuer()
	src, _ := snapshotYAML(t, iss, extra)
	snap := env.Snapshot(src)
	if cfg.Listen == "" && cfg.GRPC == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	dec, err := New(cfg, func() *snapshot.Snapshot { return snap }, env.Log)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(dec)
	}
	f := &fixture{iss: iss, snap: snap, dec: dec, logs: env.Logs}
	f.srv = httptest.NewServer(dec.Handler())
	t.Cleanup(f.srv.Close)
	f.grpc = startGRPC(t, dec)
	f.tokens = tokens{
		admin:   iss.Token(t),
		dev:     iss.Token(t, "groups", []string{"dev"}, "email", "dave@example.com"),
		ops:     iss.Token(t, "groups", []string{"ops"}, "email", "olga@example.com"),
		expired: iss.Token(t, "exp", time.Now().Add(-time.Hour).Unix(), "iat", time.Now().Add(-2*time.Hour).Unix()),
	}
	return f
}

// startGRPC serves dec's ext_authz service on a loopback listener and
// returns a client for it, the way Envoy would connect.
func startGRPC(t testing.TB, dec *Server) authv3.AuthorizationClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	dec.RegisterGRPC(g)
	go func() { _ = g.Serve(ln) }()
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop() })
	return authv3.NewAuthorizationClient(conn)
}

// raw sends one request with a request-target written as is (no client
// cleaning) and header lines in the given order, and returns the response
// with its body read.
func raw(t testing.TB, addr, method, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	hasHost := false
	for i := 0; i+1 < len(hdr); i += 2 {
		hasHost = hasHost || strings.EqualFold(hdr[i], "Host")
		b.WriteString(hdr[i] + ": " + hdr[i+1] + "\r\n")
	}
	if !hasHost {
		b.WriteString("Host: decision.test\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func (f *fixture) addr() string { return f.srv.Listener.Addr().String() }

// bearer is the Authorization header pair for tok ("" for none).
func bearer(tok string) []string {
	if tok == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + tok}
}

// fakeLogin is a LoginStarter that records what it was asked.
type fakeLogin struct {
	mu             sync.Mutex
	returnTo, host string
}

func (l *fakeLogin) LoginURL(returnTo, host string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.returnTo, l.host = returnTo, host
	if strings.Contains(returnTo, "evil.example") {
		return "", false
	}
	return "https://login.example.com/start?rd=" + returnTo, true
}

func (l *fakeLogin) asked() (string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.returnTo, l.host
}
