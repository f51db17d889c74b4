// Package tracing sends OpenTelemetry traces of the request pipeline to an
// OTLP collector, when the configuration's tracing section or the standard
// OTEL_* variables ask for it. Off, there is no SDK at all: the stages hold
// a nil *Tracer and skip every tracing call behind a nil check, so a
// process that does not trace pays nothing per request.
//
// Incoming W3C trace context (traceparent, tracestate) is continued only
// from trusted proxies; anyone else starts a new trace, so a client can
// neither force sampling nor choose the IDs sekisho's spans carry.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Protocols of the OTLP exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// DefaultServiceName is service.name when neither the section nor
// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES names the service.
const DefaultServiceName = "sekisho"

// Config is the `tracing:` section of the configuration file. A field left
// empty falls back to the standard OTEL_* variable that sets it, then to
// the OpenTelemetry default.
type Config struct {
	// Endpoint is the collector's URL: http://host:4318 (plain) or
	// https://host:4318 (TLS, system roots). For http/protobuf a URL
	// without a path sends to /v1/traces.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc or http/protobuf (the default).
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share of new traces recorded, 0 to 1 (default 1).
	// A trusted proxy's sampling decision is followed.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is service.name (default sekisho).
	ServiceName string `yaml:"service_name"`
	// Headers are sent with every export (a collector's API key).
	Headers map[string]string `yaml:"headers"`
}

// Provider owns the SDK: the exporter, the batching processor and the
// tracer the stages use. Shutdown flushes the spans still buffered.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer *Tracer
	// Protocol and Source say what was started, for the start log line.
	Protocol, Source string
}

// Start builds the provider that cfg (the file's section, nil when absent)
// and the OTEL_* variables ask for, or returns nil when tracing is off:
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off always;
// otherwise a section turns it on, and without one
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT does.
// Nothing is dialed here: the exporter connects when it first sends.
func Start(ctx context.Context, cfg *Config, log *slog.Logger) (*Provider, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return nil, nil
	}
	source := "tracing section"
	if cfg == nil {
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
		cfg, source = &Config{}, "OTEL_* environment"
	}
	protocol := cfg.Protocol
	if protocol == "" {
		protocol = envProtocol()
	}
	exp, err := exporter(ctx, cfg, protocol)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := newResource(ctx, cfg.ServiceName)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	if cfg.SampleRatio != nil {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*cfg.SampleRatio))))
	} else if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	} // else the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
	tp := sdktrace.NewTracerProvider(opts...)
	if log != nil {
		// Export failures (collector down) are logged, not fatal: the
		// requests go on, their spans are dropped.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: spans could not be exported", "error", err)
		}))
	}
	return &Provider{
		tp:       tp,
		tracer:   newTracer(tp.Tracer("github.com/sekisho/sekisho")),
		Protocol: protocol,
		Source:   source,
	}, nil
}

// Tracer is what the request path uses; nil when p is nil (tracing off).
func (p *Provider) Tracer() *Tracer {
	if p == nil {
		return nil
	}
	return p.tracer
}

// Shutdown sends the spans still buffered and stops the exporter, within
// ctx. It is safe on a nil Provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// ForceFlush sends the buffered spans now (tests, and a drain that wants
// them out before it waits on anything else).
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.ForceFlush(ctx)
}

// envProtocol is the exporter protocol the OTEL_* variables name, the
// traces-specific one first; http/protobuf by default, as the
// specification says.
func envProtocol() string {
	for _, k := range [...]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return ProtocolHTTP
}

// exporter builds the OTLP exporter. What the section sets overrides the
// OTEL_EXPORTER_OTLP_* variables, which the exporter libraries read for
// everything the section leaves out (endpoint, headers, TLS files,
// compression, timeout).
func exporter(ctx context.Context, cfg *Config, protocol string) (*otlptrace.Exporter, error) {
	switch protocol {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(httpTracesURL(cfg.Endpoint)))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("protocol %q: use %s or %s", protocol, ProtocolGRPC, ProtocolHTTP)
}

// httpTracesURL is the URL OTLP/HTTP spans are posted to: the endpoint as
// given, or with /v1/traces when it has no path (the collector's base URL,
// as OTEL_EXPORTER_OTLP_ENDPOINT is read).
func httpTracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

// newResource describes the process: service.name sekisho unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise, and the
// section's service_name over both.
func newResource(ctx context.Context, serviceName string) (*resource.Resource, error) {
	opts := []resource.Option{
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithFromEnv(),
	}
	if serviceName != "" {
		opts = append(opts, resource.WithAttributes(attribute.String("service.name", serviceName)))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil && res == nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	// A partial resource (one bad OTEL_RESOURCE_ATTRIBUTES entry) is used.
	return res, nil
}

// Tracer starts sekisho's spans. A nil *Tracer is tracing off: the stages
// check for nil before calling anything here.
type Tracer struct {
	t    trace.Tracer
	prop propagation.TraceContext
}

func newTracer(t trace.Tracer) *Tracer { return &Tracer{t: t} }

// NewTracer wraps an SDK tracer (tests with an in-memory exporter).
func NewTracer(tp trace.TracerProvider) *Tracer {
	return newTracer(tp.Tracer("github.com/sekisho/sekisho"))
}

// Server starts the server span of one request. The W3C trace context in
// carrier is continued only when trusted (the peer is a trusted proxy);
// otherwise the span starts a new trace, whatever the client sent.
func (t *Tracer) Server(ctx context.Context, name string, carrier propagation.TextMapCarrier, trusted bool, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...)}
	if trusted && carrier != nil {
		ctx = t.prop.Extract(ctx, carrier)
	}
	if !trace.SpanContextFromContext(ctx).IsRemote() {
		opts = append(opts, trace.WithNewRoot())
	}
	return t.t.Start(ctx, name, opts...)
}

// Start starts an internal child span of the one in ctx.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.t.Start(ctx, name, trace.WithAttributes(attrs...))
}

// Client starts a client span (the upstream call) and returns the W3C
// headers that carry it to the upstream.
func (t *Tracer) Client(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span, Headers) {
	ctx, span := t.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, span, t.Headers(ctx)
}

// Headers are the W3C trace context headers of a span.
type Headers struct {
	TraceParent, TraceState string
}

// Headers returns the traceparent and tracestate of the span in ctx.
func (t *Tracer) Headers(ctx context.Context) Headers {
	var c headerPair
	t.prop.Inject(ctx, &c)
	return Headers{TraceParent: c.traceparent, TraceState: c.tracestate}
}

// headerPair is a TextMapCarrier holding the two W3C headers without a map.
type headerPair struct{ traceparent, tracestate string }

func (c *headerPair) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}

func (c *headerPair) Set(key, value string) {
	switch key {
	case "traceparent":
		c.traceparent = value
	case "tracestate":
		c.tracestate = value
	}
}

func (c *headerPair) Keys() []string { return []string{"traceparent", "tracestate"} }
