package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/tracing"
)

// discardWriter is a ResponseWriter that keeps nothing, so a benchmark
// measures the gateway and not a recorder's buffer.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// benchGateway is a gateway on a public route and a route allowed to a
// JWT group, both answered by the built-in echo upstream, and a token for
// the second.
func benchGateway(b *testing.B) (*Gateway, string) {
	b.Helper()
	env := configtest.New(b)
	snap := env.Snapshot(fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
trusted_proxies: [10.9.0.0/16]
jwt:
  - issuer: %s
    audiences: [api]
    claims: {username: email}
routes:
  - name: open
    match: {path_prefix: /open}
    to: builtin:echo
    public: true
  - name: api
    match: {path_prefix: /api}
    to: builtin:echo
    allow: [{groups: [admin]}]
`, env.Issuer().URL))
	gw := New(slog.New(slog.DiscardHandler), telemetry.NewMetrics(), false)
	gw.Swap(snap)
	return gw, env.Token()
}

// runGateway serves r through gw b.N times; each request is a fresh clone,
// since the pipeline rewrites the request it is given.
func runGateway(b *testing.B, gw http.Handler, r *http.Request) {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		gw.ServeHTTP(w, r.Clone(ctx))
	}
}

// BenchmarkGateway is one request through the whole gateway pipeline
// (normalize, route, authenticate, authorize, forward to the in-process
// echo upstream), on a public route and on a JWT-protected one, with
// tracing off (the baseline: off must cost nothing) and on.
func BenchmarkGateway(b *testing.B) {
	gw, token := benchGateway(b)
	open := httptest.NewRequest(http.MethodGet, "/open/x", nil)
	open.RemoteAddr = "192.0.2.1:1234"
	api := httptest.NewRequest(http.MethodGet, "/api/users/42", nil)
	api.RemoteAddr = "192.0.2.1:1234"
	api.Header.Set("Authorization", "Bearer "+token)
	b.Run("public", func(b *testing.B) { runGateway(b, gw, open) })
	b.Run("jwt", func(b *testing.B) { runGateway(b, gw, api) })
	// What tracing on costs: every span recorded (no export in the loop).
	gw.SetTracer(tracing.NewTracer(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))))
	b.Run("jwt-traced", func(b *testing.B) { runGateway(b, gw, api) })
	// Tracing on, the request not sampled (sample_ratio 0).
	gw.SetTracer(tracing.NewTracer(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))))
	b.Run("jwt-unsampled", func(b *testing.B) { runGateway(b, gw, api) })
}
