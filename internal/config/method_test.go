package config

import "testing"

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
