package decision

import (
	"context"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// TestDecisionHeaderLimitMatchesGateway: listen.max_header_bytes means on
// the decision listeners what it means on the gateway's: over HTTP/1 the
// request line and headers may take the value plus 4096 bytes (net/http's
// slack), over gRPC the HTTP/2 header list may take the value plus 320
// bytes (net/http's HTTP/2 padding), and more gets refused.
func TestDecisionHeaderLimitMatchesGateway(t *testing.T) {
	const limit = 8 << 10
	f := newFixture(t, Config{}, "")
	httpAddr, grpcAddr := startListeners(t, f, Config{}, &Limits{MaxHeaderBytes: limit})

	request := func(big int) string {
		return "GET /forward-auth HTTP/1.1\r\nHost: d.test\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: gw.test\r\nX-Forwarded-Uri: /open/x\r\n" +
			"X-Big: " + strings.Repeat("a", big) + "\r\nConnection: close\r\n\r\n"
	}
	for _, tt := range []struct {
		name string
		big  int
		want string
	}{
		{"within the limit", limit / 2, "HTTP/1.1 200 "},
		{"over the value, within its slack", limit + 3000, "HTTP/1.1 200 "},
		{"over the value and its slack", limit + 5000, "HTTP/1.1 431 "},
	} {
		if got := answer(t, httpAddr, request(tt.big)); !strings.HasPrefix(got, tt.want) {
			t.Errorf("HTTP/1, %s: %.40q, want %q", tt.name, got, tt.want)
		}
	}

	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	for _, tt := range []struct {
		name string
		big  int
		ok   bool
	}{
		// About 450 bytes of the list are the request's own pseudo-headers
		// and gRPC headers (each with HTTP/2's 32 bytes of overhead).
		{"within the limit", limit / 2, true},
		{"over the value, within HTTP/2's padding", limit - 300, true},
		{"over the value and its padding", limit + 1000, false},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-big", strings.Repeat("a", tt.big))
		_, err := client.Check(ctx, envoyCheck("GET", "gw.test", "/open/x", nil))
		cancel()
		if (err == nil) != tt.ok {
			t.Errorf("gRPC, %s: error %v, want ok=%t", tt.name, err, tt.ok)
		}
	}
}
