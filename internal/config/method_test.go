package config

import (
	"strings"
	"testing"
)

func TestMethodRouteKeys(t *testing.T) {
	s, err := parse(t, `listen: {http: ':0'}
routes:
  - name: dav
    match: {path: /dav, methods: [propfind, Get]}
    to: builtin:echo
    public: true
    allow_extension_methods: true
    allow_method_override: true
  - name: plain
    match: {path: /plain}
    to: builtin:echo
    public: true
`)
	if err != nil {
		t.Fatal(err)
	}
	dav, _, ok := s.Routes.Match("", "/dav", "PROPFIND", nil)
	if !ok || !dav.AllowExtensionMethods || !dav.AllowMethodOverride {
		t.Errorf("dav: %+v, %v; want both opt-ins (and PROPFIND matched as the upper-case method)", dav, ok)
	}
	if _, _, ok := s.Routes.Match("", "/dav", "GET", nil); !ok {
		t.Error("a route method written Get does not match GET")
	}
	plain, _, _ := s.Routes.Match("", "/plain", "GET", nil)
	if plain.AllowExtensionMethods || plain.AllowMethodOverride {
		t.Errorf("plain: %+v; both opt-ins default to off", plain)
	}
	for _, name := range []string{"X-HTTP-Method-Override", "x_http_method", "X-Method-Override"} {
		if !s.Strip.Matches(name) || !s.Hidden.Matches(name) {
			t.Errorf("%s is not stripped and hidden from policies", name)
		}
	}
}

func TestMethodRouteKeyErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"listen: {http: ':0'}\nroutes:\n  - name: a\n    match: {path: /a}\n    to: builtin:echo\n    public: true\n    allow_extension_methods: maybe\n", "test.yaml:7"},
		{"listen: {http: ':0'}\nroutes:\n  - name: a\n    match: {path: /a}\n    to: builtin:echo\n    public: true\n    allow_method_override: [x]\n", "test.yaml:7"},
		{"listen: {http: ':0'}\nroutes:\n  - {name: a, match: {path: /a, headers: {X-HTTP-Method-Override: DELETE}}, to: builtin:echo, public: true}\n", "cannot match on it"},
		{"listen: {http: ':0'}\nroutes:\n  - {name: a, match: {path: /a, methods: ['GET POST']}, to: builtin:echo, public: true}\n", "not a valid HTTP method"},
	} {
		if _, err := parse(t, tt.src); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one with %q", tt.src, err, tt.want)
		}
	}
}
