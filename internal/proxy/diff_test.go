package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The differential tests send one corpus of raw client requests through a
// pool on the lean path and a pool forced onto http.Transport, both in
// front of the same upstreams, and require the same requests at the
// upstream and the same responses at the client.

// seenLog collects what the upstreams saw, one line per request.
type seenLog struct {
	mu    sync.Mutex
	lines []string
}

func (s *seenLog) add(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
}

func (s *seenLog) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.lines
	s.lines = nil
	return out
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d:%x", len(b), sum[:6])
}

func headerLines(h http.Header, skip ...string) string {
	var out []string
	for k, vv := range h {
		if slices.Contains(skip, k) {
			continue
		}
		out = append(out, k+"="+strings.Join(vv, "\x00"))
	}
	slices.Sort(out)
	return strings.Join(out, "|")
}

// diffUpstream is a net/http upstream whose behaviour the request path
// picks.
func diffUpstream(seen *seenLog) http.Handler {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		head := fmt.Sprintf("%s %s %s host=%s cl=%d te=%v h=[%s]", r.Method, r.RequestURI, r.Proto, r.Host,
			r.ContentLength, r.TransferEncoding, headerLines(r.Header))
		route, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if route == "early" {
			// Answer without reading the body.
			seen.add(head + " body=unread")
			w.Header().Set("X-Early", "1")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		body, err := io.ReadAll(r.Body)
		seen.add(fmt.Sprintf("%s body=%s err=%v trailer=[%s]", head, digest(body), err, headerLines(r.Trailer)))
		w.Header().Set("X-Body", digest(body))
		switch route {
		case "trailers":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = w.Write(body)
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "tail")
			w.Header().Set("X-Sum", digest(body))
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		case "big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		case "bigchunked":
			for i := 0; i < len(big); i += 100000 {
				_, _ = w.Write(big[i:min(i+100000, len(big))])
				http.NewResponseController(w).Flush()
			}
		case "204":
			w.WriteHeader(http.StatusNoContent)
		case "304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "hop":
			w.Header().Set("Connection", "X-Hop, Keep-Alive")
			w.Header().Set("X-Hop", "1")
			w.Header().Set("Keep-Alive", "timeout=5")
			_, _ = io.WriteString(w, "hop")
		case "hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("X-Final", "1")
			_, _ = io.WriteString(w, "final")
		case "status":
			code, _ := strconv.Atoi(r.URL.Query().Get("code"))
			if code < 200 || code > 599 {
				code = 418
			}
			w.WriteHeader(code)
			_, _ = w.Write(body)
		default:
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(body)
		}
	})
}

// rawUpstream answers with canned bytes, for framing net/http never writes.
// The path /raw/<name> picks the answer; what it read of the request is
// recorded byte for byte.
type rawUpstream struct {
	l    net.Listener
	seen *seenLog
}

var rawAnswers = map[string]string{
	"http10":      "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
	"keepalive10": "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
	"noframe":     "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nread until the close",
	"clte":        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"short":       "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
	"empty":       "",
	"garbage":     "NOT HTTP AT ALL\r\n\r\n",
	"badcl":       "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
	"early":       "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
	"hints":       "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"trailer":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n3;ext=1\r\nabc\r\n0\r\nX-T: v\r\nX-Undeclared: u\r\n\r\n",
	"chunkbad":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n",
	"dupcl":       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"conncl":      "HTTP/1.1 200 OK\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nContent-Length: 2\r\n\r\nok",
	"nocontent":   "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"upgrade":     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
}

func newRawUpstream(t testing.TB, seen *seenLog) *rawUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{l: l, seen: seen}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { u.serve(c) })
		}
	})
	return u
}

func (u *rawUpstream) url() string { return "http://" + u.l.Addr().String() }

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		name := strings.TrimPrefix(req.URL.Path, "/raw/")
		if name == "idleclose" && n > 0 {
			// Read the next request on a kept connection, then hang up
			// without an answer, as an upstream closing it idle would.
			_, _ = io.Copy(io.Discard, req.Body)
			u.seen.add("idleclose: hung up")
			return
		}
		if name != "early" {
			_, _ = io.Copy(io.Discard, req.Body)
		}
		// What was read so far (the request and its body, minus what
		// bufio read ahead) is the wire form of this request.
		wire := raw.Bytes()[:raw.Len()-br.Buffered()]
		u.seen.add(fmt.Sprintf("raw %s: %q", name, wire))
		raw.Next(len(wire))
		answer, ok := rawAnswers[name]
		if name == "idleclose" {
			answer, ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", true
		}
		if !ok {
			answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		switch name {
		case "early":
			// Unread request bytes would make the close a reset that can
			// drop the answer: half-close, and read until the proxy closes.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				_, _ = io.Copy(io.Discard, io.LimitReader(c, 4<<20))
			}
			return
		case "http10", "noframe", "short", "empty", "garbage", "conncl", "chunkbad", "upgrade":
			return
		}
	}
}

