package login

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds a redirect target; real return URLs are far
// shorter, and a long one is a probe or a smuggling attempt.
const maxRedirectLen = 2048

// maxDecodeDepth is how many rounds of percent-decoding a target is
// checked through, so that double-encoded tricks (%252F) are seen even if
// some hop decodes twice.
const maxDecodeDepth = 3

// SafeRedirect decides whether target may be redirected to after sign-in
// or sign-out, so that the login endpoints cannot be used as an open
// redirect. It accepts a path on the request's own host ("/x?y") or an
// absolute http(s) URL whose host is requestHost's host name or is (a
// subdomain of) one of allowedDomains. Anything a browser might read
// differently from Go's URL parser is refused: "//host", backslashes,
// ASCII control characters and whitespace raw or percent-encoded, encoded
// slashes in the path, userinfo, raw non-ASCII, other schemes, and targets
// longer than 2 KiB. The accepted target is returned unchanged.
func SafeRedirect(target, requestHost string, allowedDomains []string) (string, bool) {
	if target == "" || len(target) > maxRedirectLen || !cleanRedirectText(target) {
		return "", false
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", false
	}
	if target[0] == '/' {
		// A path-absolute reference stays on this host; "//x" would not.
		if len(target) > 1 && target[1] == '/' {
			return "", false
		}
		if u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			return "", false
		}
		return target, true
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	// Browsers read "https:\\x", "https:/x" and "https:///x" as
	// "https://x"; require the plain form so that Go and the browser agree.
	if !strings.HasPrefix(strings.ToLower(target), u.Scheme+"://") || strings.HasPrefix(target[len(u.Scheme)+3:], "/") {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if !validHostname(host) {
		return "", false
	}
	if host == hostname(requestHost) || domainAllowed(host, allowedDomains) {
		return target, true
	}
	return "", false
}

// cleanRedirectText rejects whitespace, control characters and
// backslashes anywhere, raw or after up to maxDecodeDepth rounds of
// percent-decoding, raw non-ASCII, malformed escapes, and encoded slashes
// or backslashes in the path.
func cleanRedirectText(s string) bool {
	for depth := 0; depth < maxDecodeDepth; depth++ {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c <= ' ' || c == 0x7f || c == '\\' || (depth == 0 && c >= 0x80) {
				return false
			}
		}
		path := s
		if i := strings.IndexAny(path, "?#"); i >= 0 {
			path = path[:i]
		}
		lp := strings.ToLower(path)
		if strings.Contains(lp, "%2f") || strings.Contains(lp, "%5c") {
			return false
		}
		if !strings.Contains(s, "%") {
			return true
		}
		decoded, err := url.PathUnescape(s)
		if err != nil {
			// A malformed escape in the target itself is refused; one that
			// only appears after decoding is a literal '%' and ends the checks.
			return depth > 0
		}
		s = decoded
	}
	return true
}

// domainAllowed reports whether host is one of domains or a subdomain of
// one; the dot boundary keeps "evilexample.com" and
// "example.com.evil.net" out.
func domainAllowed(host string, domains []string) bool {
	for _, d := range domains {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// validHostname accepts lower-case DNS names and IP literals only.
func validHostname(h string) bool {
	if h == "" || h[0] == '.' || h[len(h)-1] == '.' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// wellFormedRedirect checks a configured redirect target's shape; whether
// its host is acceptable is decided per request by SafeRedirect.
func wellFormedRedirect(target string) bool {
	if strings.HasPrefix(target, "/") {
		_, ok := SafeRedirect(target, "", nil)
		return ok
	}
	u, err := url.Parse(target)
	if err != nil {
		return false
	}
	_, ok := SafeRedirect(target, u.Host, nil)
	return ok
}
