package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/reqinfo"
)

func TestNew(t *testing.T) {
	u := func(s string) *url.URL { return mustURL(t, s) }
	tests := []struct {
		name     string
		backends []Backend
		wantErr  string   // substring; "" for success
		names    []string // backend names when valid
	}{
		{name: "no backends", wantErr: "no backends"},
		{name: "nil URL", backends: []Backend{{Weight: 1}}, wantErr: "missing URL"},
		{name: "negative weight", backends: []Backend{{URL: u("http://a:1"), Weight: -1}}, wantErr: "weight -1"},
		{name: "weight too large", backends: []Backend{{URL: u("http://a:1"), Weight: maxWeight + 1}}, wantErr: "outside 0..10000"},
		{name: "all weights zero", backends: []Backend{{URL: u("http://a:1")}, {URL: u("http://b:1")}}, wantErr: "all backend weights are 0"},
		{name: "bad scheme", backends: []Backend{{URL: u("ftp://a:21"), Weight: 1}}, wantErr: `unsupported scheme "ftp"`},
		{name: "unknown builtin", backends: []Backend{{URL: u("builtin:nope"), Weight: 1}}, wantErr: "only builtin:echo"},
		{name: "no host", backends: []Backend{{URL: u("http:///x"), Weight: 1}}, wantErr: "no host"},
		{name: "path", backends: []Backend{{URL: u("http://a:1/base"), Weight: 1}}, wantErr: "must not have a path"},
		{name: "query", backends: []Backend{{URL: u("http://a:1?x=1"), Weight: 1}}, wantErr: "must not have a path"},
		{name: "user info not echoed", backends: []Backend{{URL: u("http://user:hunter2@a:1"), Weight: 1}}, wantErr: "must not carry user info"},
		{
			name: "default ports and schemes",
			backends: []Backend{
				{URL: u("http://app"), Weight: 1},
				{URL: u("https://app/"), Weight: 1},
				{URL: u("h2c://[::1]:50051"), Weight: 1},
				{URL: u("builtin:echo"), Weight: 0},
			},
			names: []string{"app:80", "app:443", "[::1]:50051", "builtin:echo"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(testRoute, tt.backends, Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), testRoute) {
					t.Errorf("error %q does not name the route", err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q leaks the URL password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var names []string
			for _, b := range p.backends {
				names = append(names, b.name)
			}
			if !slices.Equal(names, tt.names) {
				t.Errorf("names %v, want %v", names, tt.names)
			}
		})
	}
}

func TestTransportTuning(t *testing.T) {
	tr := newTransport(withDefaults(Options{Timeout: 7 * time.Second}), false)
	if tr.Proxy != nil {
		t.Error("transport takes a proxy from the environment")
	}
	if tr.MaxIdleConnsPerHost < 256 || tr.IdleConnTimeout != 90*time.Second || !tr.ForceAttemptHTTP2 {
		t.Errorf("MaxIdleConnsPerHost %d, IdleConnTimeout %v, ForceAttemptHTTP2 %v; want ≥256, 90s, true",
			tr.MaxIdleConnsPerHost, tr.IdleConnTimeout, tr.ForceAttemptHTTP2)
	}
	if tr.ResponseHeaderTimeout != 7*time.Second {
		t.Errorf("ResponseHeaderTimeout %v, want the route timeout", tr.ResponseHeaderTimeout)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		body      string
		replay    bool // the gateway buffered the body and set GetBody
		retries   int
		single    bool // only the refusing backend
		wantCode  int
		wantBBody string // body the live backend received; "-" when not reached
	}{
		{name: "GET retried by default", method: "GET", retries: -1, wantCode: 200, wantBBody: ""},
		{name: "DELETE retried", method: "DELETE", retries: 1, wantCode: 200, wantBBody: ""},
		{name: "PUT with replayable body retried", method: "PUT", body: "payload", replay: true, retries: 1, wantCode: 200, wantBBody: "payload"},
		{name: "PUT with streamed body not retried", method: "PUT", body: "payload", retries: 1, wantCode: 502, wantBBody: "-"},
		{name: "POST not retried", method: "POST", body: "payload", replay: true, retries: 1, wantCode: 502, wantBBody: "-"},
		{name: "retries 0", method: "GET", retries: 0, wantCode: 502, wantBBody: "-"},
		{name: "no other backend", method: "GET", retries: 3, single: true, wantCode: 502, wantBBody: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused := closedAddr(t)
			var hits atomic.Int32
			received := make(chan string, 1)
			live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				b, _ := io.ReadAll(r.Body)
				received <- string(b)
				_, _ = io.WriteString(w, "b")
			}))
			t.Cleanup(live.Close)
			urls := []string{"http://" + refused, live.URL}
			if tt.single {
				urls = urls[:1]
			}
			var errs errorRecorder
			p := newPool(t, backends(t, urls...), Options{Retries: tt.retries, OnUpstreamError: errs.hook})

			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := httptest.NewRequest(tt.method, "/", body)
			if tt.replay {
				r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(tt.body)), nil }
			}
			info := testInfo(r)
			rec := serve(p, r, info)

			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tt.wantCode, rec.Body)
			}
			if got := errs.get(); !slices.Equal(got, []string{refused + " connect"}) {
				t.Errorf("upstream errors %v, want exactly one connect error for the refusing backend", got)
			}
			if tt.wantBBody == "-" {
				if hits.Load() != 0 {
					t.Errorf("live backend reached %d times, want 0", hits.Load())
				}
				if info.Upstream != refused {
					t.Errorf("info.Upstream %q, want %q", info.Upstream, refused)
				}
				return
			}
			if got := <-received; got != tt.wantBBody {
				t.Errorf("live backend received body %q, want %q", got, tt.wantBBody)
			}
			if want := strings.TrimPrefix(live.URL, "http://"); info.Upstream != want {
				t.Errorf("info.Upstream %q, want %q", info.Upstream, want)
			}
		})
	}
}

