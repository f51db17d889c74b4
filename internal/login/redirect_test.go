package login

import (
	"net/url"
	"strings"
	"testing"
)

const (
	testScheme = "https"
	testHost   = "app.example.com:8443"
)

var testAllowed = mustDomains("example.com", "partner.org", "partner.org:444")

// mustDomains parses allowed redirect domains for a test table.
func mustDomains(entries ...string) []RedirectDomain {
	out := make([]RedirectDomain, 0, len(entries))
	for _, e := range entries {
		d, err := ParseRedirectDomain(e)
		if err != nil {
			panic(e + ": " + err.Error())
		}
		out = append(out, d)
	}
	return out
}

// openRedirects must all be refused for a request to
// https://app.example.com:8443 with example.com (default ports) and
// partner.org (default ports and 444) allowed.
var openRedirects = []string{
	"",
	"//evil.com",
	"//evil.com/path",
	"///evil.com",
	"////evil.com",
	"/\\evil.com",
	"\\/evil.com",
	"\\\\evil.com",
	"/%09/evil.com",
	"/%2F/evil.com",
	"/%2f/evil.com",
	"/%5C/evil.com",
	"/%5c/evil.com",
	"/%252F/evil.com",
	"/%25252F/evil.com",
	"/\t/evil.com",
	"/\n/evil.com",
	"/\r/evil.com",
	"/ /evil.com",
	"/x\x00y",
	"/x\x7fy",
	"/x%00y",
	"/x%0d%0aSet-Cookie:x=y",
	"/x%7f",
	"/x?y=%20",
	"/x#%09",
	" /x",
	"/x ",
	"\t/x",
	"https:evil.com",
	"https:/evil.com",
	"https:///evil.com",
	"https:\\\\evil.com",
	"https:/\\evil.com",
	"javascript:alert(1)",
	"JavaScript:alert(1)",
	"javascript://example.com/%0aalert(1)",
	"data:text/html,<script>alert(1)</script>",
	"vbscript:msgbox(1)",
	"ftp://example.com/",
	"file:///etc/passwd",
	"mailto:a@example.com",
	"https://example.com@evil.com/",
	"https://app.example.com@evil.com/",
	"https://user:pass@app.example.com/",
	"https://example.com.evil.com/",
	"https://app.example.com.evil.com/",
	"https://evilexample.com/",
	"https://notpartner.org/",
	"https://partner.org.evil/",
	"https://evil.com/",
	"https://evil.com#@app.example.com",
	"https://evil.com?@app.example.com",
	"https://evil.com\\@app.example.com",
	"https://evil.com%2F@app.example.com",
	"https://evil.com%00.example.com/",
	"https://evil.com%252F.example.com/",
	"https://app.example.com./",
	"https://.example.com/",
	"https://ex\u0430mple.com/",
	"https://app.example.com/\u202e",
	"//app.example.com/",
	"//app.example.com:8443/",
	"app.example.com/x",
	"http://app.example.com:8443/",
	"https://app.example.com:9443/",
	"https://app.example.com:8080/",
	"https://example.com:8443/",
	"https://partner.org:445/",
	"https://app.example.com:0/",
	"https://app.example.com:65536/",
	"https://app.example.com:/",
	"https://app.example.com:8443x/",
	"https://app.example.com:-1/",
	"evil.com",
	"x",
	"?x",
	"#x",
	"/" + strings.Repeat("a", maxRedirectLen),
	"/x%zz",
	"/x%",
}

func TestSafeRedirectRejects(t *testing.T) {
	for _, target := range openRedirects {
		if got, ok := SafeRedirect(target, testScheme, testHost, testAllowed); ok {
			t.Errorf("SafeRedirect(%q) accepted it as %q", target, got)
		}
	}
}

