package proxy

import "syscall"

// peekFD runs inside RawConn.Read on an idle connection: a non-blocking
// peek that sees the upstream's close (0 bytes) or unsolicited data, either
// of which makes the connection unusable. EAGAIN is the healthy answer.
func (c *leanConn) peekFD(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
	case err != nil, n >= 0:
		c.peekDead = true
	}
	return true
}
