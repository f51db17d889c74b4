// Package tracingtest is a real OTLP trace receiver for tests: an HTTP
// server that decodes OTLP/HTTP protobuf exports and a gRPC server that
// implements the OTLP trace service, both from the collector's own protos
// (go.opentelemetry.io/proto/otlp). Tests read back the spans sekisho
// exported, with their IDs, parents, attributes and resource.
package tracingtest

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one exported span, flattened for assertions.
type Span struct {
	Name                          string
	TraceID, SpanID, ParentSpanID string // hex; ParentSpanID "" for a root
	TraceState                    string // the W3C tracestate the span carries
	Kind                          tracepb.Span_SpanKind
	Attrs                         map[string]string // every value as text
	StatusCode                    tracepb.Status_StatusCode
	StatusMessage                 string
	Resource                      map[string]string
}

// Collector keeps every span it received.
type Collector struct {
	// URL is the base URL of the OTLP/HTTP receiver ("" for a gRPC one);
	// spans are posted to URL/v1/traces.
	URL string
	// GRPCURL is http://ADDR of the gRPC receiver ("" for an HTTP one).
	GRPCURL string
	mu      sync.Mutex
	spans   []Span
	headers http.Header
	more    chan struct{} // closed and replaced when spans arrive
}

func newCollector() *Collector { return &Collector{more: make(chan struct{})} }

// NewHTTP starts an OTLP/HTTP receiver (protobuf) on loopback, closed at
// the end of the test.
func NewHTTP(t testing.TB) *Collector {
	t.Helper()
	c := newCollector()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Method != http.MethodPost {
			http.Error(w, "not an OTLP traces endpoint", http.StatusNotFound)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectorpb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req, r.Header.Clone())
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// NewGRPC starts an OTLP/gRPC receiver (plaintext) on loopback, stopped at
// the end of the test.
func NewGRPC(t testing.TB) *Collector {
	t.Helper()
	c := newCollector()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(g, grpcService{c: c})
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	c.GRPCURL = "http://" + ln.Addr().String()
	return c
}

type grpcService struct {
	collectorpb.UnimplementedTraceServiceServer
	c *Collector
}

func (s grpcService) Export(ctx context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	s.c.add(req, nil)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (c *Collector) add(req *collectorpb.ExportTraceServiceRequest, h http.Header) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Name:          s.GetName(),
					TraceID:       hex.EncodeToString(s.GetTraceId()),
					SpanID:        hex.EncodeToString(s.GetSpanId()),
					TraceState:    s.GetTraceState(),
					Kind:          s.GetKind(),
					Attrs:         attrs(s.GetAttributes()),
					StatusCode:    s.GetStatus().GetCode(),
					StatusMessage: s.GetStatus().GetMessage(),
					Resource:      res,
				}
				if len(s.GetParentSpanId()) > 0 {
					sp.ParentSpanID = hex.EncodeToString(s.GetParentSpanId())
				}
				got = append(got, sp)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, got...)
	if h != nil {
		c.headers = h
	}
	close(c.more)
	c.more = make(chan struct{})
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = value(kv.GetValue())
	}
	return m
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return v.String()
}

// Spans are the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Header is a header of the last OTLP/HTTP export request.
func (c *Collector) Header(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.headers.Get(name)
}

// Wait returns the spans once ok accepts them, failing the test after
// timeout.
func (c *Collector) Wait(t testing.TB, timeout time.Duration, ok func([]Span) bool) []Span {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		spans, more := append([]Span(nil), c.spans...), c.more
		c.mu.Unlock()
		if ok(spans) {
			return spans
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("collector: the spans expected did not arrive within %v; got %d: %v", timeout, len(spans), names(spans))
			return nil
		}
	}
}

// WaitNamed waits for a span called name and returns it.
func (c *Collector) WaitNamed(t testing.TB, timeout time.Duration, name string) Span {
	t.Helper()
	var found Span
	c.Wait(t, timeout, func(spans []Span) bool {
		for _, s := range spans {
			if s.Name == name {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func names(spans []Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

// Trace returns the spans of one trace, by name (the last one wins for a
// repeated name).
func Trace(spans []Span, traceID string) map[string]Span {
	m := map[string]Span{}
	for _, s := range spans {
		if s.TraceID == traceID {
			m[s.Name] = s
		}
	}
	return m
}

// AssertNoSecret fails the test when any secret appears in a span's name,
// attributes, status message or resource.
func AssertNoSecret(t testing.TB, spans []Span, secrets ...string) {
	t.Helper()
	for _, s := range spans {
		fields := []string{s.Name, s.StatusMessage}
		for k, v := range s.Attrs {
			fields = append(fields, k, v)
		}
		for k, v := range s.Resource {
			fields = append(fields, k, v)
		}
		for _, secret := range secrets {
			if secret == "" {
				continue
			}
			for _, f := range fields {
				if strings.Contains(f, secret) {
					t.Errorf("span %q carries a secret value in %q", s.Name, f)
				}
			}
		}
	}
}
