package tracing_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sekisho/sekisho/internal/tracing"
	"github.com/sekisho/sekisho/internal/tracing/tracingtest"
)

const wait = 10 * time.Second

// clearEnv makes a test independent of the OTEL_* variables of the
// machine it runs on.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func start(t *testing.T, cfg *tracing.Config) *tracing.Provider {
	t.Helper()
	p, err := tracing.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// oneSpan records a server span and flushes it.
func oneSpan(t *testing.T, p *tracing.Provider, name string) {
	t.Helper()
	_, span := p.Tracer().Server(context.Background(), name, nil, false)
	span.End()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func ratio(f float64) *float64 { return &f }

// TestSectionExportsOverBothProtocols: the tracing section sends spans to
// a real OTLP receiver over OTLP/HTTP protobuf and over gRPC, with the
// configured service name and export headers.
func TestSectionExportsOverBothProtocols(t *testing.T) {
	clearEnv(t)
	httpC, grpcC := tracingtest.NewHTTP(t), tracingtest.NewGRPC(t)
	for _, tt := range []struct {
		name string
		cfg  tracing.Config
		c    *tracingtest.Collector
	}{
		{"http", tracing.Config{Endpoint: httpC.URL, ServiceName: "edge", Headers: map[string]string{"X-Api-Key": "k1"}}, httpC},
		{"grpc", tracing.Config{Endpoint: grpcC.GRPCURL, Protocol: tracing.ProtocolGRPC, ServiceName: "edge"}, grpcC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, &tt.cfg)
			oneSpan(t, p, "span-"+tt.name)
			s := tt.c.WaitNamed(t, wait, "span-"+tt.name)
			if s.Resource["service.name"] != "edge" {
				t.Errorf("service.name = %q, want edge", s.Resource["service.name"])
			}
			if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("kind = %v, want server", s.Kind)
			}
			if tt.c == httpC && httpC.Header("X-Api-Key") != "k1" {
				t.Errorf("export header X-Api-Key = %q, want k1", httpC.Header("X-Api-Key"))
			}
		})
	}
}

// TestEnvironment: without a section the OTEL_* variables turn tracing on
// and shape it; OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none turn it
// off even with a section; nothing set is off.
func TestEnvironment(t *testing.T) {
	t.Run("off without section or endpoint", func(t *testing.T) {
		clearEnv(t)
		if p := start(t, nil); p != nil || p.Tracer() != nil {
			t.Fatal("tracing started with nothing asking for it")
		}
	})
	for _, k := range []string{"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none"} {
		t.Run(k, func(t *testing.T) {
			clearEnv(t)
			name, val, _ := cut(k)
			t.Setenv(name, val)
			if p := start(t, &tracing.Config{Endpoint: "http://127.0.0.1:1"}); p != nil {
				t.Fatal("tracing started although " + k)
			}
		})
	}
	t.Run("endpoint, service, resource and protocol from the environment", func(t *testing.T) {
		clearEnv(t)
		c := tracingtest.NewGRPC(t)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.GRPCURL)
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
		t.Setenv("OTEL_SERVICE_NAME", "from-env")
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
		p := start(t, nil)
		if p == nil || p.Source != "OTEL_* environment" || p.Protocol != tracing.ProtocolGRPC {
			t.Fatalf("provider %+v, want one configured by the environment over grpc", p)
		}
		oneSpan(t, p, "env")
		s := c.WaitNamed(t, wait, "env")
		if s.Resource["service.name"] != "from-env" || s.Resource["deployment.environment.name"] != "test" {
			t.Errorf("resource %v", s.Resource)
		}
	})
	t.Run("traces endpoint over http, sampler off", func(t *testing.T) {
		clearEnv(t)
		c := tracingtest.NewHTTP(t)
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c.URL+"/v1/traces")
		t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
		p := start(t, nil)
		if p == nil {
			t.Fatal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT did not turn tracing on")
		}
		oneSpan(t, p, "dropped")
		t.Setenv("OTEL_TRACES_SAMPLER", "")
		p2 := start(t, nil)
		oneSpan(t, p2, "kept")
		c.WaitNamed(t, wait, "kept")
		for _, s := range c.Spans() {
			if s.Name == "dropped" {
				t.Error("OTEL_TRACES_SAMPLER=always_off was not followed")
			}
		}
	})
	t.Run("section over environment", func(t *testing.T) {
		clearEnv(t)
		c := tracingtest.NewHTTP(t)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		t.Setenv("OTEL_SERVICE_NAME", "from-env")
		p := start(t, &tracing.Config{Endpoint: c.URL, ServiceName: "from-file", SampleRatio: ratio(1)})
		oneSpan(t, p, "file")
		if s := c.WaitNamed(t, wait, "file"); s.Resource["service.name"] != "from-file" {
			t.Errorf("service.name = %q, want the section's", s.Resource["service.name"])
		}
	})
}

// TestSampleRatioZero: sample_ratio 0 records no new trace, but a trusted
// proxy's sampled parent is followed.
func TestSampleRatioZero(t *testing.T) {
	clearEnv(t)
	c := tracingtest.NewHTTP(t)
	p := start(t, &tracing.Config{Endpoint: c.URL, SampleRatio: ratio(0)})
	oneSpan(t, p, "new-trace")
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	_, span := p.Tracer().Server(context.Background(), "continued", propagation.HeaderCarrier(h), true)
	span.End()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := c.WaitNamed(t, wait, "continued")
	if s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("continued span %s/%s, want the proxy's trace and parent", s.TraceID, s.ParentSpanID)
	}
	for _, s := range c.Spans() {
		if s.Name == "new-trace" {
			t.Error("sample_ratio 0 recorded a new trace")
		}
	}
}

// TestServerTrust: a trusted peer's traceparent is continued; an untrusted
// one's starts a new trace, even when it asks for sampling.
func TestServerTrust(t *testing.T) {
	clearEnv(t)
	c := tracingtest.NewHTTP(t)
	p := start(t, &tracing.Config{Endpoint: c.URL})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, trusted := range []bool{true, false} {
		h := http.Header{"Traceparent": {tp}, "Tracestate": {"vendor=x"}}
		ctx, span := p.Tracer().Server(context.Background(), "trusted="+map[bool]string{true: "yes", false: "no"}[trusted], propagation.HeaderCarrier(h), trusted)
		got := p.Tracer().Headers(ctx)
		span.End()
		continued := got.TraceParent[3:35] == "4bf92f3577b34da6a3ce929d0e0e4736"
		if continued != trusted {
			t.Errorf("trusted=%v: outgoing traceparent %s", trusted, got.TraceParent)
		}
		if (got.TraceState == "vendor=x") != trusted {
			t.Errorf("trusted=%v: outgoing tracestate %q", trusted, got.TraceState)
		}
	}
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	untrusted := c.WaitNamed(t, wait, "trusted=no")
	if untrusted.ParentSpanID != "" || untrusted.TraceID == "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("untrusted span %+v continues the client's trace", untrusted)
	}
}

func cut(kv string) (string, string, bool) {
	for i := range kv {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// TestEnvironmentBadProtocol: a protocol the exporters do not speak, from
// the environment (the file's is checked by sekisho check), stops the
// start with a message naming it.
func TestEnvironmentBadProtocol(t *testing.T) {
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	p, err := tracing.Start(context.Background(), nil, nil)
	if err == nil || p != nil || !strings.Contains(err.Error(), `"http/json": use grpc or http/protobuf`) {
		t.Fatalf("Start = %v, %v; want an error naming the protocol", p, err)
	}
}
