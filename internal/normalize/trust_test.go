package normalize

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestNewTrustRejectsBadEntries(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0", "", "fe80::1%eth0", "10.0.0.0/8/8"} {
		t.Run(bad, func(t *testing.T) {
			_, err := NewTrust([]string{"192.0.2.0/24", bad})
			if err == nil {
				t.Fatalf("NewTrust(%q) succeeded", bad)
			}
			if !strings.Contains(err.Error(), `"`+bad+`"`) {
				t.Errorf("error %q does not name the entry %q", err, bad)
			}
		})
	}
}

func TestTrustContains(t *testing.T) {
	trust, err := NewTrust([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.1.2.3/8"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.255.0.1", true},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"11.0.0.1", false},
		{"::ffff:10.0.0.1", true},
		{"2001:db8::1", true},
		{"2001:db9::1", false},
		{"fe80::1%eth0", false},
	}
	for _, tc := range tests {
		if got := trust.Contains(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Contains(%s) = %t; want %t", tc.ip, got, tc.want)
		}
	}
	if trust.Contains(netip.Addr{}) {
		t.Error("Contains(zero Addr) = true")
	}
	var none *Trust
	if none.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("nil Trust contains an address")
	}
	empty, err := NewTrust(nil)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("empty Trust contains loopback")
	}
}

func TestForwarded(t *testing.T) {
	trust, err := NewTrust([]string{"10.0.0.0/8", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		tls     bool
		headers map[string][]string
		want    Forwarded
	}{
		{
			name:   "untrusted peer spoofing every header",
			remote: "198.51.100.9:4000",
			headers: map[string][]string{
				"X-Forwarded-For":   {"1.2.3.4"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"admin.example.com"},
			},
			want: Forwarded{ClientIP: ip("198.51.100.9"), Proto: "http", Host: "app.example.com"},
		},
		{
			name:   "untrusted peer over TLS",
			remote: "198.51.100.9:4000",
			tls:    true,
			want:   Forwarded{ClientIP: ip("198.51.100.9"), Proto: "https", Host: "app.example.com"},
		},
		{
			name:    "trusted peer without headers",
			remote:  "10.0.0.2:4000",
			headers: map[string][]string{},
			want:    Forwarded{ClientIP: ip("10.0.0.2"), Proto: "http", Host: "app.example.com", FromProxy: true},
		},
		{
			name:   "trusted peer, one hop",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For":   {"203.0.113.5"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"API.example.com:8443"},
			},
			want: Forwarded{ClientIP: ip("203.0.113.5"), Proto: "https", Host: "API.example.com:8443", For: "203.0.113.5", FromProxy: true},
		},
		{
			name:   "client-prepended entries are ignored",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"6.6.6.6, 203.0.113.5, 10.0.0.9"},
			},
			want: Forwarded{ClientIP: ip("203.0.113.5"), Proto: "http", Host: "app.example.com", For: "6.6.6.6, 203.0.113.5, 10.0.0.9", FromProxy: true},
		},
		{
			name:   "chain split over header lines",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"6.6.6.6", "203.0.113.5,10.0.0.9", "10.0.0.8"},
			},
			want: Forwarded{ClientIP: ip("203.0.113.5"), Proto: "http", Host: "app.example.com", For: "6.6.6.6, 203.0.113.5,10.0.0.9, 10.0.0.8", FromProxy: true},
		},
		{
			name:   "all hops trusted: left-most",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"10.0.0.7, 10.0.0.8"},
			},
			want: Forwarded{ClientIP: ip("10.0.0.7"), Proto: "http", Host: "app.example.com", For: "10.0.0.7, 10.0.0.8", FromProxy: true},
		},
		{
			name:   "unparseable entry stops the walk at the last believed hop",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"203.0.113.5, garbage, 10.0.0.8"},
			},
			want: Forwarded{ClientIP: ip("10.0.0.8"), Proto: "http", Host: "app.example.com", For: "203.0.113.5, garbage, 10.0.0.8", FromProxy: true},
		},
		{
			name:   "unparseable right-most entry leaves the peer",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"203.0.113.5, "},
			},
			want: Forwarded{ClientIP: ip("10.0.0.2"), Proto: "http", Host: "app.example.com", For: "203.0.113.5, ", FromProxy: true},
		},
		{
			name:   "entries with ports",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"[2001:db8::5]:1234, 10.0.0.9:80"},
			},
			want: Forwarded{ClientIP: ip("2001:db8::5"), Proto: "http", Host: "app.example.com", For: "[2001:db8::5]:1234, 10.0.0.9:80", FromProxy: true},
		},
		{
			name:   "IPv6 trusted peer and hops",
			remote: "[2001:db8:ffff::1]:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"2001:db8:1::5, 2001:db8:ffff::2"},
			},
			want: Forwarded{ClientIP: ip("2001:db8:1::5"), Proto: "http", Host: "app.example.com", For: "2001:db8:1::5, 2001:db8:ffff::2", FromProxy: true},
		},
		{
			name:   "IPv4-mapped peer is trusted as IPv4",
			remote: "[::ffff:10.0.0.2]:4000",
			headers: map[string][]string{
				"X-Forwarded-For": {"203.0.113.5"},
			},
			want: Forwarded{ClientIP: ip("203.0.113.5"), Proto: "http", Host: "app.example.com", For: "203.0.113.5", FromProxy: true},
		},
		{
			name:   "bad proto and host are ignored",
			remote: "10.0.0.2:4000",
			tls:    true,
			headers: map[string][]string{
				"X-Forwarded-Proto": {"HTTP"},
				"X-Forwarded-Host":  {"evil.example/x"},
			},
			want: Forwarded{ClientIP: ip("10.0.0.2"), Proto: "https", Host: "app.example.com", FromProxy: true},
		},
		{
			name:   "repeated proto and host are ignored",
			remote: "10.0.0.2:4000",
			headers: map[string][]string{
				"X-Forwarded-Proto": {"https", "http"},
				"X-Forwarded-Host":  {"a.example.com", "b.example.com"},
			},
			want: Forwarded{ClientIP: ip("10.0.0.2"), Proto: "http", Host: "app.example.com", FromProxy: true},
		},
		{
			name:   "unparseable remote address is not trusted",
			remote: "@unix",
			headers: map[string][]string{
				"X-Forwarded-For": {"203.0.113.5"},
			},
			want: Forwarded{Proto: "http", Host: "app.example.com"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://app.example.com/", nil)
			r.RemoteAddr = tc.remote
			if !tc.tls {
				r.TLS = nil
			} else {
				r.TLS = &tls.ConnectionState{}
			}
			for k, vs := range tc.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := trust.Forwarded(r); got != tc.want {
				t.Errorf("Forwarded() = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestForwardedDefaultTrustsNobody(t *testing.T) {
	trust, err := NewTrust(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://app.example.com/", nil)
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	want := Forwarded{ClientIP: ip("127.0.0.1"), Proto: "http", Host: "app.example.com"}
	if got := trust.Forwarded(r); got != want {
		t.Errorf("Forwarded() = %+v; want %+v", got, want)
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }
