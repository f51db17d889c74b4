package normalize

import (
	"strings"
	"testing"
)

func TestHost(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"api.example.com", "api.example.com", true},
		{"API.Example.COM", "api.example.com", true},
		{"api.example.com:8443", "api.example.com", true},
		{"api.example.com.", "api.example.com", true},
		{"API.example.com.:443", "api.example.com", true},
		{"dummy_restapi-1", "dummy_restapi-1", true},
		{"localhost:1", "localhost", true},
		{"h:65535", "h", true},
		{"192.0.2.1:80", "192.0.2.1", true},
		{"[::1]", "::1", true},
		{"[::1]:8443", "::1", true},
		{"[2001:DB8:0:0::1]:443", "2001:db8::1", true},
		{strings.Repeat("a", 253), strings.Repeat("a", 253), true},

		{"", "", false},
		{".", "", false},
		{":80", "", false},
		{"a..b", "", false},
		{".a", "", false},
		{"a..", "", false},
		{"a b", "", false},
		{"a/b", "", false},
		{"a@b", "", false},
		{"café.example", "", false},
		{"a\x00b", "", false},
		{"h:", "", false},
		{"h:0", "", false},
		{"h:65536", "", false},
		{"h:123456", "", false},
		{"h:8o", "", false},
		{"h:80:80", "", false},
		{"::1", "", false},
		{"[::1", "", false},
		{"[::1]x", "", false},
		{"[::1]:", "", false},
		{"[192.0.2.1]", "", false},
		{"[fe80::1%25eth0]", "", false},
		{"[fe80::1%eth0]", "", false},
		{"[example.com]", "", false},
		{strings.Repeat("a", 254), "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := Host(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Host(%q) = %q, %t; want %q, %t", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
