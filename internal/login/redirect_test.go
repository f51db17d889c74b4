package login

import (
	"net/url"
	"strings"
	"testing"
)

const testHost = "app.example.com:8443"

var testAllowed = []string{"example.com", "partner.org"}

// openRedirects must all be refused for request host app.example.com with
// example.com and partner.org allowed.
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
	"app.example.com/x",
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
		if got, ok := SafeRedirect(target, testHost, testAllowed); ok {
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
		"http://APP.example.com/x",
		"HTTPS://app.example.com/x",
		"https://example.com/",
		"https://deep.sub.example.com/x",
		"https://partner.org/cb",
		"https://www.partner.org:444/cb",
		"/" + strings.Repeat("a", maxRedirectLen-1),
	} {
		got, ok := SafeRedirect(target, testHost, testAllowed)
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
		if _, ok := SafeRedirect(target, "app.example.com", nil); ok != want {
			t.Errorf("SafeRedirect(%q) ok = %v, want %v", target, ok, want)
		}
	}
	if _, ok := SafeRedirect("http://[::1]:9000/x", "[::1]:8080", nil); !ok {
		t.Error("an IPv6 request host does not match its own absolute URL")
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
		got, ok := SafeRedirect(target, testHost, testAllowed)
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
		if host != "app.example.com" && !domainAllowed(host, testAllowed) {
			t.Fatalf("accepted %q leaves for host %q", got, host)
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
	for _, bad := range []string{"https://evil.example/", "//evil.example/", "/relative", "javascript:alert(1)"} {
		if u, ok := h.svc.LoginURL(bad, "app.example.com"); ok {
			t.Errorf("LoginURL(%q) = %q, want refused", bad, u)
		}
	}
}
