package decision

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// startListeners starts dec's real listeners (HTTP and gRPC) with limits
// and returns their addresses.
func startListeners(t *testing.T, f *fixture, cfg Config, limits *Limits) (httpAddr, grpcAddr string) {
	t.Helper()
	cfg.Listen, cfg.GRPC = "127.0.0.1:0", "127.0.0.1:0"
	dec, err := New(cfg, func() *snapshot.Snapshot { return f.snap }, f.dec.log)
	if err != nil {
		t.Fatal(err)
	}
	if limits != nil {
		dec.SetLimits(*limits)
	}
	if err := dec.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dec.Shutdown(context.Background()) })
	return dec.Addrs()
}

// hugeRequest is a decision request whose headers are far over the
// default header limit.
func hugeRequest() string {
	return "GET /forward-auth HTTP/1.1\r\nHost: d.test\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: gw.test\r\nX-Forwarded-Uri: /open/x\r\n" +
		"X-Big: " + strings.Repeat("a", 4*listen.DefaultMaxHeaderBytes) + "\r\n\r\n"
}

// answer writes req on a new connection and returns what comes back until
// the server closes it or 5 s pass.
func answer(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, req) }() // may fail once the server closes
	b, err := io.ReadAll(bufio.NewReader(c))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open after 5s; read %q", b)
	}
	return string(b)
}

// TestUntrustedPeerClosedAtAccept: with trust by address, a peer outside
// trusted_proxies has its connection closed before a request is read, on
// both listeners: no 431 for an oversized request, no answer at all.
func TestUntrustedPeerClosedAtAccept(t *testing.T) {
	f := newFixture(t, Config{}, "")
	httpAddr, grpcAddr := startListeners(t, f, Config{TrustedProxies: []string{"10.0.0.0/8"}}, nil)

	for name, req := range map[string]string{
		"huge headers":    hugeRequest(),
		"a valid request": "GET /forward-auth HTTP/1.1\r\nHost: d.test\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: gw.test\r\nX-Forwarded-Uri: /open/x\r\n\r\n",
	} {
		if got := answer(t, httpAddr, req); got != "" {
			t.Errorf("%s: an untrusted peer got an answer: %.80q", name, got)
		}
	}
	if !strings.Contains(f.logs.String(), "decision connection from an untrusted peer refused") {
		t.Errorf("no log line about the refused connection:\n%s", f.logs.String())
	}

	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, envoyCheck("GET", "gw.test", "/open/x", nil))
	if err == nil {
		t.Fatalf("an untrusted gRPC peer got an answer: %v", resp)
	}
}

// TestDecisionListenerLimits: a trusted peer is held to the gateway's
// limits: oversized headers get 431, and a slow header is cut off after
// the read-header timeout.
func TestDecisionListenerLimits(t *testing.T) {
	f := newFixture(t, Config{}, "")
	httpAddr, _ := startListeners(t, f, Config{}, &Limits{ReadHeaderTimeout: 200 * time.Millisecond})

	got := answer(t, httpAddr, hugeRequest())
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("oversized headers from a trusted peer: %.80q, want 431", got)
	}

	// A trusted peer still gets decisions.
	resp, _ := raw(t, httpAddr, "GET", "/forward-auth", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/open/x")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a trusted peer got %d", resp.StatusCode)
	}

	start := time.Now()
	if got := answer(t, httpAddr, "GET /forward-auth HTTP/1.1\r\nHost: d.test\r\n"); strings.Contains(got, " 200 ") {
		t.Errorf("an unfinished request was answered: %q", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a slow header held the connection for %v, read_header_timeout is 200ms", d)
	}
}