// diffRig is the two gateways, lean and standard, in front of the same
// upstreams.
type diffRig struct {
	seen          *seenLog
	id            atomic.Value // request id of the exchange under way
	n             atomic.Int64
	connMu        sync.Mutex
	busy          map[net.Conn]bool // upstream connections not idle or closed
	lean, std     string            // gateway addresses
	leanP, stdP   *Pool
	pools         []*Pool // every pool of both gateways
	upstream, raw string
}

// forgetIdle closes every idle upstream connection of both gateways, so
// that a comparison starts both from the same state: what one request
// left on a kept connection (bytes after a HEAD answer) must not decide
// the next one on one path only, depending on when the standard
// transport's read loop notices them.
func (rig *diffRig) forgetIdle() {
	for _, p := range rig.pools {
		for _, tr := range p.transports {
			tr.CloseIdleConnections()
		}
		for _, b := range p.backends {
			if b.lean != nil {
				b.lean.closeIdle(false)
			}
		}
	}
}

func newDiffRig(t testing.TB) *diffRig {
	t.Helper()
	if *standardOnly {
		t.Skip("compares the lean path with http.Transport, which -standard forces everywhere")
	}
	seen := &seenLog{}
	rig := &diffRig{seen: seen}
	up := httptest.NewUnstartedServer(diffUpstream(seen))
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.Config.ConnState = rig.track
	up.Start()
	t.Cleanup(up.Close)
	raw := newRawUpstream(t, seen)
	rig.upstream, rig.raw = up.URL, raw.url()
	// Two backends: /raw/ paths go to the raw one through a router below.
	mk := func(standard bool) (*Pool, *Pool, string) {
		opts := Options{StandardTransport: standard, Timeout: 5 * time.Second}
		main := newPool(t, backends(t, up.URL), opts)
		rawPool := newPool(t, backends(t, raw.url()), opts)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info := testInfo(r)
			info.ID, _ = rig.id.Load().(string)
			r = r.WithContext(reqinfo.With(r.Context(), info))
			if strings.HasPrefix(r.URL.Path, "/raw/") {
				rawPool.ServeHTTP(w, r)
				return
			}
			main.ServeHTTP(w, r)
		}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.Start()
		t.Cleanup(srv.Close)
		rig.pools = append(rig.pools, main, rawPool)
		return main, rawPool, srv.Listener.Addr().String()
	}
	rig.leanP, _, rig.lean = mk(false)
	rig.stdP, _, rig.std = mk(true)
	if rig.leanP.backends[0].lean == nil || rig.stdP.backends[0].lean != nil {
		t.Fatal("the pools do not take the paths under test")
	}
	return rig
}

// track follows the net/http upstream's connections, so that an exchange
// can wait for its handlers to finish: a handler may record what it saw
// after the client got its answer (a body the gateway gave up on).
func (rig *diffRig) track(c net.Conn, state http.ConnState) {
	rig.connMu.Lock()
	defer rig.connMu.Unlock()
	if rig.busy == nil {
		rig.busy = map[net.Conn]bool{}
	}
	switch state {
	case http.StateNew, http.StateActive:
		rig.busy[c] = true
	default:
		delete(rig.busy, c)
	}
}

func (rig *diffRig) settle(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		rig.connMu.Lock()
		n := len(rig.busy)
		rig.connMu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d upstream connections still busy", n)
		}
		time.Sleep(time.Millisecond) // polling, with the deadline above
	}
}

// outcome is what one exchange showed the client and the upstream.
type outcome struct {
	response string
	upstream []string
}

