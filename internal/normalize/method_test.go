package normalize

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

var methodCases = []struct {
	in       string
	canon    string
	ext, ok  bool
	constant bool // the result is the net/http constant (no allocation)
}{
	{"GET", "GET", false, true, true},
	{"get", "GET", false, true, true},
	{"delete", "DELETE", false, true, true},
	{"Delete", "DELETE", false, true, true},
	{"dElEtE", "DELETE", false, true, true},
	{"pAtCh", "PATCH", false, true, true},
	{"options", "OPTIONS", false, true, true},
	{"trace", "TRACE", false, true, true},
	{"connect", "CONNECT", false, true, true},
	{"head", "HEAD", false, true, true},
	{"post", "POST", false, true, true},
	{"put", "PUT", false, true, true},
	{"PROPFIND", "PROPFIND", true, true, false},
	{"propfind", "PROPFIND", true, true, false},
	{"delete2", "DELETE2", true, true, false},
	{"M-SEARCH", "M-SEARCH", true, true, false},
	{"DELET", "DELET", true, true, false},
	{"", "", false, false, false},
	{"GET ", "", false, false, false},
	{"DELETE\x00", "", false, false, false},
	{"GET,POST", "", false, false, false},
	{"DÉLETE", "", false, false, false},
	{"dele\u017fe", "", false, false, false}, // ſ upper-cases to S in Unicode, never in HTTP
	{"(GET)", "", false, false, false},
}

func TestMethod(t *testing.T) {
	for _, tt := range methodCases {
		canon, ext, ok := Method(tt.in)
		if canon != tt.canon || ext != tt.ext || ok != tt.ok {
			t.Errorf("Method(%q) = %q, %v, %v; want %q, %v, %v", tt.in, canon, ext, ok, tt.canon, tt.ext, tt.ok)
		}
	}
}

// TestMethodDoesNotAllocate: the standard methods, in any case, and an
// upper-case extension method cost no allocation on the request path.
func TestMethodDoesNotAllocate(t *testing.T) {
	for _, in := range []string{"GET", "get", "dElEtE", "PROPFIND"} {
		if n := testing.AllocsPerRun(100, func() { Method(in) }); n != 0 {
			t.Errorf("Method(%q): %v allocations", in, n)
		}
	}
}

func FuzzMethod(f *testing.F) {
	for _, tt := range methodCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		canon, ext, ok := Method(in)
		if !ok {
			if canon != "" || ext {
				t.Fatalf("Method(%q) = %q, %v, false: a refused method has no result", in, canon, ext)
			}
			for i := 0; i < len(in); i++ {
				if in == "" || !tokenByte(in[i]) {
					return // correctly refused
				}
			}
			if in != "" {
				t.Fatalf("Method(%q) refused a token", in)
			}
			return
		}
		if !strings.EqualFold(canon, in) || canon != strings.ToUpper(canon) {
			t.Fatalf("Method(%q) = %q: not the input upper-cased", in, canon)
		}
		for i := 0; i < len(canon); i++ {
			if !tokenByte(canon[i]) {
				t.Fatalf("Method(%q) = %q: byte %#x is not a token character", in, canon, canon[i])
			}
		}
		standard := false
		for _, s := range standardMethods {
			standard = standard || s == canon
		}
		if ext == standard {
			t.Fatalf("Method(%q) = %q, ext %v", in, canon, ext)
		}
		if again, ext2, ok2 := Method(canon); again != canon || ext2 != ext || !ok2 {
			t.Fatalf("not idempotent: Method(%q) = %q, %v, %v", canon, again, ext2, ok2)
		}
	})
}