func TestSafeRedirectAccepts(t *testing.T) {
	for _, target := range []string{
		"/",
		"/x",
		"/x?y=1&z=%2F",
		"/x/y#frag",
		"/caf%C3%A9",
		"/a%2e%2e/b",
		"https://app.example.com/",
		"https://app.example.com:8443/x?y",
		"https://APP.Example.com:8443/x",
		"https://app.example.com:08443/x",
		"https://app.example.com:443/x",
		"http://APP.example.com/x",
		"HTTPS://app.example.com/x",
		"https://example.com/",
		"https://deep.sub.example.com/x",
		"https://partner.org/cb",
		"https://www.partner.org:444/cb",
		"http://www.partner.org:444/cb",
		"http://partner.org:80/cb",
		"/" + strings.Repeat("a", maxRedirectLen-1),
	} {
		got, ok := SafeRedirect(target, testScheme, testHost, testAllowed)
		if !ok || got != target {
			t.Errorf("SafeRedirect(%q) = %q, %v; want it accepted unchanged", target, got, ok)
		}
	}
}

func TestSafeRedirectOnlyOwnHostWithoutAllowedDomains(t *testing.T) {
	for target, want := range map[string]bool{
		"https://app.example.com/x":   true,
		"https://other.example.com/x": false,
		"https://example.com/x":       false,
		"http://[::1]:8080/x":         false,
	} {
		if _, ok := SafeRedirect(target, "https", "app.example.com", nil); ok != want {
			t.Errorf("SafeRedirect(%q) ok = %v, want %v", target, ok, want)
		}
	}
}

