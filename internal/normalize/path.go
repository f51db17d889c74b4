// Package normalize is the first pipeline stage: it turns what a client sent
// into the one form every later stage sees. The path that routes match on is
// the path forwarded upstream, the host is canonical, X-Forwarded-* is
// believed only from trusted proxies, and headers a client could use to claim
// an identity are removed before anything can read them.
package normalize

import (
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Path is a request path in canonical form. Routing matches Path and the
// proxy forwards Escaped, so the gateway and the upstream agree on which
// resource was asked for.
type Path struct {
	// Path is canonical and percent-decoded once; routes match on it.
	Path string
	// Escaped is Path escaped for the wire; it is forwarded upstream verbatim.
	Escaped string
	// EncodedSlash reports that the path contains %2F or %5C (one that a
	// ".." segment removed does not count). They stay encoded (upper-case,
	// not separators) in both fields; the gateway refuses such paths unless
	// the matched route opts in, because upstreams disagree on whether they
	// separate segments.
	EncodedSlash bool
	// DoubleEncoded reports that Path, decoded once, still holds a
	// percent-escape of '.', '/', '\\', NUL or '%' (any case): the client
	// sent "%252e%252e" or "%252F". Routing sees "%2e%2e", but an upstream
	// that decodes twice sees ".." or a separator, so the gateway refuses
	// such paths unless the matched route opts in as for EncodedSlash.
	DoubleEncoded bool
}

// Error is a rejected path or request target. Reason is a short fixed
// description that is safe to show to the client: it never echoes the input.
type Error struct{ Reason string }

func (e *Error) Error() string { return "normalize: " + e.Reason }

// The rejections are fixed values: rejecting costs no allocation, and no
// reason can carry client input.
var (
	errNoSlash     = &Error{"path must start with /"}
	errBadEscape   = &Error{"invalid percent-encoding in path"}
	errControl     = &Error{"control character in path"}
	errBackslash   = &Error{"backslash in path"}
	errBadChar     = &Error{"'?' or '#' in path"}
	errEscapesRoot = &Error{"path escapes root"}
	errDotParam    = &Error{"dot segment with parameters in path"}
	errAsterisk    = &Error{"asterisk-form request target is not supported"}
	errFragment    = &Error{"fragment in request target"}
	errNoTarget    = &Error{"missing request target"}
	errBadTarget   = &Error{"request target is neither a path nor an http(s) URL"}
	errBadUTF8     = &Error{"path is not valid UTF-8 once percent-decoded"}
)

// keep marks the bytes Escaped carries as themselves: unreserved, sub-delims,
// ':', '@' and '/'. Everything else is percent-encoded.
var keep = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,;=:@/" {
		t[c] = true
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// CanonicalPath canonicalizes raw, the escaped path of a request target
// without its query. It decodes exactly once, resolves dot segments after
// decoding, collapses repeated slashes and keeps a trailing slash. It rejects
// what upstreams would read differently from the gateway: invalid escapes,
// control characters, backslashes, ".." above the root, dot segments
// carrying ";" parameters (Tomcat's "..;/") and decoded bytes that are not
// UTF-8 (overlong forms such as %C0%AF for "/", surrogates such as
// %ED%A0%80, stray continuation bytes), which decoders disagree about.
func CanonicalPath(raw string) (Path, error) {
	if raw == "" {
		return Path{Path: "/", Escaped: "/"}, nil
	}
	if raw[0] != '/' {
		return Path{}, errNoSlash
	}
	if isCanonical(raw) {
		return Path{Path: raw, Escaped: raw}, nil
	}
	return canonicalize(raw)
}

// isCanonical reports whether raw (starting with '/') is already in canonical
// form, so the common case returns without allocating.
func isCanonical(raw string) bool {
	start := 1
	for i := 1; i <= len(raw); i++ {
		if i < len(raw) && raw[i] != '/' {
			if !keep[raw[i]] {
				return false
			}
			continue
		}
		seg := raw[start:i]
		if dots, _ := dotSegment(seg); dots || (seg == "" && i < len(raw)) {
			return false
		}
		start = i + 1
	}
	return true
}

// dotSegment reports whether the part of a decoded segment before any ';' is
// "." or "..", and whether a ';' follows it.
func dotSegment[S ~string | ~[]byte](seg S) (dots, params bool) {
	n := 0
	for n < len(seg) && seg[n] != ';' {
		n++
	}
	dots = n == 1 && seg[0] == '.' || n == 2 && seg[0] == '.' && seg[1] == '.'
	return dots, n < len(seg)
}

func canonicalize(raw string) (Path, error) {
	// Stack buffers keep typical paths down to one allocation.
	var pbuf, ebuf [256]byte
	p, e := pbuf[:0], ebuf[:0]
	// marks[i] is where segment i starts in p and e (at its leading '/').
	type mark struct{ p, e int }
	var mbuf [32]mark
	marks := mbuf[:0]
	encodedSlash := false
	trailing := false
	nonASCII := false // only then can the UTF-8 check fail

	for start := 1; start <= len(raw); {
		end := strings.IndexByte(raw[start:], '/')
		if end < 0 {
			end = len(raw)
		} else {
			end += start
		}
		seg := raw[start:end]
		last := end == len(raw)
		start = end + 1
		if seg == "" {
			trailing = last
			continue
		}

		m := mark{len(p), len(e)}
		p = append(p, '/')
		e = append(e, '/')
		for j := 0; j < len(seg); j++ {
			c := seg[j]
			switch {
			case c == '%':
				if j+2 >= len(seg) || !ishex(seg[j+1]) || !ishex(seg[j+2]) {
					return Path{}, errBadEscape
				}
				c = unhex(seg[j+1])<<4 | unhex(seg[j+2])
				j += 2
				if c == '/' || c == '\\' {
					encodedSlash = true
					enc := "%2F"
					if c == '\\' {
						enc = "%5C"
					}
					p = append(p, enc...)
					e = append(e, enc...)
					continue
				}
			case c == '\\':
				return Path{}, errBackslash
			case c == '?' || c == '#':
				return Path{}, errBadChar
			}
			if c < 0x20 || c == 0x7f {
				return Path{}, errControl
			}
			p = append(p, c)
			if keep[c] {
				e = append(e, c)
			} else {
				nonASCII = nonASCII || c >= 0x80 // never in keep
				e = append(e, '%', upperHex[c>>4], upperHex[c&15])
			}
		}

		dots, params := dotSegment(p[m.p+1:])
		if !dots {
			marks = append(marks, m)
			trailing = false
			continue
		}
		if params {
			return Path{}, errDotParam
		}
		up := len(p)-m.p == 3
		p, e = p[:m.p], e[:m.e]
		if up {
			if len(marks) == 0 {
				return Path{}, errEscapesRoot
			}
			prev := marks[len(marks)-1]
			marks = marks[:len(marks)-1]
			p, e = p[:prev.p], e[:prev.e]
		}
		trailing = true
	}
	if trailing || len(p) == 0 {
		p = append(p, '/')
		e = append(e, '/')
	}
	if nonASCII && !utf8.Valid(p) {
		return Path{}, errBadUTF8
	}
	both := string(p) + string(e) // one allocation for both fields
	path, escaped := both[:len(p)], both[len(p):]
	// A dot segment may have removed every encoded separator again.
	encodedSlash = encodedSlash && (strings.Contains(escaped, "%2F") || strings.Contains(escaped, "%5C"))
	return Path{Path: path, Escaped: escaped, EncodedSlash: encodedSlash, DoubleEncoded: doubleEncoded(escaped)}, nil
}

// doubleEncoded reports whether escaped, an Escaped path, holds a '%'
// (written "%25") followed by the hex digits of '.', '/', '\\', NUL or '%'
// in any case: once decoded, the path still carries that escape. Hex digits
// are always written as themselves in Escaped, and the separators kept
// encoded are written "%2F" and "%5C", never after "%25" by accident.
func doubleEncoded(escaped string) bool {
	for {
		i := strings.Index(escaped, "%25")
		if i < 0 || i+5 > len(escaped) {
			return false
		}
		switch a, b := escaped[i+3], escaped[i+4]|0x20; {
		case a == '0' && b == '0', a == '2' && (b == 'e' || b == 'f' || b == '5'), a == '5' && b == 'c':
			return true
		}
		escaped = escaped[i+3:]
	}
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// Request canonicalizes the path of r's request target as the client sent it
// (r.RequestURI), not r.URL.Path, which net/http has already decoded and
// which therefore can no longer tell "%2F" from "/". The target must be in
// origin-form ("/p?q") or absolute-form ("http://h/p?q").
func Request(r *http.Request) (Path, error) {
	target := r.RequestURI
	switch {
	case target == "":
		return Path{}, errNoTarget
	case target == "*":
		return Path{}, errAsterisk
	case strings.IndexByte(target, '#') >= 0:
		return Path{}, errFragment
	}
	if target[0] != '/' {
		rest, ok := cutScheme(target)
		if !ok {
			return Path{}, errBadTarget
		}
		i := strings.IndexAny(rest, "/?")
		if i < 0 || rest[i] == '?' {
			return Path{Path: "/", Escaped: "/"}, nil
		}
		target = rest[i:]
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	return CanonicalPath(target)
}

// cutScheme removes a leading "http://" or "https://" (any case).
func cutScheme(target string) (rest string, ok bool) {
	for _, scheme := range [...]string{"http://", "https://"} {
		if len(target) >= len(scheme) && strings.EqualFold(target[:len(scheme)], scheme) {
			return target[len(scheme):], true
		}
	}
	return "", false
}

// SetURL points u at p so that u.EscapedPath() returns p.Escaped exactly:
// the outgoing request then carries the path the route was matched on.
func SetURL(u *url.URL, p Path) {
	u.RawPath = p.Escaped
	if strings.IndexByte(p.Escaped, '%') < 0 {
		u.Path = p.Escaped
		return
	}
	// Escaped is produced by this package and always decodes.
	u.Path, _ = url.PathUnescape(p.Escaped)
}
