package decision

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/sekisho/sekisho/internal/tracing"
)

// SetTracer makes the service trace its decisions (nil: off). Call it
// before Start.
func (s *Server) SetTracer(t *tracing.Tracer) { s.tracer = t }

// decisionSpan is the server span of one decision request.
type decisionSpan struct {
	t    *tracing.Tracer
	span trace.Span
	// continued: the asking proxy's trace context was taken up, so the
	// upstream request carries the proxy's own traceparent already.
	continued bool
}

// startSpan starts the span of a decision request. The asking proxy's
// trace context (carrier) is continued only when it is trusted; an
// untrusted peer, refused anyway, gets a span in a trace of its own.
func (s *Server) startSpan(ctx context.Context, dialect, requestID string, carrier propagation.TextMapCarrier, trusted bool) (context.Context, *decisionSpan) {
	continued := trusted && trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, carrier)).IsValid()
	ctx, span := s.tracer.Server(ctx, "decision "+dialect, carrier, trusted,
		attribute.String("sekisho.dialect", dialect), attribute.String("sekisho.request_id", requestID))
	return ctx, &decisionSpan{t: s.tracer, span: span, continued: continued}
}

// verdict records what was decided about the described request, and on an
// allow hands the upstream the decision's traceparent when the proxy sent
// none (the proxy does not trace; the upstream joins sekisho's trace).
func (ds *decisionSpan) verdict(ctx context.Context, d *described, v *verdict) {
	span := ds.span
	if !span.IsRecording() {
		return
	}
	res := &v.res
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", spanMethod(res.Method)),
		attribute.String("sekisho.outcome", res.Outcome.String()),
		attribute.Int("sekisho.status", v.status),
	}
	if res.Host != "" {
		attrs = append(attrs, attribute.String("server.address", res.Host))
	}
	if res.Path.Path != "" {
		attrs = append(attrs, attribute.String("url.path", res.Path.Path))
	}
	if d.clientIP.IsValid() {
		attrs = append(attrs, attribute.String("client.address", d.clientIP.String()))
	}
	if res.RouteName != "" {
		attrs = append(attrs, attribute.String("sekisho.route", res.RouteName))
	}
	decision := "deny"
	if v.status == http.StatusOK {
		decision = "allow"
	}
	attrs = append(attrs, attribute.String("sekisho.decision", decision))
	if res.Decision.Rule != "" {
		attrs = append(attrs, attribute.String("sekisho.rule", res.Decision.Rule))
	}
	span.SetAttributes(attrs...)
	if v.status == http.StatusServiceUnavailable {
		span.SetStatus(codes.Error, res.Reason)
	}
	if v.status == http.StatusOK && !ds.continued && v.set != nil {
		h := ds.t.Headers(ctx)
		v.set["Traceparent"] = []string{h.TraceParent}
		if h.TraceState != "" {
			v.set["Tracestate"] = []string{h.TraceState}
		}
	}
}

// end records the status of the decision answer and ends the span.
func (ds *decisionSpan) end(status int) {
	if ds.span.IsRecording() {
		ds.span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			ds.span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	ds.span.End()
}

// spanMethod is the canonical method, or _OTHER outside the standard set.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return m
	}
	return "_OTHER"
}

// statusWriter remembers the status a decision was answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// grpcCarrier reads the W3C trace context from gRPC metadata (the ext_authz
// call's own trace), falling back to the described request's headers.
type grpcCarrier struct {
	md      metadata.MD
	headers http.Header
}

func (c grpcCarrier) Get(key string) string {
	if vs := c.md.Get(key); len(vs) > 0 {
		return vs[0]
	}
	if c.md.Get("traceparent") != nil {
		return "" // the metadata's context wins whole, with its tracestate or none
	}
	return c.headers.Get(key)
}

func (grpcCarrier) Set(string, string) {}

func (grpcCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
