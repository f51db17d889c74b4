package normalize

import (
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// standardMethods are the methods of RFC 9110 and RFC 5789 (PATCH).
var standardMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect,
}

// Method is the one rule by which sekisho compares request methods: route
// match, policy rules, CEL and forwarding all use its result. Methods are
// case-sensitive in HTTP, but many application frameworks upper-case them,
// so "delete" must be decided as the DELETE the upstream will run, never as
// a different method that falls through to a laxer route.
//
// A standard method (GET HEAD POST PUT PATCH DELETE OPTIONS TRACE CONNECT)
// in any case returns its upper-case constant, without allocating. Any
// other HTTP token is an extension method (ext true), upper-cased the same
// way. ok is false for a method that is not a token (empty, spaces,
// separators, non-ASCII): the request is malformed.
func Method(m string) (canon string, ext bool, ok bool) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return m, false, true
	}
	for _, s := range standardMethods {
		if len(s) == len(m) && upperEqual(m, s) {
			return s, false, true
		}
	}
	if !httpguts.ValidHeaderFieldName(m) { // a method is a token, like a header name
		return "", false, false
	}
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return strings.ToUpper(m), true, true
		}
	}
	return m, true, true
}

// upperEqual reports whether m upper-cased equals the upper-case s of the
// same length.
func upperEqual(m, s string) bool {
	for i := 0; i < len(m); i++ {
		c := m[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// MethodOverrideHeaders are the request headers through which frameworks
// let a POST stand for another method (Rails, Symfony, Laravel, Express
// method-override, ASP.NET Core, OData, Google APIs). Like identity headers
// they match in any case and with '_' for '-'. sekisho strips them unless a
// route allows overrides; then it decides on the overriding method.
var MethodOverrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// methodOverride matches MethodOverrideHeaders in every spelling.
var methodOverride = NewHeaderSet(MethodOverrideHeaders, nil)

// MethodOverride finds the method-override headers of h in every spelling:
// n is how many values they carry in all, name and value those of the
// first. A request is only well-formed for an override when n is 1.
func MethodOverride(h http.Header) (name, value string, n int) {
	for k, vs := range h {
		if len(vs) == 0 || !methodOverride.Matches(k) {
			continue
		}
		if n == 0 {
			name, value = k, vs[0]
		}
		n += len(vs)
	}
	return name, value, n
}

// QueryMethodOverride finds `_method` parameters in a raw query string:
// Laravel and Symfony (and Spring's HiddenHttpMethodFilter) run a POST
// with ?_method=DELETE as DELETE. Names match the way PHP reads them:
// percent-decoded, '+' as space, cut at a NUL ("_method%00" is
// "_method"), leading spaces dropped, ' ', '.' or '[' as the leading '_',
// and an array suffix ignored ("_method[]"); the rest in any case. n is how
// many there are, value the first one's decoded value ("" when it does not
// decode).
func QueryMethodOverride(rawQuery string) (value string, n int) {
	for q := rawQuery; q != ""; {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if !isMethodParam(k) {
			continue
		}
		if n == 0 {
			value, _ = url.QueryUnescape(v) // "" when malformed: not a method
		}
		n++
	}
	return value, n
}

// isMethodParam reports whether a raw query parameter name reads as
// `_method`.
func isMethodParam(k string) bool {
	if len(k) < len("_method") {
		return false
	}
	if strings.ContainsAny(k, "%+") {
		d, err := url.QueryUnescape(k)
		if err != nil {
			return false
		}
		k = d
	}
	if i := strings.IndexByte(k, 0); i >= 0 {
		k = k[:i] // PHP reads a name up to its first NUL
	}
	k = strings.TrimLeft(k, " ")
	if len(k) > len("_method") && k[len("_method")] == '[' {
		k = k[:len("_method")] // "_method[]", "_method[x]": an array named _method
	}
	if len(k) != len("_method") || strings.IndexByte("_ .[", k[0]) < 0 {
		return false
	}
	return strings.EqualFold(k[1:], "method")
}
