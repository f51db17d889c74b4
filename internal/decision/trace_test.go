package decision

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sekisho/sekisho/internal/tracing"
	"github.com/sekisho/sekisho/internal/tracing/tracingtest"
)

const (
	proxyTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	proxySpanID  = "00f067aa0ba902b7"
	proxyParent  = "00-" + proxyTraceID + "-" + proxySpanID + "-01"
	metaTraceID  = "0af7651916cd43dd8448eb211c80319c"
	metaSpanID   = "b7ad6b7169203331"
	metaParent   = "00-" + metaTraceID + "-" + metaSpanID + "-01"
)

func newTracedFixture(t *testing.T) (*fixture, *tracing.Provider, *tracingtest.Collector) {
	t.Helper()
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	c := tracingtest.NewGRPC(t)
	p, err := tracing.Start(context.Background(), &tracing.Config{Endpoint: c.GRPCURL, Protocol: tracing.ProtocolGRPC}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	f := newFixtureWith(t, Config{}, "", func(s *Server) { s.SetTracer(p.Tracer()) })
	return f, p, c
}

// decisionTrace flushes and waits for the decision span called name in
// the trace it belongs to, with its phases.
func decisionTrace(t *testing.T, p *tracing.Provider, c *tracingtest.Collector, name, requestID string) map[string]tracingtest.Span {
	t.Helper()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got map[string]tracingtest.Span
	c.Wait(t, 10*time.Second, func(spans []tracingtest.Span) bool {
		for _, s := range spans {
			if s.Name == name && s.Attrs["sekisho.request_id"] == requestID {
				got = tracingtest.Trace(spans, s.TraceID)
				return true
			}
		}
		return false
	})
	return got
}

// checkDecisionSpans checks the decision span and its phase children.
func checkDecisionSpans(t *testing.T, spans map[string]tracingtest.Span, name, traceID, parent, decision, route string) tracingtest.Span {
	t.Helper()
	d := spans[name]
	if d.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("%s kind %v", name, d.Kind)
	}
	if traceID != "" && (d.TraceID != traceID || d.ParentSpanID != parent) {
		t.Errorf("%s trace %s parent %q, want %s %q", name, d.TraceID, d.ParentSpanID, traceID, parent)
	}
	if traceID == "" && d.ParentSpanID != "" {
		t.Errorf("%s has parent %q, want a new trace", name, d.ParentSpanID)
	}
	if d.Attrs["sekisho.decision"] != decision || d.Attrs["sekisho.route"] != route {
		t.Errorf("%s attributes %v, want decision %s on route %s", name, d.Attrs, decision, route)
	}
	for _, phase := range []string{"route", "authenticate", "authorize"} {
		if s, ok := spans[phase]; !ok || s.ParentSpanID != d.SpanID {
			t.Errorf("%s phase: %+v, want a child of %s", phase, s, name)
		}
	}
	return d
}

// TestTracingHTTPDialects: a decision over HTTP is a server span with the
// phases as children, continuing the asking (trusted) proxy's trace; when
// the proxy sends no trace context, the allow hands the upstream the
// decision's traceparent instead.
func TestTracingHTTPDialects(t *testing.T) {
	f, p, c := newTracedFixture(t)
	// Envoy HTTP ext_authz with the proxy's traceparent: continued, and the
	// upstream keeps the proxy's own.
	resp, _ := raw(t, f.addr(), "GET", "/envoy/api1/x", append(bearer(f.tokens.admin), "Traceparent", proxyParent, "X-Request-Id", "envoy-http-1")...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Traceparent"); got != "" {
		t.Errorf("allow answer carries traceparent %q although the proxy traces the request itself", got)
	}
	spans := decisionTrace(t, p, c, "decision envoy-http", "envoy-http-1")
	checkDecisionSpans(t, spans, "decision envoy-http", proxyTraceID, proxySpanID, "allow", "api1")

	// forward-auth without trace context: a new trace, reflected upstream.
	resp, _ = raw(t, f.addr(), "GET", "/forward-auth", append(bearer(f.tokens.admin),
		"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/api1/x", "X-Request-Id", "fa-1")...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	spans = decisionTrace(t, p, c, "decision forward-auth", "fa-1")
	d := checkDecisionSpans(t, spans, "decision forward-auth", "", "", "allow", "api1")
	if want := "00-" + d.TraceID + "-" + d.SpanID + "-01"; resp.Header.Get("Traceparent") != want {
		t.Errorf("allow answer traceparent %q, want the decision span's %q", resp.Header.Get("Traceparent"), want)
	}

	// A denial is recorded, with no traceparent for an upstream.
	resp, _ = raw(t, f.addr(), "GET", "/envoy/api2/x", append(bearer(f.tokens.ops), "X-Request-Id", "deny-1")...)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Traceparent") != "" {
		t.Fatalf("status %d, traceparent %q", resp.StatusCode, resp.Header.Get("Traceparent"))
	}
	spans = decisionTrace(t, p, c, "decision envoy-http", "deny-1")
	if s := spans["decision envoy-http"]; s.Attrs["sekisho.decision"] != "deny" || s.Attrs["http.response.status_code"] != "403" {
		t.Errorf("denial span attributes %v", s.Attrs)
	}
	tracingtest.AssertNoSecret(t, c.Spans(), f.tokens.admin, f.tokens.ops)
}

