package normalize

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

const maxRequestIDLen = 128

// RequestID returns the id that ties this request's log lines, error page and
// upstream call together. The X-Request-Id header is believed only when
// fromTrustedProxy is set (the peer is a trusted proxy, which assigned or
// vouches for the id): any client can send the header, and a chosen id would
// let it collide with, or pose as, another request in the logs and at the
// upstream. Even then only a well-formed id (1..128 characters of
// [A-Za-z0-9._:-]) is kept, so a proxy passing on a client's value cannot
// inject log syntax or oversized values; anything else gets a random 128-bit
// hex id.
func RequestID(h http.Header, fromTrustedProxy bool) string {
	if fromTrustedProxy {
		if id := h.Get("X-Request-Id"); validRequestID(id) {
			return id
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead).
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