func TestTimeoutAnswers504(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; the proxy gives up and closes
	}))
	t.Cleanup(slow.Close)
	var errs errorRecorder
	p := newPool(t, backends(t, slow.URL), Options{Timeout: 50 * time.Millisecond, OnUpstreamError: errs.hook})

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept", "application/json")
	start := time.Now()
	rec := serve(p, r, testInfo(r))

	if rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", rec.Code)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("took %v with a 50ms timeout", elapsed)
	}
	addr := strings.TrimPrefix(slow.URL, "http://")
	if got := errs.get(); !slices.Equal(got, []string{addr + " timeout"}) {
		t.Errorf("upstream errors %v, want one timeout", got)
	}
	if strings.Contains(rec.Body.String(), addr) {
		t.Errorf("504 body leaks the upstream address: %s", rec.Body)
	}
}

func TestErrorBodyIsSafe(t *testing.T) {
	const secret = "Bearer tok-do-not-log"
	tests := []struct {
		name, accept, contentType string
	}{
		{"json", "application/json", "application/json"},
		{"html", "text/html", "text/html; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := closedAddr(t)
			var logs bytes.Buffer
			p := newPool(t, backends(t, "http://"+addr), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Accept", tt.accept)
			r.Header.Set("Authorization", secret)
			rec := serve(p, r, testInfo(r))

			if rec.Code != http.StatusBadGateway || rec.Header().Get("Content-Type") != tt.contentType {
				t.Fatalf("got %d %q, want 502 %q", rec.Code, rec.Header().Get("Content-Type"), tt.contentType)
			}
			body := rec.Body.String()
			for _, want := range []string{testRoute, testID} {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q: %s", want, body)
				}
			}
			_, port, _ := net.SplitHostPort(addr)
			for _, leak := range []string{port, "dial", "refused", "tok-do-not-log"} {
				if strings.Contains(body, leak) {
					t.Errorf("body leaks %q: %s", leak, body)
				}
			}
			if tt.name == "json" {
				var b httperr.Body
				if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Route != testRoute || b.RequestID != testID || b.Status != 502 {
					t.Errorf("JSON body %+v (%v), want status 502, route and request id", b, err)
				}
			}
			log := logs.String()
			for _, want := range []string{"route=" + testRoute, "request_id=" + testID, "upstream=" + addr, "connection refused"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q: %s", want, log)
				}
			}
			if strings.Contains(log, "tok-do-not-log") {
				t.Errorf("log leaks the Authorization value: %s", log)
			}
		})
	}
}

