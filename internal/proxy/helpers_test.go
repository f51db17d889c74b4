package proxy

import (
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/reqinfo"
)

const (
	testRoute = "app"
	testID    = "req-7f3a"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

// standardOnly runs the pool tests with every request on http.Transport
// (`go test ./internal/proxy -standard`), to check that the tests hold for
// both upstream paths.
var standardOnly = flag.Bool("standard", false, "send every request of the pool tests through http.Transport")

// newPool builds a pool whose logs go to the test output.
func newPool(t testing.TB, backends []Backend, opts Options) *Pool {
	t.Helper()
	if *standardOnly {
		opts.StandardTransport = true
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	p, err := New(testRoute, backends, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// backends turns URLs into weight-1 backends.
func backends(t testing.TB, urls ...string) []Backend {
	t.Helper()
	bs := make([]Backend, len(urls))
	for i, u := range urls {
		bs[i] = Backend{URL: mustURL(t, u), Weight: 1}
	}
	return bs
}

// named starts an upstream that answers with its name.
func named(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(nameHandler(name))
	t.Cleanup(srv.Close)
	return srv
}

func nameHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, name)
	})
}

// dumping starts an upstream that answers with what it received, in the
// same shape as the builtin echo.
func dumping(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo.Request{
			Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Headers: r.Header,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func decodeSeen(t *testing.T, body []byte) echo.Request {
	t.Helper()
	var seen echo.Request
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("decode upstream dump %q: %v", body, err)
	}
	return seen
}

// closedAddr returns a loopback address on which nothing listens, so a
// connection to it is refused at once.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func testInfo(r *http.Request) *reqinfo.Info {
	return &reqinfo.Info{ID: testID, Route: testRoute, Proto: "https", Host: r.Host}
}

// serve calls p directly with info in the context, as the gateway does.
func serve(p *Pool, r *http.Request, info *reqinfo.Info) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, r.WithContext(reqinfo.With(r.Context(), info)))
	return rec
}

// get sends a GET for target through p and returns the status and body.
func get(p *Pool, target string) (int, string) {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	rec := serve(p, r, testInfo(r))
	return rec.Code, rec.Body.String()
}

// gateway serves p over a real loopback listener, adding the request info
// the earlier pipeline stages would have stored.
func gateway(t *testing.T, p http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(withInfo(p))
	t.Cleanup(srv.Close)
	return srv
}

func withInfo(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(reqinfo.With(r.Context(), testInfo(r))))
	})
}

// errorRecorder collects OnUpstreamError calls.
type errorRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (e *errorRecorder) hook(backend, kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, backend+" "+kind)
}

func (e *errorRecorder) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

// fakeClock drives ejection cooldowns without waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// switchable is an upstream at a fixed address that can be taken down
// (connections refused) and brought back up.
type switchable struct {
	t    *testing.T
	addr string
	name string
	srv  *httptest.Server
}

func newSwitchable(t *testing.T, name string) *switchable {
	t.Helper()
	s := &switchable{t: t, addr: closedAddr(t), name: name}
	t.Cleanup(s.down)
	return s
}

func (s *switchable) url() string { return "http://" + s.addr }

func (s *switchable) up() {
	s.t.Helper()
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("reopen %s: %v", s.addr, err)
	}
	s.srv = httptest.NewUnstartedServer(nameHandler(s.name))
	s.srv.Listener = l
	s.srv.Start()
}

func (s *switchable) down() {
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// discardWriter is a ResponseWriter that keeps nothing, for benchmarks.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