// exchange sends raw on a new client connection to addr and reads every
// response on it until the connection closes or want responses came.
func (rig *diffRig) exchange(t testing.TB, addr, raw string, methods []string) outcome {
	t.Helper()
	id := fmt.Sprintf("exchange-%06d", rig.n.Add(1)) // one width: the id is in bodies
	rig.id.Store(id)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() { _, _ = io.WriteString(conn, raw) }()
	br := bufio.NewReader(conn)
	var out strings.Builder
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			fmt.Fprintf(&out, "read error: %v\n", errKind(err))
			break
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = bytes.ReplaceAll(body, []byte(id), []byte("exchange-IDIDID"))
		fmt.Fprintf(&out, "%s %s close=%v cl=%d te=%v\n h=[%s]\n body=%s %q err=%v\n trailer=[%s]\n",
			resp.Proto, resp.Status, resp.Close, resp.ContentLength, resp.TransferEncoding,
			headerLines(resp.Header, "Date"), digest(body), head(body), errKind(err), headerLines(resp.Trailer))
		if resp.Close {
			break
		}
	}
	conn.Close()
	rig.settle(t)
	// Lines of this exchange, with its id made common to both paths.
	var seen []string
	for _, line := range rig.seen.take() {
		if strings.Contains(line, id) || !strings.Contains(line, "exchange-") {
			seen = append(seen, strings.ReplaceAll(line, id, "ID"))
		}
	}
	return outcome{response: strings.ReplaceAll(out.String(), id, "ID"), upstream: seen}
}

func errKind(err error) string {
	if err == nil {
		return "nil"
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "timeout"
	}
	return "error"
}

func head(b []byte) []byte { return b[:min(len(b), 64)] }

// compare runs raw through both gateways and reports any difference.
func (rig *diffRig) compare(t testing.TB, raw string, methods []string, closeMayDiffer bool) (lean, std outcome) {
	t.Helper()
	rig.forgetIdle()
	lean = rig.exchange(t, rig.lean, raw, methods)
	std = rig.exchange(t, rig.std, raw, methods)
	l, s := lean.response, std.response
	if closeMayDiffer {
		l, s = withoutClose(l), withoutClose(s)
	}
	if l != s {
		t.Errorf("client saw different responses\nrequest %q\nlean:\n%s\nstandard:\n%s", head([]byte(raw)), lean.response, std.response)
	}
	// When the gateway gave up on the client's body (its own 400), whether
	// the upstream got to see the request head before the connection
	// closed is a race on both paths.
	clientFault := strings.Contains(l, "400 Bad Request") && strings.Contains(l, "Cache-Control=no-store")
	if !clientFault && !slices.Equal(lean.upstream, std.upstream) {
		t.Errorf("upstream saw different requests\nrequest %q\nlean:\n%s\nstandard:\n%s", head([]byte(raw)),
			strings.Join(lean.upstream, "\n"), strings.Join(std.upstream, "\n"))
	}
	return lean, std
}

// withoutClose drops what tells whether the gateway keeps the client
// connection: the close flag and a Connection header.
func withoutClose(s string) string {
	s = strings.NewReplacer("close=true", "close=?", "close=false", "close=?").Replace(s)
	return strings.ReplaceAll(s, "Connection=close|", "")
}

func chunked(body []byte, size int, trailer string) string {
	var b strings.Builder
	for i := 0; i < len(body); i += size {
		part := body[i:min(i+size, len(body))]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(part), part)
	}
	b.WriteString("0\r\n" + trailer + "\r\n")
	return b.String()
}

