package proxy

import "syscall"

// peekFD runs inside RawConn.Read: a non-blocking peek at what the
// upstream has sent. On an idle connection anything but nothing (EAGAIN)
// makes it unusable: the upstream's close, or data nobody asked for. While
// a body is written, the first bytes tell whether a final answer came.
func (c *leanConn) peekFD(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		c.peekState = peekNothing
	case err != nil || n <= 0:
		c.peekState = peekClosed
	default:
		c.peekState, c.peekN = peekData, n
	}
	return true
}