func TestForwardingHeaders(t *testing.T) {
	up := dumping(t)
	p := newPool(t, backends(t, up.URL), Options{})
	tests := []struct {
		name, remote, chain, wantXFF string
	}{
		{"untrusted peer", "192.0.2.10:5555", "", "192.0.2.10"},
		{"trusted chain", "192.0.2.10:5555", "203.0.113.7, 198.51.100.2", "203.0.113.7, 198.51.100.2, 192.0.2.10"},
		{"IPv6 peer", "[2001:db8::1]:443", "", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://app.example.com/x", nil)
			r.RemoteAddr = tt.remote
			for k, v := range map[string]string{
				"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
				"Forwarded": "for=6.6.6.6", "X-Request-Id": "client-chosen",
			} {
				r.Header.Set(k, v)
			}
			// Names upstreams read as the client's address, port, prefix or
			// path, some in the underscore spelling CGI stacks fold to '-'.
			spoofed := []string{"True-Client-Ip", "X-Real-Ip", "X-Client-Ip", "X-Forwarded-Port",
				"X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Original-Url", "X-Rewrite-Url",
				"X_Real_IP", "X-Forwarded_For", "X-Forwarded_Host", "X_Forwarded_Prefix"}
			for _, k := range spoofed {
				r.Header[k] = []string{"6.6.6.6"}
			}
			info := &reqinfo.Info{ID: testID, Route: testRoute, Proto: "https", Host: "app.example.com", ForwardedFor: tt.chain}
			rec := serve(p, r, info)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			h := decodeSeen(t, rec.Body.Bytes()).Headers
			want := map[string]string{
				"X-Forwarded-For": tt.wantXFF, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com",
				"X-Request-Id": testID, "Forwarded": "",
			}
			for k, v := range want {
				if got := h.Values(k); (v == "" && len(got) != 0) || (v != "" && !slices.Equal(got, []string{v})) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k, v := range h {
				for _, s := range spoofed {
					if strings.EqualFold(k, s) {
						t.Errorf("client-sent %s = %q reached the upstream", k, v)
					}
				}
			}
		})
	}
}

