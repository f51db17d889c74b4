package decision

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/peer"
)

// envoyHeadersFor is a typical set of headers Envoy sends for a browser or
// API request, with a cached (already verified) JWT.
func envoyHeadersFor(tok string) map[string]string {
	return map[string]string{
		":authority":        "gw.test",
		":path":             "/api1/users/42?expand=1",
		":method":           "GET",
		":scheme":           "https",
		"authorization":     "Bearer " + tok,
		"accept":            "application/json",
		"user-agent":        "curl/8.5.0",
		"x-request-id":      "6b1f0a5e-3f4c-4d3b-9a0e-2f1d2c3b4a59",
		"x-forwarded-proto": "https",
		"x-forwarded-for":   "203.0.113.7",
		"x-envoy-internal":  "true",
	}
}

// BenchmarkGRPCCheck is one allowed Check over a real gRPC connection on
// loopback, from parallel clients (the way Envoy's workers call it).
func BenchmarkGRPCCheck(b *testing.B) {
	f := benchFixture(b)
	req := envoyCheck("GET", "gw.test", "/api1/users/42?expand=1", envoyHeadersFor(f.tokens.admin))
	if resp, err := f.grpc.Check(context.Background(), req); err != nil || resp.GetStatus().GetCode() != 0 {
		b.Fatalf("not allowed: %v %v", resp, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.grpc.Check(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCheck is the Check handler itself, without the transport:
// header conversion, the engine, and building the response.
func BenchmarkCheck(b *testing.B) {
	f := benchFixture(b)
	srv := authzServer{f.dec}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
	req := envoyCheck("GET", "gw.test", "/api1/users/42?expand=1", envoyHeadersFor(f.tokens.admin))
	if resp, _ := srv.Check(ctx, req); resp.GetStatus().GetCode() != 0 {
		b.Fatalf("not allowed: %v", resp)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, _ = srv.Check(ctx, req)
	}
}

// nginxRequest is an auth_request subrequest as the example nginx.conf
// sends it.
func nginxRequest(tok string) *http.Request {
	r := httptest.NewRequest("GET", "/nginx", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("X-Original-URI", "/api1/users/42?expand=1")
	r.Header.Set("X-Original-Method", "GET")
	r.Header.Set("X-Forwarded-Host", "gw.test")
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "curl/8.5.0")
	return r
}

// BenchmarkNginxDecision is one allowed /nginx decision through the HTTP
// handler, in-process.
func BenchmarkNginxDecision(b *testing.B) {
	f := benchFixture(b)
	h := f.dec.Handler()
	r := nginxRequest(f.tokens.admin)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		b.Fatalf("not allowed: %d %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	dw := discardWriter{http.Header{}}
	for b.Loop() {
		h.ServeHTTP(dw, r)
		clear(dw.h)
	}
}

// BenchmarkNginxDecisionLoopback is the same over real HTTP/1.1 keep-alive
// connections on loopback, from parallel clients.
func BenchmarkNginxDecisionLoopback(b *testing.B) {
	f := benchFixture(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := f.srv.URL + "/nginx"
	tmpl := nginxRequest(f.tokens.admin)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header = tmpl.Header
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// benchFixture is the test fixture logging at the production default
// (info), where allows are not logged.
func benchFixture(b *testing.B) *fixture {
	f := newFixture(b, Config{}, "")
	f.dec.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	return f
}

// discardWriter is a ResponseWriter that keeps nothing but a header map.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}
