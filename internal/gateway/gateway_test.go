package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/testutil"
)

const testConfig = `
listen: {http: "127.0.0.1:0"}
trusted_proxies: [10.9.0.0/16]
routes:
  - name: api1
    match: {path_prefix: /api1}
    to: builtin:echo
    public: true
  - name: api2
    match: {path_prefix: /api2}
    to: builtin:echo
    public: true
  - name: files
    match: {path_prefix: /files}
    to: builtin:echo
    public: true
    allow_encoded_slash: true
  - name: jsp
    match: {path_prefix: /jsp}
    to: builtin:echo
    public: true
    allow_path_params: true
  - name: exact
    match: {path: /exact}
    to: builtin:echo
    public: true
  - name: app
    match: {host: app.example.com}
    to: builtin:echo
    public: true
  - name: down
    match: {path_prefix: /down}
    to: http://127.0.0.1:1
    public: true
`

type fixture struct {
	gw      *Gateway
	srv     *httptest.Server
	logs    *testutil.SyncBuffer
	metrics *telemetry.Metrics
	// reuse is the pool the fixture's snapshots share parts through;
	// reloads in tests compile with it, as serve does.
	reuse *reuse.Pool
}

func newFixture(t *testing.T, src string) *fixture {
	t.Helper()
	env := configtest.New(t)
	snap, err := env.Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(env.Log, env.Metrics, true)
	gw.Swap(snap)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close) // before the snapshot is closed
	return &fixture{gw: gw, srv: srv, logs: env.Logs, metrics: env.Metrics, reuse: env.Reuse}
}

// do sends a request with a raw request-target (so paths are not cleaned by
// the client) and returns the response and its body.
func (f *fixture) do(t *testing.T, method, target string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req strings.Builder
	req.WriteString(method + " " + target + " HTTP/1.1\r\n")
	if _, ok := hdr["Host"]; !ok {
		req.WriteString("Host: gw.test\r\n")
	}
	for k, v := range hdr {
		req.WriteString(k + ": " + v + "\r\n")
	}
	req.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func seen(t *testing.T, body []byte) echo.Request {
	t.Helper()
	var r echo.Request
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("upstream answer is not the echo JSON: %v\n%s", err, body)
	}
	return r
}

func TestPipelineRoutesAndForwardsCanonicalPath(t *testing.T) {
	f := newFixture(t, testConfig)
	tests := []struct {
		target    string
		status    int
		route     string
		upstream  string // escaped path the upstream must see
		upQuery   string
		hostHdr   string
		bodyMatch string
		goServer  bool // rejected by net/http before the gateway runs
	}{
		{target: "/api1/users", status: 200, route: "api1", upstream: "/api1/users"},
		{target: "/api1/../api2/x", status: 200, route: "api2", upstream: "/api2/x"},
		{target: "/api1//a/./b/", status: 200, route: "api1", upstream: "/api1/a/b/"},
		{target: "/api1/%2e%2e/api2", status: 200, route: "api2", upstream: "/api2"},
		{target: "/api1/caf%c3%a9?q=1&r=%2F", status: 200, route: "api1", upstream: "/api1/caf%C3%A9", upQuery: "q=1&r=%2F"},
		{target: "/exact?x=/api1", status: 200, route: "exact", upstream: "/exact", upQuery: "x=/api1"},
		{target: "/files/a%2Fb", status: 200, route: "files", upstream: "/files/a%2Fb"},
		{target: "/api10", status: 404, bodyMatch: "No route"},
		{target: "/api1/a%2Fb", status: 400, bodyMatch: "Encoded slashes"},
		{target: "/api1/%252e%252e/api2", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/%252E%252E/api2", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/a%252Fb", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/a%255cb", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/a%2500", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/a%252525", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/%25%32%65%25%32%65/api2", status: 400, bodyMatch: "Double-encoded"},
		{target: "/api1/100%25", status: 200, route: "api1", upstream: "/api1/100%25"},
		{target: "/files/%252e%252e/x", status: 200, route: "files", upstream: "/files/%252e%252e/x"},
		{target: "/../etc/passwd", status: 400, bodyMatch: "not acceptable"},
		{target: "/api1/%00", status: 400},
		{target: "/api1/..;/api2", status: 400},
		{target: "/api1/x;y/users", status: 400, bodyMatch: "Path parameters"},
		{target: "/api1;x/users", status: 404},
		{target: "/api1/%3Bx", status: 400, bodyMatch: "Path parameters"},
		{target: "/jsp/app;jsessionid=1", status: 200, route: "jsp", upstream: "/jsp/app;jsessionid=1"},
		{target: "/api1/%zz", status: 400, goServer: true},
		{target: "/api1/%C0%AF..%C0%AF..%C0%AFapi2", status: 400, bodyMatch: "not valid UTF-8"},
		{target: "/api1/%ED%A0%80", status: 400, bodyMatch: "not valid UTF-8"},
		{target: "/api1/caf\xe9", status: 400, bodyMatch: "not valid UTF-8"},
		{target: "/api1/%E6%97%A5", status: 200, route: "api1", upstream: "/api1/%E6%97%A5"},
		{target: "/", hostHdr: "APP.Example.COM.:8080", status: 200, route: "app", upstream: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.hostHdr != "" {
				hdr["Host"] = tt.hostHdr
			}
			resp, body := f.do(t, "GET", tt.target, hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if !tt.goServer && resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id on the response")
			}
			if tt.bodyMatch != "" && !bytes.Contains(body, []byte(tt.bodyMatch)) {
				t.Errorf("body does not say %q: %s", tt.bodyMatch, body)
			}
			if tt.status != 200 {
				return
			}
			got := seen(t, body)
			if got.Path != tt.upstream {
				t.Errorf("upstream saw path %q, want %q", got.Path, tt.upstream)
			}
			if got.Query != tt.upQuery {
				t.Errorf("upstream saw query %q, want %q", got.Query, tt.upQuery)
			}
		})
	}
}

