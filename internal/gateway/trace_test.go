package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/tracing"
	"github.com/sekisho/sekisho/internal/tracing/tracingtest"
)

const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
	clientParent  = "00-" + clientTraceID + "-" + clientSpanID + "-01"
	cookieSecret  = "cookie-secret-value-4711"
)

// traceUpstream is a real upstream that remembers the trace headers of
// each request, by X-Request-Id.
type traceUpstream struct {
	mu   sync.Mutex
	seen map[string]http.Header
}

func (u *traceUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen[r.Header.Get("X-Request-Id")] = http.Header{"Traceparent": r.Header.Values("Traceparent"), "Tracestate": r.Header.Values("Tracestate")}
	u.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (u *traceUpstream) headers(id string) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[id]
}

type traceFixture struct {
	gw       *Gateway
	provider *tracing.Provider
	c        *tracingtest.Collector
	up       *traceUpstream
	env      *configtest.Env
}

func newTraceFixture(t *testing.T) *traceFixture {
	t.Helper()
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	c := tracingtest.NewHTTP(t)
	p, err := tracing.Start(context.Background(), &tracing.Config{Endpoint: c.URL}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	up := &traceUpstream{seen: map[string]http.Header{}}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	env := configtest.New(t)
	snap := env.Snapshot(fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
trusted_proxies: [10.9.0.0/16]
jwt:
  - issuer: %s
    audiences: [api]
    claims: {username: email}
routes:
  - name: api
    match: {path_prefix: /api}
    to: %s
    allow: [{groups: [admin]}]
  - name: down
    match: {path_prefix: /down}
    to: http://127.0.0.1:1
    public: true
`, env.Issuer().URL, upSrv.URL))
	gw := New(slog.New(slog.DiscardHandler), nil, false)
	gw.SetTracer(p.Tracer())
	gw.Swap(snap)
	return &traceFixture{gw: gw, provider: p, c: c, up: up, env: env}
}

// serve sends one request from peer and returns its request id, once its
// spans are exported.
func (f *traceFixture) serve(t *testing.T, peer, path string, h http.Header) (id string, status int) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path+"?secret_query=q-value", nil)
	r.RemoteAddr = peer
	for k, vs := range h {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	f.gw.ServeHTTP(w, r)
	if err := f.provider.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w.Header().Get("X-Request-Id"), w.Code
}

// trace waits for the spans of the request with id, by name.
func (f *traceFixture) trace(t *testing.T, id string, names ...string) map[string]tracingtest.Span {
	t.Helper()
	var got map[string]tracingtest.Span
	f.c.Wait(t, 10*time.Second, func(spans []tracingtest.Span) bool {
		for _, s := range spans {
			if s.Attrs["sekisho.request_id"] == id {
				got = tracingtest.Trace(spans, s.TraceID)
				for _, n := range names {
					if _, ok := got[n]; !ok {
						return false
					}
				}
				return true
			}
		}
		return false
	})
	return got
}

// TestTracingSpans: one server span per request with route, authenticate,
// authorize and upstream children, HTTP attributes and the decision; a
// trusted proxy's trace is continued and an untrusted client's is not;
// the upstream gets the upstream span's traceparent either way; no
// credential, cookie or query value is in any span.
func TestTracingSpans(t *testing.T) {
	f := newTraceFixture(t)
	token := f.env.Token()
	for _, tt := range []struct {
		name, peer string
		continued  bool
	}{
		{"trusted proxy", "10.9.0.1:5555", true},
		{"untrusted client", "192.0.2.7:5555", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, status := f.serve(t, tt.peer, "/api/users/42", http.Header{
				"Traceparent":   {clientParent},
				"Tracestate":    {"vendor=chosen"},
				"Authorization": {"Bearer " + token},
				"Cookie":        {"sekisho_session=" + cookieSecret},
			})
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			spans := f.trace(t, id, "GET api", "route", "authenticate", "authorize", "upstream")
			server := spans["GET api"]
			if server.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("server span kind %v", server.Kind)
			}
			if got := server.TraceID == clientTraceID && server.ParentSpanID == clientSpanID; got != tt.continued {
				t.Errorf("server span trace %s parent %q: continued=%v, want %v", server.TraceID, server.ParentSpanID, got, tt.continued)
			}
			if !tt.continued && server.ParentSpanID != "" {
				t.Errorf("untrusted request's span has parent %q", server.ParentSpanID)
			}
			for k, want := range map[string]string{"http.request.method": "GET", "http.response.status_code": "200", "sekisho.route": "api", "url.path": "/api/users/42", "url.scheme": "http"} {
				if server.Attrs[k] != want {
					t.Errorf("server span %s = %q, want %q", k, server.Attrs[k], want)
				}
			}
			for _, n := range []string{"route", "authenticate", "authorize", "upstream"} {
				if spans[n].ParentSpanID != server.SpanID {
					t.Errorf("%s span's parent %q, want the server span %q", n, spans[n].ParentSpanID, server.SpanID)
				}
			}
			if a := spans["authorize"].Attrs; a["sekisho.decision"] != "allow" || a["sekisho.rule"] != "allow[0]" {
				t.Errorf("authorize attributes %v", a)
			}
			if a := spans["authenticate"].Attrs; a["sekisho.credential"] != "authorization" {
				t.Errorf("authenticate attributes %v", a)
			}
			upstream := spans["upstream"]
			if upstream.Kind != tracepb.Span_SPAN_KIND_CLIENT || upstream.Attrs["http.response.status_code"] != "200" {
				t.Errorf("upstream span %+v", upstream)
			}
			got := f.up.headers(id)
			want := "00-" + server.TraceID + "-" + upstream.SpanID + "-01"
			if got.Get("Traceparent") != want || len(got.Values("Traceparent")) != 1 {
				t.Errorf("upstream received traceparent %q, want %q (the upstream span)", got.Values("Traceparent"), want)
			}
			if wantState := map[bool]string{true: "vendor=chosen", false: ""}[tt.continued]; got.Get("Tracestate") != wantState {
				t.Errorf("upstream received tracestate %q, want %q", got.Get("Tracestate"), wantState)
			}
			tracingtest.AssertNoSecret(t, f.c.Spans(), token, cookieSecret, "q-value")
		})
	}
}

// TestTracingDenyAndErrors: a refusal is recorded as a deny on authorize
// (a 4xx is no server error), a rejected token as an authenticate error,
// and an upstream that cannot be reached as errors of the upstream and
// server spans.
func TestTracingDenyAndErrors(t *testing.T) {
	f := newTraceFixture(t)
	dev := f.env.Token("groups", []string{"dev"})

	id, status := f.serve(t, "192.0.2.7:5555", "/api/x", http.Header{"Authorization": {"Bearer " + dev}})
	if status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", status)
	}
	spans := f.trace(t, id, "GET api", "authorize")
	if a := spans["authorize"].Attrs; a["sekisho.decision"] != "deny" {
		t.Errorf("authorize attributes %v, want a deny", a)
	}
	if s := spans["GET api"]; s.StatusCode == tracepb.Status_STATUS_CODE_ERROR || s.Attrs["http.response.status_code"] != "403" {
		t.Errorf("server span of a 403: status %v, attributes %v", s.StatusCode, s.Attrs)
	}

	bad := "not-a-valid-token.eyJzZWNyZXQiOiJ4In0.sig"
	id, status = f.serve(t, "192.0.2.7:5555", "/api/x", http.Header{"Authorization": {"Bearer " + bad}})
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", status)
	}
	spans = f.trace(t, id, "GET api", "authenticate")
	if s := spans["authenticate"]; s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.Attrs["sekisho.outcome"] != "invalid_token" {
		t.Errorf("authenticate span of a rejected token: %+v", s)
	}
	if _, ok := spans["authorize"]; ok {
		t.Error("a rejected token reached authorize")
	}
	tracingtest.AssertNoSecret(t, f.c.Spans(), bad, "eyJzZWNyZXQiOiJ4In0")

	id, status = f.serve(t, "192.0.2.7:5555", "/down", nil)
	if status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", status)
	}
	spans = f.trace(t, id, "GET down", "upstream")
	for _, n := range []string{"GET down", "upstream"} {
		if s := spans[n]; s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.Attrs["http.response.status_code"] != "502" {
			t.Errorf("%s span of an unreachable upstream: status %v, attributes %v", n, s.StatusCode, s.Attrs)
		}
	}
	if _, ok := spans["authenticate"]; ok {
		t.Error("a public route has an authenticate span")
	}
}

// TestTracingOffLeavesRequestsAlone: without a tracer the gateway starts
// no span and forwards the request's trace headers as they came, as it
// did before tracing existed.
func TestTracingOffLeavesRequestsAlone(t *testing.T) {
	f := newTraceFixture(t)
	f.gw.SetTracer(nil)
	id, status := f.serve(t, "192.0.2.7:5555", "/api/x", http.Header{"Authorization": {"Bearer " + f.env.Token()}, "Traceparent": {clientParent}})
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if got := f.up.headers(id).Get("Traceparent"); got != clientParent {
		t.Errorf("upstream received traceparent %q, want the client's unchanged", got)
	}
	if spans := f.c.Spans(); len(spans) != 0 {
		t.Errorf("tracing off exported %d spans", len(spans))
	}
}
