package normalize

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

type pathCase struct {
	raw     string
	path    string
	escaped string
	slash   bool
	double  bool
	err     error
}

var pathCases = []pathCase{
	// Already canonical: returned as is.
	{raw: "/", path: "/", escaped: "/"},
	{raw: "/api/v1/users/123", path: "/api/v1/users/123", escaped: "/api/v1/users/123"},
	{raw: "/a/b/", path: "/a/b/", escaped: "/a/b/"},
	{raw: "/a;b/c", path: "/a;b/c", escaped: "/a;b/c"},
	{raw: "/~u/!$&'()*+,;=:@", path: "/~u/!$&'()*+,;=:@", escaped: "/~u/!$&'()*+,;=:@"},
	{raw: "/...", path: "/...", escaped: "/..."},
	{raw: "/.a/a./..a", path: "/.a/a./..a", escaped: "/.a/a./..a"},
	{raw: "", path: "/", escaped: "/"},

	// Dot segments resolved after decoding; repeated slashes collapsed.
	{raw: "/api1/../api2", path: "/api2", escaped: "/api2"},
	{raw: "/a//b/./c/", path: "/a/b/c/", escaped: "/a/b/c/"},
	{raw: "//a", path: "/a", escaped: "/a"},
	{raw: "/a//", path: "/a/", escaped: "/a/"},
	{raw: "/a/b/..", path: "/a/", escaped: "/a/"},
	{raw: "/a/.", path: "/a/", escaped: "/a/"},
	{raw: "/a/..", path: "/", escaped: "/"},
	{raw: "/.", path: "/", escaped: "/"},
	{raw: "/./", path: "/", escaped: "/"},
	{raw: "/a/./b", path: "/a/b", escaped: "/a/b"},
	{raw: "/a/.//b", path: "/a/b", escaped: "/a/b"},
	{raw: "/a/%2e/b", path: "/a/b", escaped: "/a/b"},
	{raw: "/a/b/%2E%2e/c", path: "/a/c", escaped: "/a/c"},
	{raw: "/a/.%2e", path: "/", escaped: "/"},

	// Decoded exactly once; Escaped uses one fixed escaping.
	{raw: "/caf%C3%A9", path: "/café", escaped: "/caf%C3%A9"},
	{raw: "/caf%c3%a9", path: "/café", escaped: "/caf%C3%A9"},
	{raw: "/café", path: "/café", escaped: "/caf%C3%A9"},
	{raw: "/%41%7e", path: "/A~", escaped: "/A~"},
	{raw: "/a%20b", path: "/a b", escaped: "/a%20b"},
	{raw: "/a%3Fb%23c", path: "/a?b#c", escaped: "/a%3Fb%23c"},
	{raw: "/a%3bb", path: "/a;b", escaped: "/a;b"},
	{raw: `/"<>`, path: `/"<>`, escaped: "/%22%3C%3E"},
	{raw: "/%25", path: "/%", escaped: "/%25"},
	{raw: "/100%25/a%25zz/%25e/%2541", path: "/100%/a%zz/%e/%41", escaped: "/100%25/a%25zz/%25e/%2541"},

	// Still a percent-escape of '.', '/', '\', NUL or '%' once decoded:
	// an upstream that decodes twice sees a dot segment or separator.
	{raw: "/%252e%252e/x", path: "/%2e%2e/x", escaped: "/%252e%252e/x", double: true},
	{raw: "/public/%252E%252E/admin", path: "/public/%2E%2E/admin", escaped: "/public/%252E%252E/admin", double: true},
	{raw: "/%252F", path: "/%2F", escaped: "/%252F", double: true},
	{raw: "/a%252fb", path: "/a%2fb", escaped: "/a%252fb", double: true},
	{raw: "/a%255cb", path: "/a%5cb", escaped: "/a%255cb", double: true},
	{raw: "/a%255Cb", path: "/a%5Cb", escaped: "/a%255Cb", double: true},
	{raw: "/a%2500", path: "/a%00", escaped: "/a%2500", double: true},
	{raw: "/a%252525", path: "/a%2525", escaped: "/a%252525", double: true},
	{raw: "/%25%32%65%25%32%65/x", path: "/%2e%2e/x", escaped: "/%252e%252e/x", double: true},
	{raw: "/a%25/%252e", path: "/a%/%2e", escaped: "/a%25/%252e", double: true},
	{raw: "/%252e/../x", path: "/x", escaped: "/x"}, // removed by ".." before it is forwarded

	// Encoded separators stay encoded (upper-case) and are flagged.
	{raw: "/a%2Fb", path: "/a%2Fb", escaped: "/a%2Fb", slash: true},
	{raw: "/a%2fb", path: "/a%2Fb", escaped: "/a%2Fb", slash: true},
	{raw: "/a%5cb", path: "/a%5Cb", escaped: "/a%5Cb", slash: true},
	{raw: "/%2e%2e%2Fx", path: "/..%2Fx", escaped: "/..%2Fx", slash: true},
	{raw: "/a/%2F/..", path: "/a/", escaped: "/a/"},
	{raw: "/a/%2F/../%5c", path: "/a/%5C", escaped: "/a/%5C", slash: true},

	// Rejected.
	{raw: "a/b", err: errNoSlash},
	{raw: "/%2e%2e/x", err: errEscapesRoot},
	{raw: "/..", err: errEscapesRoot},
	{raw: "/a/../..", err: errEscapesRoot},
	{raw: "/a/../../b", err: errEscapesRoot},
	{raw: "/..;/x", err: errDotParam},
	{raw: "/a/.;x/b", err: errDotParam},
	{raw: "/a/..;", err: errDotParam},
	{raw: "/a/%2e%2e%3b/b", err: errDotParam},
	{raw: "/a%00b", err: errControl},
	{raw: "/a%1fb", err: errControl},
	{raw: "/a%7Fb", err: errControl},
	{raw: "/a\tb", err: errControl},
	{raw: "/a\x7fb", err: errControl},
	{raw: "/%zz", err: errBadEscape},
	{raw: "/%", err: errBadEscape},
	{raw: "/%4", err: errBadEscape},
	{raw: "/%4/", err: errBadEscape},
	{raw: `/a\b`, err: errBackslash},
	{raw: `/..\x`, err: errBackslash},
	{raw: "/a?b", err: errBadChar},
	{raw: "/a#b", err: errBadChar},

	// UTF-8: valid multi-byte forms pass; anything decoders could read
	// differently (overlong "/" or ".", surrogates, stray or truncated
	// sequences, code points above U+10FFFF) is rejected, escaped or raw.
	{raw: "/%E6%97%A5/%F0%9F%94%91", path: "/日/🔑", escaped: "/%E6%97%A5/%F0%9F%94%91"},
	{raw: "/%EF%BF%BF", path: "/\uffff", escaped: "/%EF%BF%BF"},
	{raw: "/%C0%AF/../x", path: "/x", escaped: "/x"}, // removed by ".." before it is forwarded
	{raw: "/%C0%AF", err: errBadUTF8},
	{raw: "/a/%C0%AE%C0%AE/b", err: errBadUTF8},
	{raw: "/%E0%80%AF", err: errBadUTF8},
	{raw: "/%F0%80%80%AF", err: errBadUTF8},
	{raw: "/%ED%A0%80", err: errBadUTF8},
	{raw: "/%ED%BF%BF", err: errBadUTF8},
	{raw: "/%80", err: errBadUTF8},
	{raw: "/%C3", err: errBadUTF8},
	{raw: "/%C3/x", err: errBadUTF8},
	{raw: "/%E6%97", err: errBadUTF8},
	{raw: "/%F4%90%80%80", err: errBadUTF8},
	{raw: "/%FF", err: errBadUTF8},
	{raw: "/a\xc0\xafb", err: errBadUTF8},
	{raw: "/caf\xe9", err: errBadUTF8},
}