func TestErrorBodiesNameRouteAndRequestID(t *testing.T) {
	f := newFixture(t, testConfig)
	resp, body := f.do(t, "GET", "/down/x", map[string]string{"Accept": "application/json", "X-Request-Id": "req-abc.123"})
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", resp.StatusCode)
	}
	var b struct {
		Route     string `json:"route"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("502 body is not JSON: %s", body)
	}
	if b.Route != "down" || b.RequestID == "" || b.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("502 body = %s, want route down and the request id of the response (%q)", body, resp.Header.Get("X-Request-Id"))
	}
	if bytes.Contains(body, []byte("127.0.0.1")) || bytes.Contains(body, []byte("refused")) {
		t.Errorf("502 body leaks upstream detail: %s", body)
	}
	if got := counterSum(t, f.metrics, "sekisho_upstream_errors_total"); got < 1 {
		t.Errorf("upstream error not counted")
	}
}

// TestRequestIDFromTrustedProxiesOnly: a client's X-Request-Id is replaced
// (on the response, upstream and in the access log) unless it comes from a
// trusted proxy, whose id is kept so one id follows the request through.
func TestRequestIDFromTrustedProxiesOnly(t *testing.T) {
	const clientID = "chosen-by-client.1"
	tests := []struct {
		name    string
		trusted string // trusted_proxies
		keep    bool
	}{
		{"untrusted peer", "[10.9.0.0/16]", false},
		{"no trusted proxies", "[]", false},
		{"trusted proxy", "[127.0.0.1]", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, strings.Replace(testConfig, "trusted_proxies: [10.9.0.0/16]", "trusted_proxies: "+tt.trusted, 1))
			resp, body := f.do(t, "GET", "/api1/x", map[string]string{"X-Request-Id": clientID})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			echoed := resp.Header.Get("X-Request-Id")
			forwarded := seen(t, body).Headers.Get("X-Request-Id")
			if tt.keep {
				if echoed != clientID || forwarded != clientID {
					t.Errorf("X-Request-Id on the response %q, upstream %q; want the proxy's %q on both", echoed, forwarded, clientID)
				}
				return
			}
			if echoed == clientID || forwarded == clientID || strings.Contains(f.logs.String(), clientID) {
				t.Errorf("client's X-Request-Id believed: response %q, upstream %q, logs:\n%s", echoed, forwarded, f.logs)
			}
			if len(echoed) != 32 || echoed != forwarded {
				t.Errorf("X-Request-Id on the response %q, upstream %q; want one new id on both", echoed, forwarded)
			}
			if !strings.Contains(f.logs.String(), `"request_id":"`+echoed+`"`) {
				t.Errorf("access log does not carry the new id %q:\n%s", echoed, f.logs)
			}
		})
	}
}

func TestSpoofedHeadersNeverReachUpstream(t *testing.T) {
	f := newFixture(t, testConfig)
	resp, body := f.do(t, "GET", "/api1/x", map[string]string{
		"X-Forwarded-Email":   "admin@example.com",
		"X-Forwarded_Email":   "admin@example.com",
		"x_forwarded_groups":  "admin",
		"X-Auth-Request-User": "root",
		"X-Forwarded-For":     "1.2.3.4",
		"X-Forwarded-Host":    "evil.example",
		"X-Forwarded-Proto":   "https",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := seen(t, body)
	for name, vs := range got.Headers {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(n, "x-forwarded-email") || strings.HasPrefix(n, "x-forwarded-groups") || strings.HasPrefix(n, "x-auth-request-") {
			t.Errorf("spoofed identity header reached the upstream: %s: %v", name, vs)
		}
	}
	if xff := got.Headers.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q: a client-supplied value from an untrusted peer must be dropped", xff)
	}
	if h := got.Headers.Get("X-Forwarded-Host"); h != "gw.test" {
		t.Errorf("X-Forwarded-Host = %q, want the real Host", h)
	}
	if p := got.Headers.Get("X-Forwarded-Proto"); p != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want http", p)
	}
	if got.Headers.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id forwarded")
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	f := newFixture(t, testConfig)
	f.do(t, "GET", "/api1/private?token=s3cr3t-query", map[string]string{
		"Authorization": "Bearer s3cr3t-bearer",
		"Cookie":        "_sekisho=s3cr3t-cookie",
	})
	logs := f.logs.String()
	for _, secret := range []string{"s3cr3t-query", "s3cr3t-bearer", "s3cr3t-cookie"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no access log line:\n%s", logs)
	}
	for _, k := range []string{"request_id", "route", "status", "duration", "upstream", "path"} {
		if _, ok := line[k]; !ok {
			t.Errorf("access log has no %q: %v", k, line)
		}
	}
	if line["route"] != "api1" || line["status"] != float64(200) || line["upstream"] != "builtin:echo" {
		t.Errorf("access log = %v", line)
	}
	if got := counterSum(t, f.metrics, "sekisho_requests_total"); got != 1 {
		// Registry has only one series so far.
		t.Errorf("sekisho_requests_total = %v, want 1", got)
	}
}

func TestNoSnapshotIs503(t *testing.T) {
	gw := New(slog.New(slog.DiscardHandler), nil, false)
	rec := httptest.NewRecorder()
	gw.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	if gw.Ready() {
		t.Fatal("ready without a snapshot")
	}
}

func TestSwapKeepsInFlightOnOldSnapshot(t *testing.T) {
	f := newFixture(t, testConfig)
	old := f.gw.Snapshot()
	next, err := config.Parse([]byte(`
listen: {http: "127.0.0.1:0"}
routes:
  - {name: only, match: {path: /only}, to: builtin:echo, public: true}
`), "next.yaml", ".", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prev, gen := f.gw.Swap(next)
	if prev != old || gen != 2 {
		t.Fatalf("Swap returned %p gen %d, want the old snapshot and gen 2", prev, gen)
	}
	if resp, _ := f.do(t, "GET", "/api1/x", nil); resp.StatusCode != 404 {
		t.Errorf("old route still served after swap: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/only", nil); resp.StatusCode != 200 {
		t.Errorf("new route not served: %d", resp.StatusCode)
	}
}

// counterSum adds up every series of a counter family.
func counterSum(t *testing.T, m *telemetry.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, s := range f.GetMetric() {
				sum += s.GetCounter().GetValue()
			}
		}
	}
	return sum
}