func TestHopByHopHeadersRemoved(t *testing.T) {
	var seen atomic.Pointer[http.Header]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		seen.Store(&h)
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Up-Kept", "1")
	}))
	t.Cleanup(up.Close)
	gw := gateway(t, newPool(t, backends(t, up.URL), Options{}))

	raw := "GET /hop HTTP/1.1\r\nHost: app.example.com\r\n" +
		"Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: 300\r\n" +
		"Proxy-Authorization: Basic c2VjcmV0\r\nTe: gzip\r\nX-End-To-End: 1\r\n\r\n"
	sendRaw := func(addr string) *http.Response {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Control: sent straight to the upstream, the hop-by-hop headers travel,
	// so their absence below is the proxy's doing.
	direct := sendRaw(up.Listener.Addr().String())
	if direct.Header.Get("X-Up-Hop") == "" || (*seen.Load()).Get("X-Secret-Hop") == "" {
		t.Fatal("control request: hop-by-hop headers did not travel without the proxy")
	}

	resp := sendRaw(gw.Listener.Addr().String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := *seen.Load()
	for _, k := range []string{"Connection", "X-Secret-Hop", "Keep-Alive", "Proxy-Authorization", "Te"} {
		if v := got.Values(k); len(v) != 0 {
			t.Errorf("upstream received %s: %q", k, v)
		}
	}
	if got.Get("X-End-To-End") != "1" {
		t.Error("end-to-end request header lost")
	}
	for _, k := range []string{"X-Up-Hop", "Keep-Alive"} {
		if v := resp.Header.Values(k); len(v) != 0 {
			t.Errorf("client received %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-Up-Kept") != "1" {
		t.Error("end-to-end response header lost")
	}
}

func TestPathAndQueryForwardedVerbatim(t *testing.T) {
	up := dumping(t)
	p := newPool(t, backends(t, up.URL), Options{})
	tests := []struct {
		name      string
		target    string
		rewrite   func(*url.URL) // what the normalize stage did
		wantPath  string
		wantQuery string
	}{
		{
			name:      "escapes and unparsable query kept",
			target:    "/files/a%20b;v=1/%2Fx?x=1;y=2&z=%zz&w=a+b",
			wantPath:  "/files/a%20b;v=1/%2Fx",
			wantQuery: "x=1;y=2&z=%zz&w=a+b",
		},
		{
			name:   "canonical URL from the gateway, not the request line",
			target: "/a/../b//c?q=1",
			rewrite: func(u *url.URL) {
				u.Path, u.RawPath = "/b/c d", ""
			},
			wantPath:  "/b/c%20d",
			wantQuery: "q=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if tt.rewrite != nil {
				tt.rewrite(r.URL)
			}
			rec := serve(p, r, testInfo(r))
			seen := decodeSeen(t, rec.Body.Bytes())
			if seen.Path != tt.wantPath || seen.Query != tt.wantQuery {
				t.Errorf("upstream saw %q ? %q, want %q ? %q", seen.Path, seen.Query, tt.wantPath, tt.wantQuery)
			}
		})
	}
}

func TestRewriteHost(t *testing.T) {
	up := dumping(t)
	upHost := strings.TrimPrefix(up.URL, "http://")
	tests := []struct {
		rewrite bool
		want    string
	}{
		{false, "app.example.com"},
		{true, upHost},
	}
	for _, tt := range tests {
		p := newPool(t, backends(t, up.URL), Options{RewriteHost: tt.rewrite})
		r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
		rec := serve(p, r, testInfo(r))
		seen := decodeSeen(t, rec.Body.Bytes())
		if seen.Host != tt.want {
			t.Errorf("RewriteHost %v: upstream saw Host %q, want %q", tt.rewrite, seen.Host, tt.want)
		}
		if got := seen.Headers.Get("X-Forwarded-Host"); got != "app.example.com" {
			t.Errorf("RewriteHost %v: X-Forwarded-Host %q, want the client's host", tt.rewrite, got)
		}
	}
}

func TestBuiltinEcho(t *testing.T) {
	p := newPool(t, backends(t, "builtin:echo"), Options{RewriteHost: true})
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/demo%2Fx?a=1", nil)
	r.Header.Set("Authorization", "Bearer secret-token")
	r.Header.Set("Cookie", "_sekisho=secret-cookie")
	info := testInfo(r)
	rec := serve(p, r, info)

	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "secret-") {
		t.Errorf("echo reflects a credential: %s", rec.Body)
	}
	seen := decodeSeen(t, rec.Body.Bytes())
	if seen.Host != "app.example.com" || seen.Path != "/demo%2Fx" || seen.Query != "a=1" || seen.Headers.Get("X-Request-Id") != testID {
		t.Errorf("echo saw %+v", seen)
	}
	if info.Upstream != "builtin:echo" {
		t.Errorf("info.Upstream %q, want builtin:echo", info.Upstream)
	}
}

