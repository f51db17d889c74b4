package authz

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
)

func BenchmarkDecide(b *testing.B) {
	env := newTestEnv(b)
	alice := &identity.Identity{
		Subject: "u-1", Username: "alice", Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"dev", "staff"}, Method: identity.MethodSession, MFA: true, Kind: identity.KindUser,
	}
	req := &Request{
		Method: "GET", Host: "api.example.com", Path: "/api1/items", Route: "api1",
		Headers:  http.Header{"Accept": {"application/json"}, "User-Agent": {"bench"}},
		ClientIP: netip.MustParseAddr("192.0.2.1"),
	}
	cases := []struct {
		name  string
		allow []Rule
		deny  []Rule
	}{
		{"3rules-cel", []Rule{{Groups: []string{"admin"}}, {Domains: []string{"example.com"}}}, []Rule{{When: "!identity.mfa"}}},
		{"3rules-nocel", []Rule{{Groups: []string{"admin"}}, {Domains: []string{"example.com"}}}, []Rule{{Paths: []string{"/admin"}}}},
		{"request-headers-cel", []Rule{{When: "request.headers['accept'] == 'application/json'"}}, nil},
		{"client-ips", []Rule{{ClientIPs: []string{"10.0.0.0/8", "192.0.2.0/24"}, Domains: []string{"example.com"}}}, nil},
		{"client-ip-cidr-cel", []Rule{{When: "cidr('192.0.2.0/24').containsIP(request.client_ip)"}}, nil},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			p := mustCompile(b, env, tc.allow, tc.deny)
			if d := p.Decide(alice, req); !d.Allow {
				b.Fatalf("Decide = %+v, want allow", d)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(alice, req)
			}
		})
	}
}
