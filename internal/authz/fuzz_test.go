package authz

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
)

// FuzzCompile feeds arbitrary rule fields and CEL text to Compile: it must
// never panic, must report failures as *RuleError, and a policy it accepts
// must decide without panicking, Explain agreeing with Decide.
func FuzzCompile(f *testing.F) {
	f.Add("!identity.mfa", "/admin", "alice@example.com", "example.com", "GET", "dept", "eng")
	f.Add("identity.claims.x == 'y'", "/x/*", "a@b@c", "@x", "get", "", "")
	f.Add("request.headers['a'].size() > 1 ||", "/a/../b", "@", "*.x", "G T", "roles", "1")
	f.Add("[1,2,3].all(x, x > 0)", "/", "", "", "", "c", "")
	env := newTestEnv(f)
	f.Fuzz(func(t *testing.T, when, path, email, domain, method, claim, equals string) {
		r := Rule{When: when}
		if path != "" {
			r.Paths = []string{path}
		}
		if email != "" {
			r.Emails = []string{email}
		}
		if domain != "" {
			r.Domains = []string{domain}
		}
		if method != "" {
			r.Methods = []string{method}
		}
		if claim != "" {
			r.Claims = []ClaimMatch{{Claim: claim, Equals: equals}}
		}
		p, err := Compile(env, "fuzz", []Rule{r}, []Rule{r})
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RuleError", err)
			}
			return
		}
		for _, id := range []*identity.Identity{nil, alice()} {
			d := p.Decide(id, get("/admin/x"))
			if e, _ := p.Explain(id, get("/admin/x")); e != d {
				t.Fatalf("Explain = %+v, Decide = %+v", e, d)
			}
			if d.Allow {
				t.Fatalf("a rule in both deny and allow allowed: %+v", d)
			}
		}
	})
}

// FuzzDecide checks path and domain matching against their plain-words
// definitions for arbitrary paths and addresses.
func FuzzDecide(f *testing.F) {
	f.Add("/admin/x", "alice@example.com")
	f.Add("/administrator", "a@example.com@evil.com")
	f.Add("/admin", "@EXAMPLE.COM")
	f.Add("/", "alice@exampl\u212a.com")
	env := newTestEnv(f)
	paths := mustCompile(f, env, []Rule{{Paths: []string{"/admin/"}}}, nil)
	domains := mustCompile(f, env, []Rule{{Domains: []string{"example.com"}}}, nil)
	f.Fuzz(func(t *testing.T, path, email string) {
		wantPath := path == "/admin" || strings.HasPrefix(path, "/admin/")
		if got := paths.Decide(nil, &Request{Path: path}).Allow; got != wantPath {
			t.Errorf("path %q: allow = %v, want %v", path, got, wantPath)
		}
		parts := strings.Split(email, "@")
		wantDomain := len(parts) == 2 && parts[0] != "" && strings.ToLower(parts[1]) == "example.com" && isASCII(parts[1])
		id := alice(func(i *identity.Identity) { i.Email = email })
		if got := domains.Decide(id, get("/")).Allow; got != wantDomain {
			t.Errorf("email %q: allow = %v, want %v", email, got, wantDomain)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzClientIPs checks client_ips against netip's own containment for
// arbitrary entries and client addresses: an accepted entry matches exactly
// the addresses in its prefix (IPv4-mapped clients as IPv4), and a refused
// one is a *RuleError.
func FuzzClientIPs(f *testing.F) {
	f.Add("10.0.0.0/8", []byte{10, 1, 2, 3})
	f.Add("192.0.2.7", []byte{192, 0, 2, 8})
	f.Add("2001:db8::/32", []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add("::ffff:10.0.0.0/104", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1})
	f.Add("10.0.0.1/8", []byte{})
	env := newTestEnv(f)
	f.Fuzz(func(t *testing.T, entry string, raw []byte) {
		p, err := Compile(env, "fuzz", []Rule{{ClientIPs: []string{entry}}}, nil)
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) || re.Field != "client_ips[0]" {
				t.Fatalf("Compile(%q) error %v is not a *RuleError on client_ips[0]", entry, err)
			}
			return
		}
		ip, _ := netip.AddrFromSlice(raw)
		got := p.Decide(nil, &Request{ClientIP: ip}).Allow
		prefix, perr := netip.ParsePrefix(entry)
		if perr != nil {
			a := netip.MustParseAddr(entry).Unmap()
			prefix = netip.PrefixFrom(a, a.BitLen())
		}
		if want := ip.IsValid() && prefix.Contains(ip.Unmap()); got != want {
			t.Fatalf("client_ips [%q], client %v: allow = %v, want %v", entry, ip, got, want)
		}
	})
}
