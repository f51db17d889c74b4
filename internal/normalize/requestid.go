package normalize

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

const maxRequestIDLen = 128

// RequestID returns the id that ties this request's log lines, error page and
// upstream call together. A well-formed X-Request-Id (1..128 characters of
// [A-Za-z0-9._:-]) is kept so an id assigned further out survives the hop;
// anything else is replaced by a random 128-bit hex id, so a client cannot
// inject log syntax or oversized values through it.
func RequestID(h http.Header) string {
	if id := h.Get("X-Request-Id"); validRequestID(id) {
		return id
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