func TestCanonicalPath(t *testing.T) {
	for _, tc := range pathCases {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := CanonicalPath(tc.raw)
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("CanonicalPath(%q) = %+v, %v; want error %v", tc.raw, got, err, tc.err)
				}
				return
			}
			want := Path{Path: tc.path, Escaped: tc.escaped, EncodedSlash: tc.slash, DoubleEncoded: tc.double}
			if err != nil || got != want {
				t.Fatalf("CanonicalPath(%q) = %+v, %v; want %+v", tc.raw, got, err, want)
			}
		})
	}
}

func TestCanonicalPathIdempotent(t *testing.T) {
	for _, tc := range pathCases {
		if tc.err != nil {
			continue
		}
		first, err := CanonicalPath(tc.raw)
		if err != nil {
			t.Fatalf("CanonicalPath(%q): %v", tc.raw, err)
		}
		again, err := CanonicalPath(first.Escaped)
		if err != nil || again != first {
			t.Errorf("CanonicalPath(%q) = %+v, %v; want %+v (from %q)", first.Escaped, again, err, first, tc.raw)
		}
	}
}

// The reason is shown to clients; it must not reflect their input (XSS, log
// injection, leaking a token someone pasted into a URL).
func TestErrorDoesNotEchoInput(t *testing.T) {
	for _, raw := range []string{"/tok3n%00", "/tok3n/../..", "/tok3n%zz", `/tok3n\`, "/tok3n/..;/"} {
		_, err := CanonicalPath(raw)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("CanonicalPath(%q) error %v is not *Error", raw, err)
		}
		if strings.Contains(e.Reason, "tok3n") || strings.Contains(err.Error(), "tok3n") {
			t.Errorf("error for %q echoes input: %q", raw, err)
		}
	}
}

func TestCanonicalPathFastPathDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := CanonicalPath("/api/v1/users/123"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("CanonicalPath on a canonical path: %v allocs, want 0", allocs)
	}
}

func TestRequest(t *testing.T) {
	tests := []struct {
		target  string
		escaped string
		err     error
	}{
		{target: "/a/../b?x=/../y", escaped: "/b"},
		{target: "/a%2fb?q", escaped: "/a%2Fb"},
		{target: "/?", escaped: "/"},
		{target: "http://example.com/a/./b?q=1", escaped: "/a/b"},
		{target: "HTTPS://example.com:8443//x", escaped: "/x"},
		{target: "http://example.com", escaped: "/"},
		{target: "http://example.com?q=/x", escaped: "/"},
		{target: "http://example.com/%2e%2e/x", err: errEscapesRoot},
		{target: "/a#frag", err: errFragment},
		{target: "http://example.com/a#frag", err: errFragment},
		{target: "*", err: errAsterisk},
		{target: "a/b", err: errBadTarget},
		{target: "example.com:443", err: errBadTarget},
		{target: "ftp://example.com/a", err: errBadTarget},
		{target: "", err: errNoTarget},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			r := &http.Request{Method: http.MethodGet, RequestURI: tc.target, URL: &url.URL{Path: "/decoy"}}
			got, err := Request(r)
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("Request(%q) = %+v, %v; want error %v", tc.target, got, err, tc.err)
				}
				return
			}
			if err != nil || got.Escaped != tc.escaped {
				t.Fatalf("Request(%q) = %+v, %v; want Escaped %q", tc.target, got, err, tc.escaped)
			}
		})
	}
}

// TestRequestOverTheWire sends raw request lines to a real server, so the test
// sees RequestURI exactly as net/http delivers it (decoded r.URL.Path would
// have lost the difference between "%2F" and "/").
func TestRequestOverTheWire(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := Request(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s|%s|%t", p.Path, p.Escaped, p.EncodedSlash)
	}))
	defer srv.Close()

	tests := []struct {
		target string
		status int
		body   string
	}{
		{"/a/%2e%2e/b?x", 200, "/b|/b|false"},
		{"/files/a%2fb", 200, "/files/a%2Fb|/files/a%2Fb|true"},
		{"http://other.example/x/../y", 200, "/y|/y|false"},
		{"/caf%C3%A9", 200, "/café|/caf%C3%A9|false"},
		{"/a#b", 400, "normalize: fragment in request target\n"},
		{"/..;/admin", 400, "normalize: dot segment with parameters in path\n"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			status, body := rawGet(t, srv.Listener.Addr().String(), tc.target)
			if status != tc.status || body != tc.body {
				t.Errorf("GET %s = %d %q; want %d %q", tc.target, status, body, tc.status, tc.body)
			}
		})
	}
}

// rawGet sends one GET with target written verbatim into the request line.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", target); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestSetURL(t *testing.T) {
	for _, raw := range []string{
		"/api/v1/users/123",
		"/a%2Fb/c",
		"/a%5Cb",
		"/%252e%252e/x",
		"/caf%C3%A9",
		"/a%20b;c=d",
		"/%25",
		"/a%3Fb",
	} {
		t.Run(raw, func(t *testing.T) {
			p, err := CanonicalPath(raw)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse("http://upstream.internal:3000/old/path?q=1")
			if err != nil {
				t.Fatal(err)
			}
			SetURL(u, p)
			if got := u.EscapedPath(); got != p.Escaped {
				t.Errorf("EscapedPath() = %q; want %q", got, p.Escaped)
			}
			if want := "http://upstream.internal:3000" + p.Escaped + "?q=1"; u.String() != want {
				t.Errorf("String() = %q; want %q", u.String(), want)
			}
		})
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"clean", "/api/v1/users/123"},
		{"dots", "/api/v1//users/./../users/123/"},
		{"escaped", "/caf%C3%A9/%7Euser/a%2Fb"},
		{"long", "/" + strings.Repeat("segment/../", 40) + "x"},
	} {
		raw := bc.raw
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CanonicalPath(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