// TestSafeRedirectOrigins: a target is the request's own only with the
// same scheme, host and port (a missing port is the scheme's default), and
// an allowed domain without a port allows only the default ports.
func TestSafeRedirectOrigins(t *testing.T) {
	tests := []struct {
		name, scheme, host string
		allowed            []string
		target             string
		want               bool
	}{
		{"same origin", "http", "h.test:8080", nil, "http://h.test:8080/x", true},
		{"same host other port", "http", "h.test:8080", nil, "http://h.test:9090/x", false},
		{"same host default port from non-default", "http", "h.test:8080", nil, "http://h.test/x", false},
		{"same host non-default from default", "http", "h.test", nil, "http://h.test:8080/x", false},
		{"explicit default port in target", "http", "h.test", nil, "http://h.test:80/x", true},
		{"explicit default port in request", "http", "h.test:80", nil, "http://h.test/x", true},
		{"https default port", "https", "h.test", nil, "https://h.test:443/x", true},
		{"https default port in request", "https", "h.test:443", nil, "https://h.test/x", true},
		{"scheme downgrade", "https", "h.test", nil, "http://h.test/x", false},
		{"scheme upgrade", "http", "h.test", nil, "https://h.test/x", false},
		{"http on 443", "https", "h.test", nil, "http://h.test:443/x", false},
		{"leading zeros", "http", "h.test:8080", nil, "http://h.test:08080/x", true},
		{"port zero", "http", "h.test", nil, "http://h.test:0/x", false},
		{"port too large", "http", "h.test", nil, "http://h.test:65536/x", false},
		{"empty port", "http", "h.test", nil, "http://h.test:/x", false},
		{"upper case", "http", "h.test:8080", nil, "HTTP://H.TEST:8080/x", true},
		{"upper-case request host", "http", "H.Test:8080", nil, "http://h.test:8080/x", true},
		{"trailing dot target", "http", "h.test:8080", nil, "http://h.test.:8080/x", false},
		{"trailing dot request", "http", "h.test.:8080", nil, "http://h.test:8080/x", false},
		{"userinfo same origin", "http", "h.test:8080", nil, "http://u@h.test:8080/x", false},
		{"userinfo hides host", "http", "h.test:8080", nil, "http://h.test:8080@evil.test/x", false},
		{"backslash", "http", "h.test:8080", nil, "http://h.test:8080\\@evil.test/x", false},
		{"backslash scheme", "http", "h.test:8080", nil, "http:\\\\h.test:8080/x", false},
		{"scheme-relative same origin", "http", "h.test:8080", nil, "//h.test:8080/x", false},
		{"scheme-relative other port", "http", "h.test:8080", nil, "//h.test:9090/x", false},
		{"path stays", "http", "h.test:8080", nil, "/x?rd=http://h.test:9090/", true},
		{"ipv6 same origin", "http", "[::1]:8080", nil, "http://[::1]:8080/x", true},
		{"ipv6 other port", "http", "[::1]:8080", nil, "http://[::1]:9000/x", false},
		{"ipv6 default port", "http", "[::1]:8080", nil, "http://[::1]/x", false},
		{"ipv6 request without port", "http", "[::1]", nil, "http://[::1]:80/x", true},
		{"ipv6 upper case", "http", "[::abcd]:8080", nil, "http://[::ABCD]:8080/x", true},
		{"ipv6 other address", "http", "[::1]:8080", nil, "http://[::2]:8080/x", false},
		{"ipv6 zone", "http", "[::1]:8080", nil, "http://[::1%25eth0]:8080/x", false},
		{"ipv4 other port", "http", "127.0.0.1:8080", nil, "http://127.0.0.1:8081/x", false},
		{"domain default ports only", "https", "a.test", []string{"example.com"}, "https://app.example.com:8443/x", false},
		{"domain default https", "https", "a.test", []string{"example.com"}, "https://app.example.com/x", true},
		{"domain default http", "https", "a.test", []string{"example.com"}, "http://app.example.com/x", true},
		{"domain http on 443", "https", "a.test", []string{"example.com"}, "http://app.example.com:443/x", false},
		{"domain with port", "https", "a.test", []string{"example.com:8443"}, "https://app.example.com:8443/x", true},
		{"domain with port, http", "https", "a.test", []string{"example.com:8443"}, "http://example.com:8443/x", true},
		{"domain with port, default port", "https", "a.test", []string{"example.com:8443"}, "https://app.example.com/x", false},
		{"dotted domain with port", "https", "a.test", []string{".example.com:8443"}, "https://app.example.com:8443/x", true},
		{"dotted domain other port", "https", "a.test", []string{".example.com:8443"}, "https://app.example.com:8444/x", false},
		{"two entries", "https", "a.test", []string{"example.com", "example.com:8443"}, "https://app.example.com:8443/x", true},
		{"ipv6 domain with port", "http", "a.test", []string{"[::1]:9000"}, "http://[::1]:9000/x", true},
		{"ipv6 domain other port", "http", "a.test", []string{"[::1]:9000"}, "http://[::1]:9001/x", false},
		{"ipv6 domain no port", "http", "a.test", []string{"::1"}, "http://[::1]/x", true},
		{"domain suffix boundary", "https", "a.test", []string{"example.com:8443"}, "https://evilexample.com:8443/x", false},
		{"unknown scheme compares host and port", "", "h.test:8080", nil, "https://h.test:8080/x", true},
		{"unknown scheme other port", "", "h.test:8080", nil, "http://h.test:9090/x", false},
		{"unknown scheme default port", "", "h.test", nil, "https://h.test:8443/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := SafeRedirect(tt.target, tt.scheme, tt.host, mustDomains(tt.allowed...))
			if ok != tt.want || (ok && got != tt.target) {
				t.Errorf("SafeRedirect(%q) from %s://%s with %v = %q, %v; want %v", tt.target, tt.scheme, tt.host, tt.allowed, got, ok, tt.want)
			}
		})
	}
}