// tokenByte is RFC 9110's tchar, written out independently of httpguts.
func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func TestMethodOverride(t *testing.T) {
	for _, tt := range []struct {
		name   string
		h      http.Header
		header string
		value  string
		n      int
	}{
		{"none", http.Header{"X-Forwarded-Method": {"DELETE"}, "Content-Type": {"text/plain"}}, "", "", 0},
		{"standard", http.Header{"X-Http-Method-Override": {"DELETE"}}, "X-Http-Method-Override", "DELETE", 1},
		{"OData", http.Header{"X-Http-Method": {"PATCH"}}, "X-Http-Method", "PATCH", 1},
		{"short", http.Header{"X-Method-Override": {"PUT"}}, "X-Method-Override", "PUT", 1},
		{"underscores", http.Header{"X_http_method_override": {"delete"}}, "X_http_method_override", "delete", 1},
		{"lower-case key", http.Header{"x-http-method-override": {"delete"}}, "x-http-method-override", "delete", 1},
		{"twice under one name", http.Header{"X-Http-Method-Override": {"GET", "DELETE"}}, "X-Http-Method-Override", "GET", 2},
		{"two spellings", http.Header{"X-Http-Method-Override": {"GET"}, "X-Method-Override": {"DELETE"}}, "", "", 2},
		{"a longer name is not one", http.Header{"X-Http-Method-Override-Not": {"DELETE"}}, "", "", 0},
	} {
		header, value, n := MethodOverride(tt.h)
		if n != tt.n || (tt.header != "" && (header != tt.header || value != tt.value)) {
			t.Errorf("%s: MethodOverride = %q, %q, %d; want %q, %q, %d", tt.name, header, value, n, tt.header, tt.value, tt.n)
		}
	}
}

var queryOverrideCases = []struct {
	query string
	value string
	n     int
}{
	{"", "", 0},
	{"a=1&b=2", "", 0},
	{"_method=DELETE", "DELETE", 1},
	{"a=1&_method=delete&b=2", "delete", 1},
	{"_METHOD=PUT", "PUT", 1},
	{"%5Fmethod=DELETE", "DELETE", 1},
	{"_%6Dethod=DELETE", "DELETE", 1},
	{".method=DELETE", "DELETE", 1},   // PHP reads '.' as '_'
	{"+.method=DELETE", "DELETE", 1},  // and drops leading spaces
	{"[method=DELETE", "DELETE", 1},   // and reads '[' as '_' when unbalanced
	{"_method=%44ELETE", "DELETE", 1}, // the value is decoded
	{"_method=%ZZ", "", 1},            // a malformed value is no method
	{"_method=PUT&_method=DELETE", "PUT", 2},
	{"method=DELETE", "", 0},
	{"x_method=DELETE", "", 0},
	{"_methods=DELETE", "", 0},
	{"_method", "", 1},
	{"%ZZmethod=DELETE", "", 0},
	{"_method%00=DELETE", "DELETE", 1},  // PHP cuts a name at NUL
	{"_method%00x=DELETE", "DELETE", 1}, // whatever follows it
	{"_method[]=DELETE", "DELETE", 1},   // an array named _method
	{"_method%5Bx%5D=DELETE", "DELETE", 1},
	{"%00_method=DELETE", "", 0},
	{"_meth%00od=DELETE", "", 0},
}

func TestQueryMethodOverride(t *testing.T) {
	for _, tt := range queryOverrideCases {
		if value, n := QueryMethodOverride(tt.query); value != tt.value || n != tt.n {
			t.Errorf("QueryMethodOverride(%q) = %q, %d; want %q, %d", tt.query, value, n, tt.value, tt.n)
		}
	}
}

func FuzzQueryMethodOverride(f *testing.F) {
	for _, tt := range queryOverrideCases {
		f.Add(tt.query)
	}
	f.Fuzz(func(t *testing.T, q string) {
		value, n := QueryMethodOverride(q)
		if n < 0 || n > strings.Count(q, "&")+1 || (n == 0 && value != "") {
			t.Fatalf("QueryMethodOverride(%q) = %q, %d", q, value, n)
		}
		// Every parameter found reads as _method the way PHP reads names.
		found := 0
		for _, part := range strings.Split(q, "&") {
			k, _, _ := strings.Cut(part, "=")
			d, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			d, _, _ = strings.Cut(d, "\x00")
			d = strings.TrimLeft(d, " ")
			if len(d) > 7 && d[7] == '[' {
				d = d[:7]
			}
			if len(d) == 7 && strings.ContainsRune("_ .[", rune(d[0])) && strings.EqualFold(d[1:], "method") {
				found++
			}
		}
		if q != "" && found != n {
			t.Fatalf("QueryMethodOverride(%q) found %d, an independent reading %d", q, n, found)
		}
	})
}