func TestHTTPSBackend(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	up.StartTLS()
	t.Cleanup(up.Close)

	t.Run("unknown certificate refused", func(t *testing.T) {
		var errs errorRecorder
		p := newPool(t, backends(t, up.URL), Options{OnUpstreamError: errs.hook})
		if code, _ := get(p, "/"); code != http.StatusBadGateway {
			t.Errorf("status %d, want 502 for an untrusted upstream certificate", code)
		}
		if got := errs.get(); len(got) != 1 || !strings.HasSuffix(got[0], " other") {
			t.Errorf("upstream errors %v, want one of kind other", got)
		}
	})
	t.Run("trusted certificate over HTTP/2", func(t *testing.T) {
		p := newPool(t, backends(t, up.URL), Options{})
		roots := x509.NewCertPool()
		roots.AddCert(up.Certificate())
		p.transports[0].TLSClientConfig = &tls.Config{RootCAs: roots}
		if code, body := get(p, "/"); code != http.StatusOK || body != "HTTP/2.0" {
			t.Errorf("got %d %q, want 200 over HTTP/2.0", code, body)
		}
	})
}

func TestStreamingFlushesPromptly(t *testing.T) {
	tests := []struct{ name, contentType string }{
		{"server-sent events", "text/event-stream"},
		{"unknown length", "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = io.WriteString(w, "data: first\n\n")
				http.NewResponseController(w).Flush()
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "data: second\n\n")
			}))
			t.Cleanup(up.Close)
			gw := gateway(t, newPool(t, backends(t, up.URL), Options{}))

			// The upstream holds its second chunk until the first has been
			// read through the proxy; without prompt flushing this times out.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: first\n" {
				t.Fatalf("first chunk %q, %v", line, err)
			}
			close(next)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: second\n\n" {
				t.Errorf("rest %q, %v", rest, err)
			}
		})
	}
}

func TestCloseLetsInFlightFinishAndDropsIdle(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	closed := make(chan struct{}, 8)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before up.Close, even after a failure
	p := newPool(t, backends(t, up.URL), Options{})

	result := make(chan string, 1)
	go func() {
		code, body := get(p, "/slow")
		result <- http.StatusText(code) + " " + body
	}()
	<-entered
	// A second connection, idle once this returns (the first is busy).
	if code, _ := get(p, "/idle"); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	p.Close()

	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("idle upstream connection still open after Close")
	}
	unblock()
	if got := <-result; got != "OK done" {
		t.Errorf("in-flight request got %q, want OK done", got)
	}
}

func BenchmarkProxy(b *testing.B) {
	p := benchPool(b)
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/bench?x=1", nil)
	r = r.WithContext(reqinfo.With(context.Background(), testInfo(r)))
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		p.ServeHTTP(w, r)
	}
}

// TestNoTransparentCompression: the proxy neither asks the upstream for gzip
// on the client's behalf nor decompresses what the upstream sends.
func TestNoTransparentCompression(t *testing.T) {
	gz := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0} // gzip of ""
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Accept-Encoding", r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz)
	}))
	defer up.Close()
	p := newPool(t, backends(t, up.URL), Options{})
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	rec := serve(p, r, testInfo(r))
	if got := rec.Header().Get("X-Seen-Accept-Encoding"); got != "" {
		t.Errorf("upstream saw Accept-Encoding %q the client never sent", got)
	}
	if rec.Header().Get("Content-Encoding") != "gzip" || !bytes.Equal(rec.Body.Bytes(), gz) {
		t.Errorf("the gzip body was altered: %q %x", rec.Header().Get("Content-Encoding"), rec.Body.Bytes())
	}
}

// benchPool is a pool with one real upstream answering "ok", closed with
// the benchmark.
func benchPool(b *testing.B) *Pool {
	b.Helper()
	up := httptest.NewServer(nameHandler("ok"))
	b.Cleanup(up.Close)
	p, err := New("bench", []Backend{{URL: mustURL(b, up.URL), Weight: 1}}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}