func TestLeanMatchesStandard(t *testing.T) {
	rig := newDiffRig(t)
	big := bytes.Repeat([]byte("abcdefghij"), 100_000) // 1 MB
	small := []byte("hello, upstream")
	req := func(method, target string, hdr ...string) string {
		return method + " " + target + " HTTP/1.1\r\nHost: app.example.com\r\n" + strings.Join(hdr, "") + "\r\n"
	}
	cl := func(b []byte) string { return "Content-Length: " + strconv.Itoa(len(b)) + "\r\n" }
	const te = "Transfer-Encoding: chunked\r\n"
	type tc struct {
		name    string
		raw     string
		methods []string // one per response expected; GET when nil
		// The upstream answers before reading a large body. The standard
		// path hands its answer on while still sending, and the gateway
		// then closes the client connection with the body unread; the lean
		// path has sent the whole body by then, so the client connection
		// may stay open. The answer itself must be the same.
		clientCloseMayDiffer bool
	}
	tests := []tc{
		{"get with query and repeated headers", req("GET", "/echo/a%20b?x=1;y=%zz&z", "X-Multi: 1\r\nX-Multi: 2\r\nAccept: */*\r\nUser-Agent: curl/8\r\n"), nil, false},
		{"connection names other headers", req("GET", "/echo", "Connection: keep-alive, X-Secret, Te\r\nX-Secret: s\r\nTe: trailers\r\nKeep-Alive: 300\r\nProxy-Authorization: Basic eA==\r\n"), nil, false},
		{"post small body", req("POST", "/echo", cl(small)) + string(small), nil, false},
		{"post empty body", req("POST", "/echo", "Content-Length: 0\r\n"), nil, false},
		{"post chunked with trailers", req("POST", "/echo", te, "Trailer: X-Client-T\r\n") + chunked(small, 4, "X-Client-T: t1\r\n"), nil, false},
		{"chunk extensions", req("PUT", "/echo", te) + "5;name=v\r\nhello\r\n0\r\n\r\n", nil, false},
		{"large body", req("POST", "/echo", cl(big)) + string(big), nil, false},
		{"large chunked body", req("POST", "/echo", te) + chunked(big[:300_000], 7000, ""), nil, false},
		{"delete with body", req("DELETE", "/echo", cl(small)) + string(small), nil, false},
		{"head", req("HEAD", "/echo"), []string{"HEAD"}, false},
		{"head of large", req("HEAD", "/big"), []string{"HEAD"}, false},
		{"204", req("GET", "/204"), nil, false},
		{"304", req("GET", "/304", "If-None-Match: \"v1\"\r\n"), nil, false},
		{"response trailers", req("POST", "/trailers", cl(small)) + string(small), nil, false},
		{"large response", req("GET", "/big"), nil, false},
		{"large chunked response", req("GET", "/bigchunked"), nil, false},
		{"upstream asks to close", req("GET", "/close"), nil, false},
		{"upstream hop-by-hop headers", req("GET", "/hop"), nil, false},
		{"early hints", req("GET", "/hints"), nil, false},
		{"status with body", req("POST", "/status?code=500", cl(small)) + string(small), nil, false},
		{"answer before reading a small body", req("POST", "/early", cl(small)) + string(small), nil, false},
		{"http/1.0 client", "GET /echo HTTP/1.0\r\nHost: app.example.com\r\n\r\n", nil, false},
		{"expect continue", req("POST", "/echo", cl(small), "Expect: 100-continue\r\n") + string(small), nil, false},
		{"keep-alive across requests", strings.Repeat(req("GET", "/echo"), 3) + req("POST", "/echo", cl(small)) + string(small) + req("HEAD", "/echo") + req("GET", "/204") + req("GET", "/trailers"),
			[]string{"GET", "GET", "GET", "POST", "HEAD", "GET", "GET"}, false},
	}
	for name := range rawAnswers {
		tests = append(tests,
			tc{"raw " + name, req("GET", "/raw/"+name), nil, false},
			tc{"raw " + name + " post", req("POST", "/raw/"+name, cl(small)) + string(small), nil, false})
	}
	tests = append(tests,
		tc{"raw early with a large body", req("POST", "/raw/early", cl(big)) + string(big), nil, true},
		tc{"answer before reading a large body", req("POST", "/early", cl(big)) + string(big), nil, true},
		tc{"raw chunked request bytes", req("POST", "/raw/keepalive10", te, "Trailer: X-C\r\n") + chunked(small, 3, "X-C: 1\r\n"), nil, false},
	)
	slices.SortFunc(tests, func(a, b tc) int { return strings.Compare(a.name, b.name) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			methods := tt.methods
			if methods == nil {
				methods = []string{strings.Fields(tt.raw)[0]}
			}
			lean, _ := rig.compare(t, tt.raw, methods, tt.clientCloseMayDiffer)
			if lean.response == "" {
				t.Error("no response")
			}
		})
	}
}

// TestLeanRetriesIdleClose: a kept connection that the upstream closes
// when the next request arrives, without answering, is retried on a new
// connection for a replayable request and answered 502 for a POST, on both
// paths alike.
func TestLeanRetriesIdleClose(t *testing.T) {
	rig := newDiffRig(t)
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			var got [2]outcome
			for i, addr := range []string{rig.lean, rig.std} {
				// The first request leaves a kept upstream connection in
				// the pool; the second goes out on it.
				first := rig.exchange(t, addr, "GET /raw/idleclose HTTP/1.1\r\nHost: a\r\n\r\n", []string{"GET"})
				if !strings.Contains(first.response, "200 OK") {
					t.Fatalf("first response: %s", first.response)
				}
				got[i] = rig.exchange(t, addr, method+" /raw/idleclose HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", []string{method})
			}
			if got[0].response != got[1].response || !slices.Equal(got[0].upstream, got[1].upstream) {
				t.Errorf("lean:\n%s%q\nstandard:\n%s%q", got[0].response, got[0].upstream, got[1].response, got[1].upstream)
			}
			want := "200 OK"
			if method == "POST" {
				want = "502 Bad Gateway"
			}
			if !strings.Contains(got[0].response, want) {
				t.Errorf("lean answered %s, want %s", got[0].response, want)
			}
		})
	}
}

