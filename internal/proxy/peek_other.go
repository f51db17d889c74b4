//go:build !linux

package proxy

// peekFD cannot peek without blocking here: an idle connection is taken as
// alive, and a request it fails is retried as net/http retries it; a body
// write that stalls is not cut short by an early answer.
func (c *leanConn) peekFD(uintptr) bool {
	c.peekState = peekNothing
	return true
}
