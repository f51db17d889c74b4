package normalize

import (
	"net/netip"
	"strings"
)

// maxHostLen is the longest DNS name (RFC 1035), without the trailing dot.
const maxHostLen = 253

// Host returns the canonical host of a Host header (or X-Forwarded-Host)
// value: lower-case, port stripped, one trailing dot stripped, IPv6 brackets
// removed. Routes match on this form, so "API.example.com.:443" and
// "api.example.com" reach the same route. ok is false for an empty or
// malformed value, which the gateway answers with 400 rather than guessing.
func Host(hostport string) (host string, ok bool) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 || !validPort(hostport[end+1:]) {
			return "", false
		}
		addr, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", false
		}
		return addr.String(), true
	}
	host = hostport
	if i := strings.IndexByte(hostport, ':'); i >= 0 {
		if !validPort(hostport[i:]) {
			return "", false
		}
		host = hostport[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > maxHostLen {
		return "", false
	}
	prev := byte('.')
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if prev == '.' {
				return "", false // empty label
			}
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		prev = c
	}
	if prev == '.' {
		return "", false // more than one trailing dot
	}
	return strings.ToLower(host), true
}

// validPort reports whether s is empty or ':' followed by a decimal port in
// 1..65535.
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	n := 0
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return 0 < n && n <= 65535
}
