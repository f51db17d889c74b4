package gateway

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/reqinfo"
)

// serverSpan starts the request's span. The trace context the request
// carries is continued only from a trusted proxy (fwd.FromProxy); anyone
// else's traceparent is ignored and the span starts a new trace.
// Attributes follow the OpenTelemetry HTTP conventions, without the query,
// headers or anything the client authenticates with.
func (g *Gateway) serverSpan(ctx context.Context, r *http.Request, fwd normalize.Forwarded) (context.Context, trace.Span) {
	method := spanMethod(r.Method)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("network.protocol.version", protocolVersion(r)),
	}
	if fwd.Proto != "" {
		attrs = append(attrs, attribute.String("url.scheme", fwd.Proto))
	}
	if h, ok := normalize.Host(fwd.Host); ok {
		attrs = append(attrs, attribute.String("server.address", h))
	}
	if fwd.ClientIP.IsValid() {
		attrs = append(attrs, attribute.String("client.address", fwd.ClientIP.String()))
	}
	if info := reqinfo.From(ctx); info != nil {
		attrs = append(attrs, attribute.String("sekisho.request_id", info.ID))
	}
	name := method
	if method == "_OTHER" {
		name = "HTTP"
	}
	return g.tracer.Server(ctx, name, propagation.HeaderCarrier(r.Header), fwd.FromProxy, attrs...)
}

// endServerSpan records the answer on the request's span and ends it: a
// 5xx is an error of the server span, a 4xx is the client's.
func endServerSpan(span trace.Span, r *http.Request, info *reqinfo.Info) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", info.Status))
	if info.Route != "" {
		span.SetAttributes(attribute.String("sekisho.route", info.Route))
		if m := spanMethod(r.Method); m != "_OTHER" {
			span.SetName(m + " " + info.Route)
		}
	}
	if info.Status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(info.Status))
	}
}

// forwardTraced sends r upstream inside a client span, whose traceparent
// goes upstream in place of any the client sent.
func (g *Gateway) forwardTraced(rec *recorder, r *http.Request, info *reqinfo.Info, upstream http.Handler) {
	ctx, span, h := g.tracer.Client(r.Context(), "upstream", attribute.String("sekisho.route", info.Route))
	defer span.End()
	// The upstream continues this span, never a trace context the client
	// chose: ours replaces theirs, and their tracestate goes unless the
	// trace is a trusted proxy's.
	r.Header["Traceparent"] = []string{h.TraceParent}
	if h.TraceState != "" {
		r.Header["Tracestate"] = []string{h.TraceState}
	} else {
		delete(r.Header, "Tracestate")
	}
	upstream.ServeHTTP(rec, r.WithContext(ctx))
	if !span.IsRecording() {
		return
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if info.Upstream != "" {
		span.SetAttributes(attribute.String("sekisho.upstream", info.Upstream))
	}
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}

// spanMethod is the request method for the span: canonical, or _OTHER for
// a method outside the standard set (the conventions' rule, which keeps a
// client from filling span names with made-up methods).
func spanMethod(m string) string {
	if c, ext, ok := normalize.Method(m); ok && !ext {
		return c
	}
	return "_OTHER"
}

func protocolVersion(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "2"
	case 3:
		return "3"
	}
	if r.ProtoMinor == 0 {
		return "1.0"
	}
	return "1.1"
}
