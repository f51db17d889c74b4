package listen

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// An idle HTTP/1 keep-alive connection costs net/http about 17 KB: its
// goroutine's 8 KB stack, a 4 KB read and a 4 KB write buffer, and the
// connection's state, all kept while it waits for the next request.
// Parking hands such a connection back from net/http once it has been
// idle for parkAfter: net/http frees all of that, and the socket waits
// on a goroutine of its own with a small stack and nothing else, about
// 3 KB. When the client sends again, the socket is handed to net/http as
// a new connection (a fresh goroutine and buffers from net/http's pools).
// A busy connection never parks, so the request path pays nothing but a
// state check per read.
//
// Only plain-listener HTTP/1 connections park: a TLS session lives above
// the socket, HTTP/2 keeps its own state, and a hijacked connection is
// the handler's.
var parkAfter = time.Second // a variable for tests

// bufioSize is net/http's read buffer size: a read of exactly this many
// bytes while idle means net/http holds no unread byte of the client's
// (bufio.Reader.fill reads into the whole buffer only when it is empty;
// connReader hands over its one background-read byte without a read).
const bufioSize = 4096

// h2Preface starts an HTTP/2 prior-knowledge connection; one never parks.
var h2Preface = []byte("PRI * HTTP/2.0\r\n")

// connection states, as parkConn tracks them.
const (
	stActive  = iota // serving, or never to park
	stIdle           // net/http reported StateIdle; its idle deadline comes next
	stWaiting        // net/http waits for the next request under our shorter deadline
	stParking        // our deadline passed: net/http is closing it, and Close parks it
	stNoPark         // HTTP/2 or hijacked: never park
)

// parkListener serves accepted connections and woken parked ones.
type parkListener struct {
	net.Listener
	conns  chan acceptResult
	closed chan struct{}
	once   sync.Once

	mu     sync.Mutex
	parked map[*parkConn]struct{}
	parks  atomic.Int64 // connections parked so far (tests)
}

// parkedNow counts the connections parked at the moment.
func (l *parkListener) parkedNow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parked)
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newParkListener(ln net.Listener) *parkListener {
	l := &parkListener{
		Listener: ln,
		conns:    make(chan acceptResult),
		closed:   make(chan struct{}),
		parked:   make(map[*parkConn]struct{}),
	}
	go l.acceptLoop()
	return l
}

func (l *parkListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if c != nil {
			c = &parkConn{Conn: c, l: l}
		}
		select {
		case l.conns <- acceptResult{c, err}:
		case <-l.closed:
			if c != nil {
				c.Close()
			}
			return
		}
	}
}

func (l *parkListener) Accept() (net.Conn, error) {
	select {
	case r := <-l.conns:
		return r.c, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes every parked connection (they are
// idle, and Shutdown closes idle connections).
func (l *parkListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	l.mu.Lock()
	parked := l.parked
	l.parked = map[*parkConn]struct{}{}
	l.mu.Unlock()
	for c := range parked {
		c.Conn.Close()
	}
	return err
}

// connState is the http.Server.ConnState hook that drives parking.
func (l *parkListener) connState(c net.Conn, s http.ConnState) {
	pc, ok := c.(*parkConn)
	if !ok {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch {
	case pc.state == stNoPark:
	case s == http.StateHijacked:
		pc.state = stNoPark
	case s == http.StateIdle:
		pc.state = stIdle
	case s == http.StateActive || s == http.StateNew:
		if pc.state != stParking {
			pc.state = stActive
		}
	}
}

// park waits, on a goroutine with a small stack, for the client to send
// again or for the idle deadline net/http had set, then hands the
// connection back to net/http or closes it.
func (l *parkListener) park(c *parkConn, deadline time.Time) {
	raw, ok := c.Conn.(syscall.Conn)
	if !ok {
		c.Conn.Close()
		return
	}
	rc, err := raw.SyscallConn()
	if err != nil || c.Conn.SetReadDeadline(deadline) != nil {
		c.Conn.Close()
		return
	}
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		c.Conn.Close()
		return
	default:
	}
	l.parked[c] = struct{}{}
	l.mu.Unlock()
	l.parks.Add(1)

	go func() {
		var b [1]byte
		eof := false
		err := rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				return false // not readable yet: wait in the poller
			}
			eof = n == 0 || err != nil
			return true
		})
		l.mu.Lock()
		_, mine := l.parked[c]
		delete(l.parked, c)
		l.mu.Unlock()
		if !mine { // the listener closed it
			return
		}
		if err != nil || eof { // idle deadline, or the client went away
			c.Conn.Close()
			return
		}
		c.mu.Lock()
		c.state = stActive
		c.mu.Unlock()
		select {
		case l.conns <- acceptResult{c: c}:
		case <-l.closed:
			c.Conn.Close()
		}
	}()
}

// parkConn is an accepted connection that can be taken back from
// net/http while idle.
type parkConn struct {
	net.Conn
	l *parkListener

	mu           sync.Mutex
	state        int
	first        bool      // the first read was seen (HTTP/2 preface check)
	idleDeadline time.Time // the deadline net/http set for the idle wait
}

func (c *parkConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.state == stIdle && !t.IsZero() {
		// net/http's idle wait: wait at most parkAfter before parking.
		c.state = stWaiting
		c.idleDeadline = t
		c.mu.Unlock()
		return c.Conn.SetReadDeadline(earliest(t, time.Now().Add(parkAfter)))
	}
	if c.state == stWaiting || c.state == stIdle {
		c.state = stActive
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *parkConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	if c.state == stWaiting || c.state == stIdle {
		c.state = stActive
	}
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *parkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	switch c.state {
	case stActive, stNoPark, stParking:
		first := !c.first
		c.first = true
		c.mu.Unlock()
		n, err := c.Conn.Read(p)
		if first && n > 0 && bytes.HasPrefix(h2Preface, p[:min(n, len(h2Preface))]) {
			c.mu.Lock()
			c.state = stNoPark
			c.mu.Unlock()
		}
		return n, err
	case stWaiting:
		if len(p) != bufioSize {
			// net/http holds part of a pipelined request: no parking;
			// put its own idle deadline back.
			c.state = stActive
			dl := c.idleDeadline
			c.mu.Unlock()
			if err := c.Conn.SetReadDeadline(dl); err != nil {
				return 0, err
			}
			return c.Conn.Read(p)
		}
		dl := c.idleDeadline
		c.mu.Unlock()
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		defer c.mu.Unlock()
		var ne net.Error
		if n == 0 && errors.As(err, &ne) && ne.Timeout() && time.Now().Before(dl) && c.state == stWaiting {
			c.state = stParking // net/http closes it now; Close parks it
			return 0, err
		}
		c.state = stActive
		if n > 0 {
			// Back to net/http's own deadline until it sets the next.
			c.Conn.SetReadDeadline(dl)
		}
		return n, err
	default: // stIdle: a read before net/http set its idle deadline
		c.state = stActive
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
}

func (c *parkConn) Close() error {
	c.mu.Lock()
	parking := c.state == stParking
	if parking {
		c.state = stActive // park once, however often net/http closes
	}
	dl := c.idleDeadline
	c.mu.Unlock()
	if parking {
		c.l.park(c, dl)
		return nil
	}
	return c.Conn.Close()
}

// CloseWrite lets net/http half-close as it does a *net.TCPConn.
func (c *parkConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
