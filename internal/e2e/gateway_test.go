package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/serve"
)

// quickstart is examples/quickstart.yaml with the ports left open: the
// built-in provider derives its issuer from listen.http, so the port is
// chosen before the file is written.
const quickstart = `
listen:
  http: "127.0.0.1:%d"
  shutdown_timeout: 5s
admin:
  listen: "127.0.0.1:0"
log:
  format: json
providers:
  - name: dev
    builtin:
      users:
        - {email: alice@example.com, name: Alice, password: alice, groups: [admin]}
        - {email: bob@example.com, name: Bob, password: bob, groups: [staff]}
        - {email: carol@example.com, name: Carol, password: carol, groups: [staff], totp_secret: JBSWY3DPEHPK3PXP}
routes:
  - name: public
    match: {path_prefix: /public}
    to: builtin:echo
    public: true
  - name: admin
    match: {path_prefix: /admin}
    to: builtin:echo
    allow: [{groups: [admin]}]
  - name: mfa
    match: {path_prefix: /mfa}
    to: builtin:echo
    allow: [{domains: [example.com]}]
    deny: [{when: "!identity.mfa"}]
  - name: app
    match: {path_prefix: /}
    to: builtin:echo
    allow: [{domains: [example.com]}]
`

// carolTOTP is carol's TOTP secret in quickstart.
const carolTOTP = "JBSWY3DPEHPK3PXP"

// startTimeout bounds the gateway's start, including bcrypt-hashing the
// demo passwords and discovering the built-in provider.
const startTimeout = 20 * time.Second

// gateway is a sekisho serving quickstart on a loopback port.
type gateway struct {
	host string // "127.0.0.1:PORT", the authority the browser uses
}

// url is the absolute address of pathAndQuery on the gateway.
func (g *gateway) url(pathAndQuery string) string {
	return "http://" + g.host + pathAndQuery
}

// startGateway runs serve.Run on quickstart until the test ends, and
// returns once the built-in provider is discovered, so that the first
// browser request gets the login form and not a "try again" page.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "sekisho.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, quickstart, port), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	logs := newLogWatch("OIDC provider discovered")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(ctx, serve.Options{
			ConfigPath: path,
			LogOutput:  logs,
			Started:    func(*serve.Instance) { close(started) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway stopped with: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs)
		}
	})

	deadline := time.After(startTimeout)
	for _, wait := range []struct {
		what string
		ch   <-chan struct{}
	}{{"bind its listeners", started}, {"discover the built-in provider", logs.seen}} {
		select {
		case <-wait.ch:
		case err := <-done:
			t.Fatalf("gateway exited before it could %s: %v", wait.what, err)
		case <-deadline:
			t.Fatalf("gateway did not %s within %s", wait.what, startTimeout)
		}
	}
	return &gateway{host: fmt.Sprintf("127.0.0.1:%d", port)}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logWatch keeps the gateway's JSON log for failure reports and closes
// seen when a record with the awaited message is written: the gateway has
// no other signal that its login provider is ready.
type logWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	next  int // start of the first line not yet looked at
	msg   string
	seen  chan struct{}
	found bool
}

func newLogWatch(msg string) *logWatch {
	return &logWatch{msg: msg, seen: make(chan struct{})}
}

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for !l.found {
		rest := l.buf.Bytes()[l.next:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(rest[:i], &rec) == nil && rec.Msg == l.msg {
			l.found = true
			close(l.seen)
		}
		l.next += i + 1
	}
	return len(p), nil
}

func (l *logWatch) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.buf.String())
}
