package authz

import (
	"errors"
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