func TestParseRedirectDomain(t *testing.T) {
	tests := []struct {
		in   string
		want RedirectDomain
		err  bool
	}{
		{in: "example.com", want: RedirectDomain{Host: "example.com"}},
		{in: ".Example.COM", want: RedirectDomain{Host: "example.com"}},
		{in: "example.com:8443", want: RedirectDomain{Host: "example.com", Port: 8443}},
		{in: ".example.com:8443", want: RedirectDomain{Host: "example.com", Port: 8443}},
		{in: "192.0.2.1:80", want: RedirectDomain{Host: "192.0.2.1", Port: 80}},
		{in: "[2001:DB8::1]:8443", want: RedirectDomain{Host: "2001:db8::1", Port: 8443}},
		{in: "[2001:db8::1]", want: RedirectDomain{Host: "2001:db8::1"}},
		{in: "2001:db8::1", want: RedirectDomain{Host: "2001:db8::1"}},
		{in: "", err: true},
		{in: ".", err: true},
		{in: "example.com:", err: true},
		{in: "example.com:0", err: true},
		{in: "example.com:65536", err: true},
		{in: "example.com:http", err: true},
		{in: "example.com.", err: true},
		{in: "https://example.com", err: true},
		{in: "example.com/x", err: true},
		{in: "*.example.com", err: true},
		{in: "u@example.com", err: true},
		{in: "[example.com]:80", err: true},
		{in: "[2001:db8::1", err: true},
		{in: "2001:db8::1:80:x", err: true},
		{in: "a:1:2", err: true},
	}
	for _, tt := range tests {
		got, err := ParseRedirectDomain(tt.in)
		if (err != nil) != tt.err || (err == nil && got != tt.want) {
			t.Errorf("ParseRedirectDomain(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// FuzzSafeRedirect checks the property that matters: whatever is accepted,
// resolved the way a browser resolves a Location header against the
// current page, stays on the request's host or an allowed domain, and
// carries no control characters or backslashes.
func FuzzSafeRedirect(f *testing.F) {
	for _, s := range openRedirects {
		f.Add(s)
	}
	f.Add("/x?y")
	f.Add("https://a.example.com/")
	f.Fuzz(func(t *testing.T, target string) {
		got, ok := SafeRedirect(target, testScheme, testHost, testAllowed)
		if !ok {
			return
		}
		if got != target {
			t.Fatalf("accepted %q changed to %q", target, got)
		}
		if strings.ContainsAny(got, "\\\x00\t\n\r ") {
			t.Fatalf("accepted %q with a backslash, control or space", got)
		}
		base, _ := url.Parse("https://" + testHost + "/current/page")
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted %q that does not parse: %v", got, err)
		}
		res := base.ResolveReference(ref)
		host := strings.ToLower(res.Hostname())
		if res.User != nil || (res.Scheme != "https" && res.Scheme != "http") {
			t.Fatalf("accepted %q resolves to %q", got, res)
		}
		port := res.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[res.Scheme]
		}
		port = strings.TrimLeft(port, "0")
		sameOrigin := res.Scheme == "https" && host == "app.example.com" && port == "8443"
		defaultPort := (res.Scheme == "http" && port == "80") || (res.Scheme == "https" && port == "443")
		inDomain := func(d string) bool { return host == d || strings.HasSuffix(host, "."+d) }
		allowed := (inDomain("example.com") && defaultPort) || (inDomain("partner.org") && (defaultPort || port == "444"))
		if !sameOrigin && !allowed {
			t.Fatalf("accepted %q leaves for %s://%s:%s", got, res.Scheme, host, port)
		}
		if strings.HasPrefix(got, "/") && (strings.HasPrefix(got, "//") || ref.Host != "") {
			t.Fatalf("accepted %q is a network-path reference", got)
		}
	})
}

func TestLoginURL(t *testing.T) {
	h := newHarness(t, setup{})
	got, ok := h.svc.LoginURL("https://app.example.com/x?y=1", "app.example.com")
	if !ok || got != "https://app.example.com/.sekisho/start?rd=https%3A%2F%2Fapp.example.com%2Fx%3Fy%3D1" {
		t.Fatalf("LoginURL = %q %v", got, ok)
	}
	for _, bad := range []string{
		"https://evil.example/", "//evil.example/", "/relative", "javascript:alert(1)",
		"https://app.example.com:8443/x", "http://app.example.com:8080/x",
	} {
		if u, ok := h.svc.LoginURL(bad, "app.example.com"); ok {
			t.Errorf("LoginURL(%q) = %q, want refused", bad, u)
		}
	}
	// With the scheme known, another scheme on the same host is refused too.
	if u, ok := h.svc.LoginURL("http://app.example.com/x", "https://app.example.com"); ok {
		t.Errorf("LoginURL over http for an https request = %q, want refused", u)
	}
	if _, ok := h.svc.LoginURL("https://app.example.com:8443/x", "https://app.example.com:8443"); !ok {
		t.Error("LoginURL refused its own origin with an explicit port")
	}
}
