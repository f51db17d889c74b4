package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The lean path forwards plain HTTP/1.1 requests to http:// backends without
// http.Transport. http.Transport gives every upstream connection a read loop
// and a write loop goroutine and hands each request and response between
// them and the caller over channels; on loopback those hand-offs, and the
// wake-ups they cost, are most of a proxied request's CPU. Here the handler
// goroutine writes the request with (*http.Request).Write, reads the answer
// with http.ReadResponse and then reads the body itself, on a connection
// taken from a small per-backend idle stack. Everything else (upgrades,
// Expect: 100-continue, CONNECT, h2c and https backends) keeps
// http.Transport.

const (
	leanMaxIdle        = 256              // idle connections kept per backend, as MaxIdleConnsPerHost
	leanIdleTimeout    = 90 * time.Second // as http.Transport's IdleConnTimeout
	leanMaxHeaderBytes = 10 << 20         // response header limit, http.Transport's default
	leanBufferSize     = 4 << 10          // read and write buffer per connection, as http.Transport
)

// errServerClosedIdle is a reused connection that the upstream had closed
// while it sat idle: the request never reached it.
var errServerClosedIdle = errors.New("upstream closed an idle connection")

// leanTransport is the lean path to one backend: its dialer and its idle
// connections, most recently used on top.
type leanTransport struct {
	addr    string // host:port to dial
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration // response header timeout: the route's timeout
	now     func() time.Time

	mu     sync.Mutex
	idle   []*leanConn // oldest first
	timer  *time.Timer // closes connections idle longer than leanIdleTimeout
	armed  bool
	closed bool
}

func newLeanTransport(addr string, o Options) *leanTransport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second} // as newTransport
	return &leanTransport{addr: addr, dial: d.DialContext, timeout: o.Timeout, now: time.Now}
}

// leanEligible reports whether out, as ReverseProxy prepared it, is an
// ordinary request for the lean path. ReverseProxy has removed every
// hop-by-hop header, so a Connection header left is one it set for an
// upgrade.
func leanEligible(out *http.Request) bool {
	h := out.Header
	return out.Method != http.MethodConnect && len(h["Connection"]) == 0 && len(h["Upgrade"]) == 0 &&
		len(h["Expect"]) == 0 && !out.Close
}

// leanConn is one upstream connection with its buffers. It counts what it
// wrote, to tell a request that never left from one that did, and limits
// what it reads while response headers are read.
type leanConn struct {
	conn      net.Conn
	raw       syscall.RawConn // for the liveness check of an idle connection; nil if unavailable
	br        *bufio.Reader
	bw        *bufio.Writer
	t         *leanTransport
	nwrite    int64
	writeErr  error // the first error writing to conn
	readLimit int64
	idleAt    time.Time
	reused    bool
	abort     func() // closes conn when the request's context ends
	guard     bool   // writing a request body: check for an early answer when writes stall
	peek      func(fd uintptr) bool
	peekState int // of the last peek: peekNothing, peekClosed or peekData
	peekN     int
	peekBuf   [12]byte // "HTTP/1.1 200": enough to tell an interim answer from a final one
}

const (
	peekNothing = iota // nothing to read (or no way to peek)
	peekClosed         // the upstream closed, or the connection failed
	peekData           // bytes are waiting: peekBuf[:peekN] holds the first
)

// leanStallCheck is how long a write of a request body may block before
// the connection is checked for an early answer.
const leanStallCheck = 250 * time.Millisecond

// errAnsweredEarly stops a request body when the upstream has answered
// (with a final status) before reading it all.
var errAnsweredEarly = errors.New("the upstream answered before reading the whole request body")

func (c *leanConn) Read(p []byte) (int, error) {
	if c.readLimit <= 0 {
		return 0, fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", leanMaxHeaderBytes)
	}
	if int64(len(p)) > c.readLimit {
		p = p[:c.readLimit]
	}
	n, err := c.conn.Read(p)
	c.readLimit -= int64(n)
	return n, err
}

// Write writes p to the upstream. While a body is written (guard), a write
// that blocks for leanStallCheck looks whether the upstream has already
// answered: an upstream that answers without reading the body, and neither
// reads nor closes, would otherwise hold the request forever, where
// http.Transport's read loop passes the answer on.
func (c *leanConn) Write(p []byte) (int, error) {
	written := 0
	for {
		if c.guard {
			if err := c.conn.SetWriteDeadline(c.t.now().Add(leanStallCheck)); err != nil {
				return written, c.failWrite(err)
			}
		}
		n, err := c.conn.Write(p[written:])
		written += n
		c.nwrite += int64(n)
		switch {
		case err == nil:
			return written, nil
		case !c.guard || !errors.Is(err, os.ErrDeadlineExceeded):
			return written, c.failWrite(err)
		case c.answered():
			return written, c.failWrite(errAnsweredEarly)
		}
	}
}

