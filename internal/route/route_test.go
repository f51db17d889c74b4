package route

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type req struct {
	host, path, method string
	header             http.Header
	want               string // rule name; empty for no match
}

func mustNew[T any](tb testing.TB, rules []Rule[T]) *Table[T] {
	tb.Helper()
	tbl, err := New(rules)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return tbl
}

// checkMatches builds a table whose values are "v:"+name and checks each
// request picks the wanted rule and hands back that rule's value.
func checkMatches(t *testing.T, rules []Rule[string], reqs []req) {
	t.Helper()
	for i := range rules {
		rules[i].Value = "v:" + rules[i].Name
	}
	tbl := mustNew(t, rules)
	for _, r := range reqs {
		method := r.method
		if method == "" {
			method = http.MethodGet
		}
		v, name, ok := tbl.Match(r.host, r.path, method, r.header)
		if ok != (r.want != "") || name != r.want {
			t.Errorf("Match(%q, %q, %q, %v) = %q, %v; want %q", r.host, r.path, method, r.header, name, ok, r.want)
			continue
		}
		if ok && v != "v:"+r.want {
			t.Errorf("Match(%q, %q) value = %q; want %q", r.host, r.path, v, "v:"+r.want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule[string]
		reqs  []req
	}{
		{
			name: "host: exact beats wildcards beat any host",
			rules: []Rule[string]{
				{Name: "any"},
				{Name: "wild2", Hosts: []string{"*.example.com"}},
				{Name: "wild3", Hosts: []string{"*.a.example.com"}},
				{Name: "exact", Hosts: []string{"x.a.example.com"}},
			},
			reqs: []req{
				{host: "x.a.example.com", path: "/", want: "exact"},
				{host: "y.a.example.com", path: "/", want: "wild3"},
				{host: "z.y.a.example.com", path: "/", want: "wild3"},
				{host: "a.example.com", path: "/", want: "wild2"},
				{host: "b.example.com", path: "/", want: "wild2"},
				{host: "example.com", path: "/", want: "any"},
				{host: "other.org", path: "/", want: "any"},
			},
		},
		{
			name: "host decides before path",
			rules: []Rule[string]{
				{Name: "any-exact-path", Path: "/x"},
				{Name: "wild-prefix", Hosts: []string{"*.example.com"}, PathPrefix: "/"},
				{Name: "exact-host", Hosts: []string{"a.example.com"}},
			},
			reqs: []req{
				{host: "a.example.com", path: "/x", want: "exact-host"},
				{host: "b.example.com", path: "/x", want: "wild-prefix"},
				{host: "c.org", path: "/x", want: "any-exact-path"},
				{host: "c.org", path: "/y"},
			},
		},
		{
			name: "path: exact beats longer prefix beats shorter prefix beats regex beats none",
			rules: []Rule[string]{
				{Name: "none"},
				{Name: "regex", PathRegex: "/a/.*"},
				{Name: "root", PathPrefix: "/"},
				{Name: "short", PathPrefix: "/a"},
				{Name: "long", PathPrefix: "/a/b/"},
				{Name: "exact", Path: "/a/b/c"},
			},
			reqs: []req{
				{host: "h", path: "/a/b/c", want: "exact"},
				{host: "h", path: "/a/b/c/d", want: "long"},
				{host: "h", path: "/a/b", want: "long"},
				{host: "h", path: "/a/x", want: "short"},
				{host: "h", path: "/z", want: "root"},
			},
		},
		{
			name: "path: regex beats no path condition",
			rules: []Rule[string]{
				{Name: "none"},
				{Name: "regex", PathRegex: "/a/.*"},
			},
			reqs: []req{
				{host: "h", path: "/a/x", want: "regex"},
				{host: "h", path: "/b", want: "none"},
			},
		},
		{
			name: "path decides before constraints",
			rules: []Rule[string]{
				{Name: "short-with-method", PathPrefix: "/a", Methods: []string{"GET"}, Headers: []HeaderMatch{{Name: "X-A"}}},
				{Name: "long", PathPrefix: "/a/b"},
			},
			reqs: []req{
				{host: "h", path: "/a/b", header: http.Header{"X-A": {"1"}}, want: "long"},
			},
		},
		{
			name: "constraints: a method or header condition beats none, more beats fewer",
			rules: []Rule[string]{
				{Name: "plain", PathPrefix: "/"},
				{Name: "method", PathPrefix: "/", Methods: []string{"GET", "POST"}},
				{Name: "method-header", PathPrefix: "/", Methods: []string{"GET"}, Headers: []HeaderMatch{{Name: "X-A"}}},
				{Name: "two-headers", PathPrefix: "/", Headers: []HeaderMatch{{Name: "X-A"}, {Name: "X-B"}}},
				{Name: "header", PathPrefix: "/", Headers: []HeaderMatch{{Name: "X-C"}}},
			},
			reqs: []req{
				{host: "h", path: "/", method: "PUT", want: "plain"},
				{host: "h", path: "/", method: "POST", want: "method"},
				{host: "h", path: "/", method: "PUT", header: http.Header{"X-C": {""}}, want: "header"},
				// Equal counts (2): config order decides.
				{host: "h", path: "/", header: http.Header{"X-A": {"1"}, "X-B": {"1"}}, want: "method-header"},
				{host: "h", path: "/", method: "POST", header: http.Header{"X-A": {"1"}, "X-B": {"1"}}, want: "two-headers"},
			},
		},
		{
			name: "tie: earlier rule wins",
			rules: []Rule[string]{
				{Name: "first", Headers: []HeaderMatch{{Name: "X-A"}}},
				{Name: "second", Headers: []HeaderMatch{{Name: "X-B"}}},
			},
			reqs: []req{
				{host: "h", path: "/", header: http.Header{"X-A": {"1"}, "X-B": {"1"}}, want: "first"},
				{host: "h", path: "/", header: http.Header{"X-B": {"1"}}, want: "second"},
			},
		},
		{
			name: "tie: earlier rule wins, reversed",
			rules: []Rule[string]{
				{Name: "second", Headers: []HeaderMatch{{Name: "X-B"}}},
				{Name: "first", Headers: []HeaderMatch{{Name: "X-A"}}},
			},
			reqs: []req{
				{host: "h", path: "/", header: http.Header{"X-A": {"1"}, "X-B": {"1"}}, want: "second"},
			},
		},
		{
			name: "tie between regexes: constraints, then order",
			rules: []Rule[string]{
				{Name: "re1", PathRegex: "/a.*"},
				{Name: "re2", PathRegex: "/ab.*"},
				{Name: "re3", PathRegex: "/abc", Methods: []string{"GET"}},
			},
			reqs: []req{
				{host: "h", path: "/abc", want: "re3"},
				{host: "h", path: "/abc", method: "POST", want: "re1"},
				{host: "h", path: "/abd", want: "re1"},
			},
		},
		{
			name: "rule with several hosts ranks by the host it matched",
			rules: []Rule[string]{
				{Name: "multi", Hosts: []string{"*.example.com", "a.example.com"}, Path: "/x"},
				{Name: "wild-exact", Hosts: []string{"*.example.com"}, Path: "/x", Methods: []string{"GET"}},
			},
			reqs: []req{
				{host: "a.example.com", path: "/x", want: "multi"},
				{host: "b.example.com", path: "/x", want: "wild-exact"},
				{host: "b.example.com", path: "/x", method: "POST", want: "multi"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkMatches(t, tt.rules, tt.reqs) })
	}
}

func TestFallThrough(t *testing.T) {
	rules := []Rule[string]{
		{Name: "any", PathPrefix: "/"},
		{Name: "wild", Hosts: []string{"*.example.com"}, Methods: []string{"GET", "PUT"}},
		{Name: "exact-post", Hosts: []string{"a.example.com"}, Methods: []string{"POST"}},
		{Name: "exact-header", Hosts: []string{"a.example.com"}, Path: "/h", Headers: []HeaderMatch{{Name: "X-Team", Value: "blue"}}},
		{Name: "exact-prefix", Hosts: []string{"a.example.com"}, PathPrefix: "/p", Methods: []string{"DELETE"}},
	}
	checkMatches(t, rules, []req{
		{host: "a.example.com", path: "/", method: "POST", want: "exact-post"},
		// Method mismatch in the exact host: the wildcard serves it.
		{host: "a.example.com", path: "/", method: "GET", want: "wild"},
		// Mismatch in the exact host and the wildcard: any host serves it.
		{host: "a.example.com", path: "/", method: "PATCH", want: "any"},
		{host: "a.example.com", path: "/h", header: http.Header{"X-Team": {"blue"}}, want: "exact-header"},
		{host: "a.example.com", path: "/h", header: http.Header{"X-Team": {"red"}}, want: "wild"},
		// Within one host a longer prefix that fails falls back to no path
		// condition before leaving the host.
		{host: "a.example.com", path: "/p/x", method: "DELETE", want: "exact-prefix"},
		{host: "a.example.com", path: "/p/x", method: "POST", want: "exact-post"},
	})
}

func TestFallThroughWithinPaths(t *testing.T) {
	rules := []Rule[string]{
		{Name: "none", Methods: []string{"PATCH"}},
		{Name: "regex", PathRegex: "/a/.*", Methods: []string{"PUT"}},
		{Name: "root", PathPrefix: "/", Methods: []string{"POST"}},
		{Name: "short", PathPrefix: "/a", Methods: []string{"DELETE"}},
		{Name: "long", PathPrefix: "/a/b", Methods: []string{"HEAD"}},
		{Name: "exact", Path: "/a/b/c", Methods: []string{"GET"}},
	}
	checkMatches(t, rules, []req{
		{host: "h", path: "/a/b/c", method: "GET", want: "exact"},
		{host: "h", path: "/a/b/c", method: "HEAD", want: "long"},
		{host: "h", path: "/a/b/c", method: "DELETE", want: "short"},
		{host: "h", path: "/a/b/c", method: "POST", want: "root"},
		{host: "h", path: "/a/b/c", method: "PUT", want: "regex"},
		{host: "h", path: "/a/b/c", method: "PATCH", want: "none"},
		{host: "h", path: "/a/b/c", method: "OPTIONS"},
	})
}

func TestSegmentBoundaries(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule[string]
		reqs  []req
	}{
		{
			name:  "prefix without trailing slash",
			rules: []Rule[string]{{Name: "api1", PathPrefix: "/api1"}},
			reqs: []req{
				{host: "h", path: "/api1", want: "api1"},
				{host: "h", path: "/api1/", want: "api1"},
				{host: "h", path: "/api1/x", want: "api1"},
				{host: "h", path: "/api1/x/y/", want: "api1"},
				{host: "h", path: "/api10"},
				{host: "h", path: "/api10/x"},
				{host: "h", path: "/api"},
				{host: "h", path: "/"},
			},
		},
		{
			name:  "prefix with trailing slash",
			rules: []Rule[string]{{Name: "api1", PathPrefix: "/api1/"}},
			reqs: []req{
				{host: "h", path: "/api1", want: "api1"},
				{host: "h", path: "/api1/", want: "api1"},
				{host: "h", path: "/api1/x", want: "api1"},
				{host: "h", path: "/api10"},
			},
		},
		{
			name: "root prefix matches everything and loses to any other prefix",
			rules: []Rule[string]{
				{Name: "root", PathPrefix: "/"},
				{Name: "api1", PathPrefix: "/api1"},
			},
			reqs: []req{
				{host: "h", path: "/", want: "root"},
				{host: "h", path: "/api10", want: "root"},
				{host: "h", path: "/api1", want: "api1"},
				{host: "h", path: "/x/y", want: "root"},
			},
		},
		{
			name: "exact path is exact about the trailing slash",
			rules: []Rule[string]{
				{Name: "noslash", Path: "/a"},
				{Name: "slash", Path: "/a/"},
				{Name: "root", Path: "/"},
			},
			reqs: []req{
				{host: "h", path: "/a", want: "noslash"},
				{host: "h", path: "/a/", want: "slash"},
				{host: "h", path: "/", want: "root"},
				{host: "h", path: "/a/b"},
				{host: "h", path: "/ab"},
			},
		},
		{
			name:  "paths the normalizer never produces match nothing",
			rules: []Rule[string]{{Name: "root", PathPrefix: "/"}, {Name: "none"}},
			reqs: []req{
				{host: "h", path: ""},
				{host: "h", path: "api1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkMatches(t, tt.rules, tt.reqs) })
	}
}

func TestWildcardHosts(t *testing.T) {
	checkMatches(t, []Rule[string]{
		{Name: "wild", Hosts: []string{"*.Example.com"}},
		{Name: "exact", Hosts: []string{"API.example.org"}},
	}, []req{
		{host: "a.example.com", path: "/", want: "wild"},
		{host: "a.b.example.com", path: "/", want: "wild"},
		{host: "example.com", path: "/"},
		{host: "xexample.com", path: "/"},
		{host: "example.com.evil.org", path: "/"},
		{host: ".example.com", path: "/"},
		{host: "api.example.org", path: "/", want: "exact"},
		{host: "a.api.example.org", path: "/"},
		{host: "", path: "/"},
	})
}

func TestHostsInNormalizedForm(t *testing.T) {
	// Rules may spell hosts the way people write them; Match gets the form
	// internal/normalize produces.
	checkMatches(t, []Rule[string]{
		{Name: "dot", Hosts: []string{"Example.COM."}},
		{Name: "v6", Hosts: []string{"[2001:DB8:0:0::1]"}},
		{Name: "v6-bare", Hosts: []string{"::1"}},
		{Name: "v4", Hosts: []string{"192.0.2.1"}},
	}, []req{
		{host: "example.com", path: "/", want: "dot"},
		{host: "2001:db8::1", path: "/", want: "v6"},
		{host: "::1", path: "/", want: "v6-bare"},
		{host: "192.0.2.1", path: "/", want: "v4"},
		{host: "192.0.2.2", path: "/"},
	})
}

func TestMethodsAndHeaders(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule[string]
		reqs  []req
	}{
		{
			name:  "methods are upper-cased in the rule and compared exactly",
			rules: []Rule[string]{{Name: "write", Methods: []string{"post", "Put"}}},
			reqs: []req{
				{host: "h", path: "/", method: "POST", want: "write"},
				{host: "h", path: "/", method: "PUT", want: "write"},
				{host: "h", path: "/", method: "post"},
				{host: "h", path: "/", method: "GET"},
			},
		},
		{
			name:  "header present",
			rules: []Rule[string]{{Name: "r", Headers: []HeaderMatch{{Name: "x-api-key"}}}},
			reqs: []req{
				{host: "h", path: "/", header: http.Header{"X-Api-Key": {""}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-Api-Key": {"k"}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-Other": {"k"}}},
				{host: "h", path: "/"},
			},
		},
		{
			name:  "header exact value, any of several values",
			rules: []Rule[string]{{Name: "r", Headers: []HeaderMatch{{Name: "X-Team", Value: "blue"}}}},
			reqs: []req{
				{host: "h", path: "/", header: http.Header{"X-Team": {"blue"}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-Team": {"red", "blue"}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-Team": {"Blue"}}},
				{host: "h", path: "/", header: http.Header{"X-Team": {"blue2"}}},
				{host: "h", path: "/", header: http.Header{"X-Team": {"red, blue"}}},
			},
		},
		{
			name:  "header regex is anchored",
			rules: []Rule[string]{{Name: "r", Headers: []HeaderMatch{{Name: "X-Version", Regex: "v[0-9]+|beta"}}}},
			reqs: []req{
				{host: "h", path: "/", header: http.Header{"X-Version": {"v12"}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-Version": {"x", "beta"}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-Version": {"v12x"}}},
				{host: "h", path: "/", header: http.Header{"X-Version": {"xbeta"}}},
			},
		},
		{
			name: "all header conditions must hold",
			rules: []Rule[string]{{Name: "r", Headers: []HeaderMatch{
				{Name: "X-A", Value: "1"}, {Name: "X-B"},
			}}},
			reqs: []req{
				{host: "h", path: "/", header: http.Header{"X-A": {"1"}, "X-B": {"z"}}, want: "r"},
				{host: "h", path: "/", header: http.Header{"X-A": {"1"}}},
				{host: "h", path: "/", header: http.Header{"X-B": {"z"}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkMatches(t, tt.rules, tt.reqs) })
	}
}

func TestPathRegexAnchoring(t *testing.T) {
	checkMatches(t, []Rule[string]{
		{Name: "alt", PathRegex: "/a|/b"},
		{Name: "users", PathRegex: `/users/[0-9]+`},
	}, []req{
		{host: "h", path: "/a", want: "alt"},
		{host: "h", path: "/b", want: "alt"},
		{host: "h", path: "/a/x"},
		{host: "h", path: "/x/b"},
		{host: "h", path: "/users/42", want: "users"},
		{host: "h", path: "/users/42/edit"},
		{host: "h", path: "/v1/users/42"},
	})
}

func TestMatchValue(t *testing.T) {
	tbl := mustNew(t, []Rule[int]{
		{Name: "one", Path: "/1", Value: 1},
		{Name: "two", Path: "/2", Value: 2},
	})
	if v, name, ok := tbl.Match("h", "/2", "GET", nil); !ok || name != "two" || v != 2 {
		t.Errorf("Match(/2) = %d, %q, %v; want 2, two, true", v, name, ok)
	}
	if v, name, ok := tbl.Match("h", "/3", "GET", nil); ok || name != "" || v != 0 {
		t.Errorf("Match(/3) = %d, %q, %v; want zero value, no name, false", v, name, ok)
	}
	if got := tbl.Len(); got != 2 {
		t.Errorf("Len() = %d; want 2", got)
	}
	empty := mustNew[int](t, nil)
	if _, _, ok := empty.Match("h", "/", "GET", nil); ok || empty.Len() != 0 {
		t.Errorf("empty table matched or has Len %d", empty.Len())
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name      string
		rules     []Rule[string]
		wantIndex int
		want      string
	}{
		{"empty name", []Rule[string]{{Path: "/"}}, 0, `route #1: name is empty`},
		{"duplicate name", []Rule[string]{{Name: "a", Path: "/a"}, {Name: "a", Path: "/b"}}, 1, `route "a": name is used by an earlier route`},
		{"two path kinds", []Rule[string]{{Name: "r", Path: "/a", PathPrefix: "/a"}}, 0, "exclusive"},
		{"path and regex", []Rule[string]{{Name: "r", Path: "/a", PathRegex: "/a"}}, 0, "exclusive"},
		{"path without slash", []Rule[string]{{Name: "r", Path: "api"}}, 0, `path "api": must start with '/'`},
		{"prefix without slash", []Rule[string]{{Name: "r", PathPrefix: "api/"}}, 0, `path prefix "api/": must start with '/'`},
		{"double slash", []Rule[string]{{Name: "r", PathPrefix: "/a//b"}}, 0, "empty segment"},
		{"dot segment", []Rule[string]{{Name: "r", Path: "/a/../b"}}, 0, `"." and ".." segments`},
		{"trailing dot segment", []Rule[string]{{Name: "r", PathPrefix: "/a/."}}, 0, `"." and ".." segments`},
		{"bad path regex", []Rule[string]{{Name: "r", PathRegex: "/a("}}, 0, `path regex: "/a(" does not compile`},
		{"regex escaping anchors", []Rule[string]{{Name: "r", PathRegex: "/a)|(.*"}}, 0, "does not compile"},
		{"bad header regex", []Rule[string]{{Name: "r", Headers: []HeaderMatch{{Name: "X-A", Regex: "[z-a]"}}}}, 0, "header X-A regex"},
		{"header value and regex", []Rule[string]{{Name: "r", Headers: []HeaderMatch{{Name: "X-A", Value: "1", Regex: "1"}}}}, 0, "value and regex are exclusive"},
		{"bad header name", []Rule[string]{{Name: "r", Headers: []HeaderMatch{{Name: "X A"}}}}, 0, `header name "X A"`},
		{"empty header name", []Rule[string]{{Name: "r", Headers: []HeaderMatch{{}}}}, 0, `header name ""`},
		{"bad method", []Rule[string]{{Name: "r", Methods: []string{"GE T"}}}, 0, `method "GE T"`},
		{"empty method", []Rule[string]{{Name: "r", Methods: []string{""}}}, 0, `method ""`},
		{"bare wildcard domain", []Rule[string]{{Name: "r", Hosts: []string{"*."}}}, 0, `host "*.": not a host name`},
		{"star alone", []Rule[string]{{Name: "r", Hosts: []string{"*"}}}, 0, "leave hosts empty"},
		{"empty host", []Rule[string]{{Name: "r", Hosts: []string{""}}}, 0, `host "": not a host name`},
		{"star inside label", []Rule[string]{{Name: "r", Hosts: []string{"a*.b"}}}, 0, `only allowed as the whole first label`},
		{"star in later label", []Rule[string]{{Name: "r", Hosts: []string{"a.*.b"}}}, 0, `only allowed as the whole first label`},
		{"empty label", []Rule[string]{{Name: "r", Hosts: []string{"a..b"}}}, 0, "empty label"},
		{"leading dot", []Rule[string]{{Name: "r", Hosts: []string{".example.com"}}}, 0, "empty label"},
		{"two trailing dots", []Rule[string]{{Name: "r", Hosts: []string{"example.com.."}}}, 0, "empty label"},
		{"IPv6 with zone", []Rule[string]{{Name: "r", Hosts: []string{"fe80::1%eth0"}}}, 0, "IPv6 address without a zone"},
		{
			"duplicate host spelled with trailing dot",
			[]Rule[string]{{Name: "a", Hosts: []string{"example.com"}}, {Name: "b", Hosts: []string{"example.com."}}},
			1, `same match conditions as route "a" for host "example.com"`,
		},
		{"port", []Rule[string]{{Name: "r", Hosts: []string{"example.com:443"}}}, 0, "no port"},
		{"bad character", []Rule[string]{{Name: "r", Hosts: []string{"exa mple.com"}}}, 0, `character ' '`},
		{"long label", []Rule[string]{{Name: "r", Hosts: []string{strings.Repeat("a", 64) + ".com"}}}, 0, "longer than 63"},
		{"long host", []Rule[string]{{Name: "r", Hosts: []string{strings.Repeat("a.", 127) + "com"}}}, 0, "longer than 253"},
		{
			"duplicate conditions",
			[]Rule[string]{{Name: "a", Path: "/x"}, {Name: "b", Path: "/x"}},
			1, `route "b": same match conditions as route "a"`,
		},
		{
			"duplicate prefix spelled with and without slash",
			[]Rule[string]{{Name: "a", PathPrefix: "/api1", Hosts: []string{"h.example.com"}}, {Name: "b", PathPrefix: "/api1/", Hosts: []string{"H.example.com"}}},
			1, `route "b": same match conditions as route "a" for host "h.example.com"`,
		},
		{
			"duplicate on one shared host",
			[]Rule[string]{{Name: "a", Hosts: []string{"x.org", "*.y.org"}}, {Name: "b", Hosts: []string{"z.org", "*.y.org"}}},
			1, `same match conditions as route "a" for host "*.y.org"`,
		},
		{
			"duplicate methods and headers in another order and case",
			[]Rule[string]{
				{Name: "a", Methods: []string{"GET", "POST"}, Headers: []HeaderMatch{{Name: "X-A", Value: "1"}, {Name: "X-B"}}},
				{Name: "b", Methods: []string{"post", "get"}, Headers: []HeaderMatch{{Name: "x-b"}, {Name: "x-a", Value: "1"}}},
			},
			1, `same match conditions as route "a"`,
		},
		{
			"duplicate with no conditions at all",
			[]Rule[string]{{Name: "a"}, {Name: "b"}},
			1, `route "b": same match conditions as route "a", so it could never be chosen`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, err := New(tt.rules)
			if err == nil {
				t.Fatalf("New succeeded with %d rules; want error containing %q", tbl.Len(), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %q; want it to contain %q", err, tt.want)
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("New error %T is not a *RuleError", err)
			}
			if re.Index != tt.wantIndex {
				t.Errorf("RuleError.Index = %d; want %d", re.Index, tt.wantIndex)
			}
		})
	}
}

func TestNewReportsEveryBadRule(t *testing.T) {
	_, err := New([]Rule[string]{
		{Name: "ok", Path: "/"},
		{Name: "bad1", Path: "x"},
		{Name: "bad2", Hosts: []string{"a*.b"}},
	})
	if err == nil {
		t.Fatal("New succeeded; want errors for bad1 and bad2")
	}
	for _, want := range []string{`route "bad1"`, `route "bad2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error = %q; want it to mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), `route "ok"`) {
		t.Errorf("New error = %q; blames the good rule", err)
	}
}

func TestNotDuplicates(t *testing.T) {
	// Rules that overlap but differ in some condition are all accepted.
	mustNew(t, []Rule[string]{
		{Name: "a", Path: "/x"},
		{Name: "b", PathPrefix: "/x"},
		{Name: "c", PathRegex: "/x"},
		{Name: "d", Path: "/x", Methods: []string{"GET"}},
		{Name: "e", Path: "/x", Headers: []HeaderMatch{{Name: "X-A"}}},
		{Name: "f", Path: "/x", Headers: []HeaderMatch{{Name: "X-A", Value: "1"}}},
		{Name: "g", Path: "/x", Headers: []HeaderMatch{{Name: "X-A", Regex: "1"}}},
		{Name: "h", Path: "/x", Hosts: []string{"x.org"}},
		{Name: "i", Path: "/x", Hosts: []string{"*.x.org"}},
		{Name: "j", Path: "/x/"},
	})
}

// TestConcurrentMatch lets the race detector check that a shared table is
// only read by Match.
func TestConcurrentMatch(t *testing.T) {
	tbl := mustNew(t, []Rule[string]{
		{Name: "re", PathRegex: "/u/[0-9]+", Headers: []HeaderMatch{{Name: "X-A", Regex: "[a-z]+"}}},
		{Name: "prefix", Hosts: []string{"*.example.com"}, PathPrefix: "/p"},
	})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				h := http.Header{"X-A": {"abc"}}
				if _, name, _ := tbl.Match("a.example.com", "/u/"+strconv.Itoa(g*1000+i), "GET", h); name != "re" {
					t.Errorf("Match = %q; want re", name)
					return
				}
			}
		})
	}
	wg.Wait()
}
