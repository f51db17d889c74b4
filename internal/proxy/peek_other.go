//go:build !linux

package proxy

// peekFD cannot peek without blocking here: an idle connection is taken as
// alive, and a request it fails is retried as net/http retries it.
func (c *leanConn) peekFD(uintptr) bool { return true }
