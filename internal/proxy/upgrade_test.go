package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestWebSocket(t *testing.T) {
	upgrader := websocket.Upgrader{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(kind, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	gw := gateway(t, newPool(t, backends(t, up.URL), Options{Timeout: time.Second}))

	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(gw.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through proxy: %v (response %v)", err, resp)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"one", "two"} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != "echo: "+msg {
			t.Fatalf("read %q, %v; want %q", got, err, "echo: "+msg)
		}
	}
}

// TestGRPCOverH2C runs a real grpc-go health service on an h2c upstream and
// calls it with a real grpc-go client through the pool, served over TLS with
// HTTP/2 as the gateway listener would.
func TestGRPCOverH2C(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("sekisho.test", healthpb.HealthCheckResponse_SERVING)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	front := httptest.NewUnstartedServer(withInfo(newPool(t, backends(t, "h2c://"+lis.Addr().String()), Options{})))
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)

	roots := x509.NewCertPool()
	roots.AddCert(front.Certificate())
	conn, err := grpc.NewClient(front.Listener.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "sekisho.test"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check = %v, %v; want SERVING", resp, err)
		}
	})
	t.Run("status in trailers", func(t *testing.T) {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.service"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("Check unknown service: %v, want NotFound (carried in trailers)", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "sekisho.test"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("first update %v, %v; want SERVING", first, err)
		}
		// The change is only sent after the first update arrived, so the
		// second Recv proves messages stream through before the call ends.
		hs.SetServingStatus("sekisho.test", healthpb.HealthCheckResponse_NOT_SERVING)
		second, err := stream.Recv()
		if err != nil || second.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("second update %v, %v; want NOT_SERVING", second, err)
		}
	})
}
