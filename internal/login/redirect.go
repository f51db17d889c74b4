package login

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// maxRedirectLen bounds a redirect target; real return URLs are far
// shorter, and a long one is a probe or a smuggling attempt.
const maxRedirectLen = 2048

// maxDecodeDepth is how many rounds of percent-decoding a target is
// checked through, so that double-encoded tricks (%252F) are seen even if
// some hop decodes twice.
const maxDecodeDepth = 3

// RedirectDomain is one allowed redirect domain: a host name (or IP
// literal) that also covers its subdomains, and the port it allows. An
// entry without a port allows only the default ports (80 for http, 443 for
// https): another port on the same host is another site, often another
// service, and must be named to be trusted.
type RedirectDomain struct {
	Host string // lower-case, no trailing dot, IPv6 without brackets
	Port int    // 0: the default port of the target's scheme
}

// ParseRedirectDomain reads an allowed redirect domain: "example.com",
// ".example.com" (the same: subdomains are always included),
// "example.com:8443", "192.0.2.1", "[2001:db8::1]:8443". Schemes, paths,
// userinfo and wildcards are refused.
func ParseRedirectDomain(s string) (RedirectDomain, error) {
	errShape := errors.New("must be a host name such as example.com, optionally with a port (example.com:8443)")
	d := strings.ToLower(strings.TrimPrefix(s, "."))
	if strings.ContainsAny(d, "/@*?#%") {
		return RedirectDomain{}, errShape
	}
	host, port := d, ""
	switch {
	case strings.HasPrefix(d, "["):
		h, p, err := net.SplitHostPort(d)
		if err != nil {
			if !strings.HasSuffix(d, "]") {
				return RedirectDomain{}, errShape
			}
			h = strings.TrimSuffix(strings.TrimPrefix(d, "["), "]")
		}
		if net.ParseIP(h) == nil || !strings.Contains(h, ":") {
			return RedirectDomain{}, errShape
		}
		host, port = h, p
	case strings.Count(d, ":") == 1:
		host, port, _ = strings.Cut(d, ":")
		if port == "" {
			return RedirectDomain{}, errShape
		}
	case strings.Contains(d, ":"):
		if net.ParseIP(d) == nil { // a bare IPv6 literal
			return RedirectDomain{}, errShape
		}
	}
	if !validHostname(host) {
		return RedirectDomain{}, errShape
	}
	out := RedirectDomain{Host: host}
	if port != "" {
		n, ok := parsePort(port)
		if !ok {
			return RedirectDomain{}, errors.New("has a port that is not a number from 1 to 65535")
		}
		out.Port = n
	}
	return out, nil
}

// webOrigin is a scheme, host and port, the unit browsers isolate by.
type webOrigin struct {
	scheme string // "http" or "https"
	host   string // lower-case, IPv6 without brackets
	port   int    // explicit, or the scheme's default
}

// defaultPort is the port a URL of scheme uses when it names none.
func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// parsePort reads a decimal port from 1 to 65535 ("080" is 80, as
// browsers read it).
func parsePort(p string) (int, bool) {
	if p == "" || len(p) > 5 {
		return 0, false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(p)
	return n, err == nil && n > 0 && n <= 65535
}

// requestOrigin is the origin a request was made to: scheme as seen (or
// forwarded by a trusted proxy), host and port from its authority, the
// scheme's default port when the authority names none. An authority that
// does not parse yields an origin nothing matches.
func requestOrigin(scheme, authority string) webOrigin {
	scheme = strings.ToLower(scheme)
	o := webOrigin{scheme: scheme, host: hostname(authority), port: defaultPort(scheme)}
	if _, p, err := net.SplitHostPort(authority); err == nil && p != "" {
		n, ok := parsePort(p)
		if !ok {
			return webOrigin{}
		}
		o.port = n
	}
	return o
}

// SafeRedirect decides whether target may be redirected to after sign-in
// or sign-out, so that the login endpoints cannot be used as an open
// redirect. It accepts a path on the request's own origin ("/x?y") or an
// absolute http(s) URL whose origin — scheme, host and port, a missing
// port being the scheme's default — is the request's own (requestScheme
// and requestAuthority), or whose host is (a subdomain of) an allowed
// domain on the port that domain allows. Anything a browser might read
// differently from Go's URL parser is refused: "//host", backslashes,
// ASCII control characters and whitespace raw or percent-encoded, encoded
// slashes in the path, userinfo, raw non-ASCII, trailing dots, other
// schemes, and targets longer than 2 KiB. The accepted target is returned
// unchanged.
//
// requestScheme may be empty when the caller does not know it (a proxy's
// decision request): then the target's own scheme is assumed, and only
// host and port are compared.
func SafeRedirect(target, requestScheme, requestAuthority string, allowed []RedirectDomain) (string, bool) {
	if target == "" || len(target) > maxRedirectLen || !cleanRedirectText(target) {
		return "", false
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", false
	}
	if target[0] == '/' {
		// A path-absolute reference stays on this origin; "//x" would not.
		if len(target) > 1 && target[1] == '/' {
			return "", false
		}
		if u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			return "", false
		}
		return target, true
	}
	to, ok := targetOrigin(target, u)
	if !ok {
		return "", false
	}
	if requestScheme == "" {
		requestScheme = to.scheme
	}
	if to == requestOrigin(requestScheme, requestAuthority) || domainAllowed(to, allowed) {
		return target, true
	}
	return "", false
}

// targetOrigin checks an absolute target's shape and returns its origin.
func targetOrigin(target string, u *url.URL) (webOrigin, bool) {
	if (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return webOrigin{}, false
	}
	// Browsers read "https:\\x", "https:/x" and "https:///x" as
	// "https://x"; require the plain form so that Go and the browser agree.
	if !strings.HasPrefix(strings.ToLower(target), u.Scheme+"://") || strings.HasPrefix(target[len(u.Scheme)+3:], "/") {
		return webOrigin{}, false
	}
	o := webOrigin{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: defaultPort(u.Scheme)}
	if !validHostname(o.host) {
		return webOrigin{}, false
	}
	if p := u.Port(); p != "" {
		n, ok := parsePort(p)
		if !ok {
			return webOrigin{}, false
		}
		o.port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return webOrigin{}, false // "https://h:/" — an empty port, read differently by different parsers
	}
	return o, true
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

// domainAllowed reports whether o's host is one of domains or a subdomain
// of one, on the port that entry allows; the dot boundary keeps
// "evilexample.com" and "example.com.evil.net" out.
func domainAllowed(o webOrigin, domains []RedirectDomain) bool {
	for _, d := range domains {
		if o.host != d.Host && !strings.HasSuffix(o.host, "."+d.Host) {
			continue
		}
		if (d.Port == 0 && o.port == defaultPort(o.scheme)) || o.port == d.Port {
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
		_, ok := SafeRedirect(target, "", "", nil)
		return ok
	}
	u, err := url.Parse(target)
	if err != nil {
		return false
	}
	_, ok := SafeRedirect(target, u.Scheme, u.Host, nil)
	return ok
}