// TestTracingUntrustedPeer: a peer outside the trusted proxies is refused,
// and its traceparent is not continued.
func TestTracingUntrustedPeer(t *testing.T) {
	f, p, c := newTracedFixture(t)
	r := httptest.NewRequest(http.MethodGet, "/envoy/api1/x", nil)
	r.RemoteAddr = "192.0.2.9:4444"
	r.Header.Set("Traceparent", proxyParent)
	r.Header.Set("X-Request-Id", "untrusted-1")
	w := httptest.NewRecorder()
	f.dec.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d", w.Code)
	}
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := c.WaitNamed(t, 10*time.Second, "decision envoy-http")
	if s.TraceID == proxyTraceID || s.ParentSpanID != "" {
		t.Errorf("untrusted peer's trace was continued: %+v", s)
	}
}

// TestTracingGRPC: an ext_authz Check is a server span continuing the
// trace of the gRPC call's metadata (Envoy's own ext_authz span) first,
// else the described request's traceparent; with neither, the allow sets
// the decision's traceparent on the upstream request.
func TestTracingGRPC(t *testing.T) {
	f, p, c := newTracedFixture(t)
	for _, tt := range []struct {
		name           string
		meta, header   string
		trace, parent  string
		wantUpstreamTP bool
	}{
		{"metadata", metaParent, proxyParent, metaTraceID, metaSpanID, false},
		{"headers", "", proxyParent, proxyTraceID, proxySpanID, false},
		{"none", "", "", "", "", true},
	} {
		// The described request's tracestate belongs to its traceparent:
		// it is taken up with it, never mixed into the metadata's trace.
		wantState := map[string]string{"headers": "vendor=hdr"}[tt.name]
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{"authorization": "Bearer " + f.tokens.admin, "x-request-id": "grpc-" + tt.name}
			if tt.header != "" {
				headers["traceparent"], headers["tracestate"] = tt.header, "vendor=hdr"
			}
			ctx := t.Context()
			if tt.meta != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tt.meta)
			}
			resp, err := f.grpc.Check(ctx, envoyCheck("GET", "gw.test", "/api1/x", headers))
			if err != nil || resp.GetStatus().GetCode() != 0 {
				t.Fatalf("%v %v", resp, err)
			}
			spans := decisionTrace(t, p, c, "decision envoy-grpc", "grpc-"+tt.name)
			d := checkDecisionSpans(t, spans, "decision envoy-grpc", tt.trace, tt.parent, "allow", "api1")
			if d.TraceState != wantState {
				t.Errorf("decision span tracestate %q, want %q", d.TraceState, wantState)
			}
			tp, _ := headerOf(resp.GetOkResponse().GetHeaders(), "traceparent")
			if want := "00-" + d.TraceID + "-" + d.SpanID + "-01"; tt.wantUpstreamTP && tp != want {
				t.Errorf("upstream traceparent %q, want %q", tp, want)
			}
			if !tt.wantUpstreamTP && tp != "" {
				t.Errorf("upstream traceparent %q replaces the proxy's own", tp)
			}
		})
	}
	tracingtest.AssertNoSecret(t, c.Spans(), f.tokens.admin)
}