// FuzzLeanMatchesStandard builds requests from fuzzed parts and requires
// the two paths to agree on them.
func FuzzLeanMatchesStandard(f *testing.F) {
	f.Add(uint8(0), "/echo", "X-A", "1", []byte("body"), false, "")
	f.Add(uint8(1), "/trailers?q", "Connection", "X-A", []byte{}, true, "X-T: 1")
	f.Add(uint8(2), "/raw/clte", "Te", "trailers", []byte("x"), true, "")
	f.Add(uint8(3), "/early", "Content-Type", "a/b", bytes.Repeat([]byte("z"), 70000), false, "")
	f.Add(uint8(4), "/raw/hints", "Idempotency-Key", "k", []byte(nil), false, "")
	f.Add(uint8(5), "/status?code=304", "If-None-Match", "*", []byte("b"), true, "Trailer-X: y")
	methods := []string{"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"}
	rig := newDiffRig(f)
	f.Fuzz(func(t *testing.T, m uint8, target, name, value string, body []byte, chunk bool, trailer string) {
		// Keep the request one request: the framing is ours to choose.
		clean := func(s string) string { return strings.NewReplacer("\r", "", "\n", "").Replace(s) }
		target, name, value, trailer = clean(target), clean(name), clean(value), clean(trailer)
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t") || name == "" {
			return
		}
		if strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding") ||
			strings.EqualFold(name, "Host") || strings.EqualFold(name, "Expect") || strings.EqualFold(name, "Upgrade") {
			return // framing and routing are chosen below
		}
		method := methods[int(m)%len(methods)]
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.example.com\r\n%s: %s\r\n", method, target, name, value)
		if chunk {
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			if trailer != "" && !strings.Contains(trailer, ":") {
				trailer += ": v"
			}
			t2 := ""
			if trailer != "" {
				t2 = trailer + "\r\n"
			}
			b.WriteString(chunked(body, 1+int(m)%4096, t2))
		} else {
			fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
		}
		rig.compare(t, b.String(), []string{method}, len(body) > 64<<10)
	})
}

// BenchmarkUpstreamPath is one proxied GET through the pool on each path,
// to a real loopback upstream.
func BenchmarkUpstreamPath(b *testing.B) {
	for _, path := range []struct {
		name     string
		standard bool
	}{{"lean", false}, {"standard", true}} {
		b.Run(path.name, func(b *testing.B) {
			up := httptest.NewServer(nameHandler("ok"))
			b.Cleanup(up.Close)
			p, err := New("bench", []Backend{{URL: mustURL(b, up.URL), Weight: 1}},
				Options{StandardTransport: path.standard, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			r := httptest.NewRequest(http.MethodGet, "http://app.example.com/bench?x=1", nil)
			r = r.WithContext(reqinfo.With(context.Background(), testInfo(r)))
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				clear(w.h)
				p.ServeHTTP(w, r)
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkUpstreamPathParallel is BenchmarkUpstreamPath with 64 requests
// at a time, as a loaded gateway sees them. cpu-ns/op is the process's CPU
// time per request: the pool's, and the in-process upstream's, which is
// the same on both paths.
func BenchmarkUpstreamPathParallel(b *testing.B) {
	for _, path := range []struct {
		name     string
		standard bool
	}{{"lean", false}, {"standard", true}} {
		b.Run(path.name, func(b *testing.B) {
			up := httptest.NewServer(nameHandler("ok"))
			b.Cleanup(up.Close)
			p, err := New("bench", []Backend{{URL: mustURL(b, up.URL), Weight: 1}},
				Options{StandardTransport: path.standard, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			b.SetParallelism(32) // × GOMAXPROCS 2: 64 at a time
			b.ReportAllocs()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.com/bench?x=1", nil)
				r = r.WithContext(reqinfo.With(context.Background(), testInfo(r)))
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					p.ServeHTTP(w, r)
				}
			})
			reportCPU(b, cpu)
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.Helper()
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}