func (c *leanConn) failWrite(err error) error {
	if c.writeErr == nil {
		c.writeErr = err
	}
	return err
}

// answered reports whether the upstream has sent the start of a final
// answer (or closed). An interim 1xx answer does not count: the upstream
// may still want the rest of the body.
func (c *leanConn) answered() bool {
	if c.raw == nil || c.raw.Read(c.peek) != nil {
		return false
	}
	switch c.peekState {
	case peekClosed:
		return true
	case peekData:
		b := c.peekBuf[:c.peekN]
		return len(b) >= 10 && string(b[:5]) == "HTTP/" && b[9] != '1'
	}
	return false
}

// ReadFrom copies a large request body through a pooled 32 KiB buffer
// instead of the 4 KiB write buffer, as http.Transport's writes are.
func (c *leanConn) ReadFrom(r io.Reader) (int64, error) {
	buf := buffers.Get()
	defer buffers.Put(buf)
	return io.CopyBuffer(writerOnly{c}, r, buf)
}

type writerOnly struct{ io.Writer }

func (c *leanConn) close() { _ = c.conn.Close() }

func (t *leanTransport) newConn(conn net.Conn) *leanConn {
	c := &leanConn{conn: conn, t: t, readLimit: leanMaxHeaderBytes}
	c.br = bufio.NewReaderSize(c, leanBufferSize)
	c.bw = bufio.NewWriterSize(c, leanBufferSize)
	c.abort = c.close
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.peek = c.peekFD
		}
	}
	return c
}

// get returns an idle connection that still looks alive, or dials one.
func (t *leanTransport) get(ctx context.Context) (*leanConn, error) {
	for {
		c := t.popIdle()
		if c == nil {
			break
		}
		if c.alive() {
			return c, nil
		}
		c.close()
	}
	conn, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	return t.newConn(conn), nil
}

func (t *leanTransport) popIdle() *leanConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.idle)
	if n == 0 {
		return nil
	}
	c := t.idle[n-1]
	t.idle[n-1] = nil
	t.idle = t.idle[:n-1]
	if t.now().Sub(c.idleAt) >= leanIdleTimeout {
		// The newest is too old, so are all below it.
		for i, o := range t.idle {
			o.close()
			t.idle[i] = nil
		}
		t.idle = t.idle[:0]
		c.close()
		return nil
	}
	return c
}

// alive reports whether an idle connection can carry a request: nothing
// arrived on it while idle (neither data nor the upstream's close). A
// connection closed by the upstream while idle is seen here instead of
// failing the next request, as http.Transport's read loop sees it.
func (c *leanConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekState == peekNothing
}

// put keeps c for reuse, or closes it when the stack is full or the pool
// is closed.
func (t *leanTransport) put(c *leanConn) {
	c.reused = true
	c.readLimit = leanMaxHeaderBytes
	c.nwrite = 0
	t.mu.Lock()
	if t.closed || len(t.idle) >= leanMaxIdle {
		t.mu.Unlock()
		c.close()
		return
	}
	c.idleAt = t.now()
	t.idle = append(t.idle, c)
	if !t.armed {
		t.armed = true
		if t.timer == nil {
			t.timer = time.AfterFunc(leanIdleTimeout, t.sweep)
		} else {
			t.timer.Reset(leanIdleTimeout)
		}
	}
	t.mu.Unlock()
}

// sweep closes connections idle for longer than leanIdleTimeout and arms
// itself for the next one to expire.
func (t *leanTransport) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	cut := 0
	for cut < len(t.idle) && now.Sub(t.idle[cut].idleAt) >= leanIdleTimeout {
		t.idle[cut].close()
		cut++
	}
	n := copy(t.idle, t.idle[cut:])
	clear(t.idle[n:])
	t.idle = t.idle[:n]
	if n == 0 || t.closed {
		t.armed = false
		return
	}
	t.timer.Reset(leanIdleTimeout - now.Sub(t.idle[0].idleAt))
}

// closeIdle closes the idle connections; with final, connections still in
// use are closed when their request ends instead of being kept.
func (t *leanTransport) closeIdle(final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, c := range t.idle {
		c.close()
		t.idle[i] = nil
	}
	t.idle = t.idle[:0]
	if final {
		t.closed = true
		if t.timer != nil {
			t.timer.Stop()
		}
	}
}

// RoundTrip sends req on a pooled connection, or a new one. A request that
// failed on a reused connection before the upstream saw it is sent again on
// another connection when net/http would do so: nothing was written and the
// body can be produced again, or the upstream closed the connection before
// answering and the request is replayable.
func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := validRequest(req); err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	for {
		c, err := t.get(ctx)
		if err != nil {
			closeBody(req)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, err
		}
		resp, err, retry := t.roundTrip(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		if !retry || !c.reused {
			return nil, err
		}
		if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			again := *req
			again.Body = body
			req = &again
		}
	}
}

