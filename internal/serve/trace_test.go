package serve

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
	"github.com/sekisho/sekisho/internal/tracing/tracingtest"
)

const (
	e2eTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	e2eParent  = "00-" + e2eTraceID + "-00f067aa0ba902b7-01"
)

// runUntilDone runs Run on the file at path, calls use with the started
// instance, then stops Run and waits for it to return: the spans buffered
// at that point are only sent by the flush at shutdown.
func runUntilDone(t *testing.T, path string, use func(*Instance)) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *Instance, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{ConfigPath: path, LogOutput: logs, Started: func(i *Instance) { started <- i }})
	}()
	select {
	case inst := <-started:
		use(inst)
	case err := <-done:
		t.Fatalf("Run exited at start: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not start within 10s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of cancel")
	}
}

// getWithParent sends a GET with a traceparent, from loopback.
func getWithParent(t *testing.T, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", e2eParent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestRunTracesGatewayAndDecision: sekisho serve with a tracing section
// traces the gateway and the decision service, continues the trusted
// proxy's trace into the upstream, and sends the last spans when it
// stops (the batch interval is never reached here).
func TestRunTracesGatewayAndDecision(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME"} {
		t.Setenv(k, "")
	}
	c := tracingtest.NewHTTP(t)
	gotParent := make(chan string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotParent <- r.Header.Get("Traceparent")
	}))
	defer up.Close()
	path := filepath.Join(t.TempDir(), "sekisho.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, `
listen: {http: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
trusted_proxies: [127.0.0.1]
decision: {listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1]}
tracing:
  endpoint: %s
  service_name: sekisho-e2e
routes:
  - {name: up, match: {path_prefix: /}, to: %q, public: true}
`, c.URL, up.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilDone(t, path, func(inst *Instance) {
		if resp := getWithParent(t, "http://"+inst.Server.HTTPAddr()+"/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("gateway status %d", resp.StatusCode)
		}
		if tp := <-gotParent; len(tp) != 55 || tp[3:35] != e2eTraceID {
			t.Errorf("upstream traceparent %q, want the proxy's trace continued", tp)
		}
		decAddr, _ := inst.Decision.Addrs()
		if resp := getWithParent(t, "http://"+decAddr+"/envoy/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("decision status %d", resp.StatusCode)
		}
	})
	// Run has returned: everything must be at the collector now.
	spans := tracingtest.Trace(c.Spans(), e2eTraceID)
	for _, name := range []string{"GET up", "upstream", "decision envoy-http"} {
		s, ok := spans[name]
		if !ok {
			t.Errorf("no %q span in the proxy's trace after shutdown; got %v", name, c.Spans())
			continue
		}
		if s.Resource["service.name"] != "sekisho-e2e" {
			t.Errorf("%s: service.name %q", name, s.Resource["service.name"])
		}
	}
	if s := spans["GET up"]; s.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("gateway span parent %q", s.ParentSpanID)
	}
}

// TestRunTracesFromEnvironment: without a tracing section the standard
// OTEL_* variables turn tracing on.
func TestRunTracesFromEnvironment(t *testing.T) {
	c := tracingtest.NewGRPC(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.GRPCURL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	path := filepath.Join(t.TempDir(), "sekisho.yaml")
	if err := os.WriteFile(path, []byte(reloadBase), 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilDone(t, path, func(inst *Instance) {
		getWithParent(t, "http://"+inst.Server.HTTPAddr()+"/x")
	})
	spans := c.Spans()
	if len(spans) == 0 {
		t.Fatal("no spans exported")
	}
	for _, s := range spans {
		if s.Resource["service.name"] != "from-env" {
			t.Errorf("%s: service.name %q, want OTEL_SERVICE_NAME's", s.Name, s.Resource["service.name"])
		}
		if s.TraceID == e2eTraceID {
			t.Errorf("%s continues the trace of a client that is not a trusted proxy", s.Name)
		}
	}
}
