package normalize

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzCanonicalPath(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := CanonicalPath(raw)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("CanonicalPath(%q) error %v is not *Error", raw, err)
			}
			return
		}
		if !strings.HasPrefix(p.Path, "/") || !strings.HasPrefix(p.Escaped, "/") {
			t.Fatalf("CanonicalPath(%q) = %+v: does not start with /", raw, p)
		}
		if strings.Contains(p.Path, "//") || strings.Contains(p.Escaped, "//") {
			t.Fatalf("CanonicalPath(%q) = %+v: contains //", raw, p)
		}
		for _, seg := range strings.Split(p.Path, "/") {
			if dots, _ := dotSegment(seg); dots {
				t.Fatalf("CanonicalPath(%q) = %+v: dot segment %q", raw, p, seg)
			}
		}
		if !utf8.ValidString(p.Path) {
			t.Fatalf("CanonicalPath(%q) = %+v: Path is not valid UTF-8", raw, p)
		}
		for _, c := range []byte(p.Path) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("CanonicalPath(%q) = %+v: control character %#x", raw, p, c)
			}
		}
		if strings.ContainsAny(p.Path, `\`) || strings.ContainsAny(p.Escaped, `\?#`) {
			t.Fatalf("CanonicalPath(%q) = %+v: backslash, '?' or '#'", raw, p)
		}

		again, err := CanonicalPath(p.Escaped)
		if err != nil || again != p {
			t.Fatalf("not idempotent: CanonicalPath(%q) = %+v, %v; want %+v (from %q)", p.Escaped, again, err, p, raw)
		}

		// Path is Escaped decoded once, except the preserved separators, and
		// EncodedSlash says whether there are any.
		var decoded []string
		for _, piece := range splitPreserved(p.Escaped) {
			d, err := url.PathUnescape(piece)
			if err != nil {
				t.Fatalf("Escaped %q (from %q) does not decode: %v", p.Escaped, raw, err)
			}
			decoded = append(decoded, d)
		}
		if got := strings.Join(decoded, ""); got != p.Path {
			t.Fatalf("CanonicalPath(%q): Escaped %q decodes to %q; want Path %q", raw, p.Escaped, got, p.Path)
		}
		if slash := strings.Contains(p.Escaped, "%2F") || strings.Contains(p.Escaped, "%5C"); slash != p.EncodedSlash {
			t.Fatalf("CanonicalPath(%q) = %+v: EncodedSlash should be %t", raw, p, slash)
		}
		// DoubleEncoded says whether Path, apart from the separators kept
		// encoded, still holds an escape of '.', '/', '\\', NUL or '%'; when
		// it does not, decoding a second time (as some upstreams do) adds
		// no separator, NUL or dot segment.
		double := false
		var twice []string
		for _, piece := range splitPreserved(p.Escaped) {
			if piece == "%252F" || piece == "%255C" {
				twice = append(twice, "_")
				continue
			}
			once, _ := url.PathUnescape(piece)
			double = double || doubleEscape.MatchString(once)
			if again, err := url.PathUnescape(once); err == nil {
				once = again
			}
			twice = append(twice, once)
		}
		if double != p.DoubleEncoded {
			t.Fatalf("CanonicalPath(%q) = %+v: DoubleEncoded should be %t", raw, p, double)
		}
		if !double {
			d := strings.Join(twice, "")
			if strings.ContainsAny(d, "\\\x00") || strings.Count(d, "/") != strings.Count(p.Path, "/") {
				t.Fatalf("CanonicalPath(%q) = %+v: decoding twice gives %q: a new separator or NUL", raw, p, d)
			}
			for _, seg := range strings.Split(d, "/") {
				if dots, _ := dotSegment(seg); dots {
					t.Fatalf("CanonicalPath(%q) = %+v: decoding twice gives dot segment in %q", raw, p, d)
				}
			}
		}
		if _, err := url.PathUnescape(p.Escaped); err != nil {
			t.Fatalf("Escaped %q does not decode: %v", p.Escaped, err)
		}
	})
}

// splitPreserved splits an escaped path around its "%2F" and "%5C" escapes,
// keeping them as pieces of their own that decode to themselves. In Escaped
// every '%' starts an escape, so a "%2F" substring is always one.
func splitPreserved(escaped string) []string {
	var pieces []string
	for {
		i := strings.Index(escaped, "%2F")
		if j := strings.Index(escaped, "%5C"); j >= 0 && (i < 0 || j < i) {
			i = j
		}
		if i < 0 {
			return append(pieces, escaped)
		}
		pieces = append(pieces, escaped[:i], "%25"+escaped[i+1:i+3])
		escaped = escaped[i+3:]
	}
}

// doubleEscape is a percent-escape of '.', '/', '\\', NUL or '%' in a path
// that has been decoded once.
var doubleEscape = regexp.MustCompile(`%(?i:2e|2f|5c|00|25)`)