// roundTrip sends one request on c and reads the response headers. It
// reports whether a failure may be retried on a fresh connection.
func (t *leanTransport) roundTrip(ctx context.Context, c *leanConn, req *http.Request) (_ *http.Response, _ error, retry bool) {
	stop := context.AfterFunc(ctx, c.abort)
	fail := func(err error) (*http.Response, error, bool) {
		stop()
		c.close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx), false
		}
		return nil, err, retry
	}

	c.guard = outgoingLength(req) != 0
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if c.guard {
		c.guard = false
		if derr := c.conn.SetWriteDeadline(time.Time{}); err == nil && derr != nil {
			err = c.failWrite(derr)
		}
	}
	if err != nil {
		if c.writeErr == nil {
			// Reading the client's body failed: the caller tells the
			// client so.
			return fail(err)
		}
		if c.nwrite == 0 {
			retry = outgoingLength(req) == 0 || req.GetBody != nil
			return fail(err)
		}
		// The upstream may have answered and closed before reading the
		// whole body: pass its answer on. (http.Transport does when its
		// read loop wins the race with the write error.)
		resp, rerr := t.readResponse(ctx, c, req)
		if rerr != nil {
			return fail(fmt.Errorf("write request: %w", err))
		}
		resp.Close = true
		return t.wrap(c, req, resp, stop), nil, false
	}
	resp, err := t.readResponse(ctx, c, req)
	if err != nil {
		var first firstByteError
		if errors.As(err, &first) {
			retry = replayable11(req)
			if errors.Is(first.err, io.EOF) {
				err = errServerClosedIdle
			}
		}
		return fail(err)
	}
	return t.wrap(c, req, resp, stop), nil, false
}

// firstByteError is a failure to read the first byte of the response.
type firstByteError struct{ err error }

func (e firstByteError) Error() string { return "read response: " + e.err.Error() }
func (e firstByteError) Unwrap() error { return e.err }

// readResponse reads the response headers within the route's timeout,
// passing 1xx responses on as http.Transport does.
func (t *leanTransport) readResponse(_ context.Context, c *leanConn, req *http.Request) (*http.Response, error) {
	if err := c.conn.SetReadDeadline(t.now().Add(t.timeout)); err != nil {
		return nil, err
	}
	if _, err := c.br.Peek(1); err != nil {
		return nil, firstByteError{err}
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.readLimit <= 0 {
				err = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", leanMaxHeaderBytes)
			}
			return nil, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			break
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
			c.readLimit = leanMaxHeaderBytes
		}
	}
	if err := c.conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	c.readLimit = 1<<63 - 1
	return resp, nil
}

// wrap hands resp to the caller with a body that gives c back to the pool
// once read to its end, if the response allows keep-alive.
func (t *leanTransport) wrap(c *leanConn, req *http.Request, resp *http.Response, stop func() bool) *http.Response {
	keep := !resp.Close && !req.Close && resp.StatusCode >= 200
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgrade nobody asked for: the proxy refuses it, and the
		// connection is not reusable.
		keep = false
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		release(c, keep, stop)
		resp.Body = http.NoBody
		return resp
	}
	resp.Body = &leanBody{rc: resp.Body, c: c, keep: keep, stop: stop}
	return resp
}

// release ends c's request: back to the pool when keep allows and the
// request's context did not close it, else closed.
func release(c *leanConn, keep bool, stop func() bool) {
	if stop() && keep {
		c.t.put(c)
		return
	}
	c.close()
}

// leanBody is a response body on a lean connection. Read to its end (the
// trailers included), it releases the connection; closed early, or on a
// read error, it closes the connection rather than reading the rest.
type leanBody struct {
	rc   io.ReadCloser
	c    *leanConn
	keep bool
	stop func() bool
	done bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.done = true
		release(b.c, b.keep && err == io.EOF, b.stop)
	}
	return n, err
}

func (b *leanBody) Close() error {
	if !b.done {
		b.done = true
		release(b.c, false, b.stop)
	}
	return nil
}

// validRequest refuses what http.Transport refuses before sending.
func validRequest(req *http.Request) error {
	if req.URL == nil || req.URL.Host == "" {
		return errors.New("http: no Host in request URL")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				// The value may be a credential: not in the error.
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

func outgoingLength(req *http.Request) int64 {
	if req.Body == nil || req.Body == http.NoBody {
		return 0
	}
	if req.ContentLength != 0 {
		return req.ContentLength
	}
	return -1
}

// replayable11 is net/http's rule for resending a request whose connection
// failed before the answer began: an idempotent method, or an
// Idempotency-Key, and a body that is absent or can be produced again.
func replayable11(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(req.Header["Idempotency-Key"]) > 0 || len(req.Header["X-Idempotency-Key"]) > 0
}
