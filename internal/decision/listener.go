package decision

import (
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/normalize"
)

// Limits bound what a caller of the decision listeners may send and how
// long it may take: the gateway listener's settings and defaults.
type Limits = listen.Limits

// SetLimits applies the gateway's listener limits to the decision
// listeners. Call it before Start; without it the defaults apply.
func (s *Server) SetLimits(l Limits) { s.limits = l }

// refuseLogInterval spaces the log lines about refused connections, so a
// flood of connections from an untrusted address cannot flood the log.
const refuseLogInterval = time.Second

// trustListener closes a connection from an address outside the trusted
// proxies as soon as it is accepted, before a byte of it is read: an
// untrusted peer gets no TLS handshake, no parsed request and no answer.
// It is used when trust is by address only; with a client CA, the TLS
// handshake requires and verifies the client certificate instead.
type trustListener struct {
	net.Listener
	trust *normalize.Trust
	log   *slog.Logger
	what  string // which listener, for the log

	lastLog atomic.Int64  // unix nanoseconds of the last log line
	quiet   atomic.Uint64 // refusals not logged since then
}

func newTrustListener(ln net.Listener, trust *normalize.Trust, log *slog.Logger, what string) *trustListener {
	return &trustListener{Listener: ln, trust: trust, log: log, what: what}
}

// Accept returns the next connection from a trusted address; the others
// are closed here and never reach the server.
func (l *trustListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := connPeer(c)
		if l.trust.Contains(peer) {
			return c, nil
		}
		_ = c.Close()
		l.logRefused(peer)
	}
}

func (l *trustListener) logRefused(peer netip.Addr) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(refuseLogInterval) || !l.lastLog.CompareAndSwap(last, now) {
		l.quiet.Add(1)
		return
	}
	l.log.Warn("decision connection from an untrusted peer refused",
		"listener", l.what, "peer", addrString(peer), "also_refused_since_last_line", l.quiet.Swap(0))
}

// connPeer is the remote address of a TCP connection; the zero Addr,
// trusted by no one, for anything else.
func connPeer(c net.Conn) netip.Addr {
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return tcp.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
