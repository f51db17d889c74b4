package normalize

import (
	"net/http"
	"strings"
)

// HeaderSet is a set of request headers that claim an identity (the ones the
// gateway itself sends upstream). They are stripped from every inbound
// request so a client cannot assert who it is. Matching ignores case and
// treats '_' as '-', because many upstream stacks (CGI, WSGI, Rack, nginx
// with underscores_in_headers) read X-Forwarded_Email as X-Forwarded-Email
// (CVE-2025-64484). A HeaderSet is immutable once built.
type HeaderSet struct {
	names    []string // normalized: lower-case, '-' for '_'
	prefixes []string // normalized likewise; never empty
	first    [256]bool
}

// NewHeaderSet compiles exact header names and name prefixes. Empty entries
// are ignored: an empty prefix would strip every header.
func NewHeaderSet(names []string, prefixes []string) *HeaderSet {
	s := &HeaderSet{}
	s.add(&s.names, names)
	s.add(&s.prefixes, prefixes)
	return s
}

// DefaultIdentityHeaders is the set sekisho always strips: the names it and
// oauth2-proxy use to pass identity upstream.
func DefaultIdentityHeaders() *HeaderSet {
	return NewHeaderSet(
		[]string{
			"X-Forwarded-User",
			"X-Forwarded-Email",
			"X-Forwarded-Groups",
			"X-Forwarded-Preferred-Username",
			"X-Forwarded-Access-Token",
		},
		[]string{"X-Auth-Request-", "X-Sekisho-"},
	)
}

// ForwardingHeaders are the request headers through which proxies describe
// the original request to the next hop: the client's address, the scheme,
// host, port, method, path or path prefix it used, and its request id.
// Upstream frameworks believe them (Spring, ASP.NET, Rails, chi, Symfony,
// IIS URL Rewrite, Envoy), so a client that sends its own could make an
// upstream see a different request from the one sekisho decided. The proxy
// stage strips every spelling of them before setting its own values, and
// policies and route conditions never see them: the client's address is
// request.client_ip, believed per trusted_proxies. Like identity headers
// they match in any case and with '_' for '-'.
var ForwardingHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme",
	"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Server", "X-Forwarded-Path",
	"X-Forwarded-Client-Cert",
	"True-Client-Ip", "X-Real-Ip", "X-Client-Ip",
	"X-Original-Url", "X-Original-Uri", "X-Original-Host", "X-Original-Method",
	"X-Rewrite-Url", "X-Host", "X-Envoy-Original-Path",
	"Front-End-Https", "X-Url-Scheme",
	"X-Request-Id",
}

// With returns a copy of s that also strips names, for identity headers a
// route is configured to send upstream.
func (s *HeaderSet) With(names ...string) *HeaderSet {
	c := &HeaderSet{
		names:    append([]string(nil), s.names...),
		prefixes: s.prefixes,
		first:    s.first,
	}
	c.add(&c.names, names)
	return c
}

func (s *HeaderSet) add(dst *[]string, in []string) {
	for _, n := range in {
		if n == "" {
			continue
		}
		n = strings.ReplaceAll(strings.ToLower(n), "_", "-")
		*dst = append(*dst, n)
		s.first[n[0]] = true
	}
}

// Strip deletes from h every header whose name equals a name of s or starts
// with a prefix of s, ignoring case and treating '_' as '-'.
func (s *HeaderSet) Strip(h http.Header) {
	for k := range h {
		if k != "" && s.first[fold(k[0])] && s.match(k) {
			delete(h, k)
		}
	}
}

// Matches reports whether a header named name is in the set. Policies use
// it to never see a value a client could have forged.
func (s *HeaderSet) Matches(name string) bool {
	return name != "" && s.first[fold(name[0])] && s.match(name)
}

func (s *HeaderSet) match(k string) bool {
	for _, n := range s.names {
		if len(k) == len(n) && foldEqual(k, n) {
			return true
		}
	}
	for _, p := range s.prefixes {
		if len(k) >= len(p) && foldEqual(k[:len(p)], p) {
			return true
		}
	}
	return false
}

// foldEqual reports whether k equals the normalized name n under fold.
func foldEqual(k, n string) bool {
	for i := 0; i < len(k); i++ {
		if fold(k[i]) != n[i] {
			return false
		}
	}
	return true
}

// fold maps a header-name byte to its normalized form: ASCII lower-case, '-'
// for '_'.
func fold(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}
