package authz

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
)

type decideCase struct {
	name      string
	allow     []Rule
	deny      []Rule
	id        *identity.Identity
	req       *Request
	wantAllow bool
	wantRule  string
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	env := newTestEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, env, tc.allow, tc.deny)
			req := tc.req
			if req == nil {
				req = get("/api1/items")
			}
			got := p.Decide(tc.id, req)
			if got.Allow != tc.wantAllow || got.Rule != tc.wantRule {
				t.Errorf("Decide = %+v, want allow=%v rule=%q", got, tc.wantAllow, tc.wantRule)
			}
			// Explain must always agree with Decide.
			if exp, _ := p.Explain(tc.id, req); exp != got {
				t.Errorf("Explain decision = %+v, Decide = %+v", exp, got)
			}
		})
	}
}

func TestDecideFields(t *testing.T) {
	allow := func(r Rule) []Rule { return []Rule{r} }
	runDecideCases(t, []decideCase{
		{name: "emails match", allow: allow(Rule{Emails: []string{"bob@example.com", "alice@example.com"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "emails case-insensitive", allow: allow(Rule{Emails: []string{"Alice@Example.COM"}}), id: alice(func(i *identity.Identity) { i.Email = "ALICE@example.com" }), wantAllow: true, wantRule: "allow[0]"},
		{name: "emails no match", allow: allow(Rule{Emails: []string{"bob@example.com"}}), id: alice()},
		{name: "domains match", allow: allow(Rule{Domains: []string{"example.com"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "domains no match", allow: allow(Rule{Domains: []string{"example.org"}}), id: alice()},
		{name: "domains exact not subdomain", allow: allow(Rule{Domains: []string{"example.com"}}), id: alice(func(i *identity.Identity) { i.Email = "alice@sub.example.com" })},
		{name: "groups any", allow: allow(Rule{Groups: []string{"admin", "staff"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "groups none", allow: allow(Rule{Groups: []string{"admin"}}), id: alice()},
		{name: "groups case-sensitive", allow: allow(Rule{Groups: []string{"Dev"}}), id: alice()},
		{name: "users match", allow: allow(Rule{Users: []string{"alice"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "users no match", allow: allow(Rule{Users: []string{"bob"}}), id: alice()},
		{name: "subjects match", allow: allow(Rule{Subjects: []string{"u-alice"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "subjects compare the sub, not the username", allow: allow(Rule{Subjects: []string{"alice"}}), id: alice()},
		{name: "subjects anonymous", allow: allow(Rule{Subjects: []string{"u-alice"}})},
		{name: "tokens match", allow: allow(Rule{Tokens: []string{"ci-bot"}}), id: ciBot(), wantAllow: true, wantRule: "allow[0]"},
		{name: "tokens other name", allow: allow(Rule{Tokens: []string{"deploy"}}), id: ciBot()},
		{
			name: "tokens only for api_token method", allow: allow(Rule{Tokens: []string{"ci-bot"}}),
			id: alice(func(i *identity.Identity) { i.TokenName = "ci-bot" }),
		},
		{name: "issuers match", allow: allow(Rule{Issuers: []string{"https://idp.example.com"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "issuers no match", allow: allow(Rule{Issuers: []string{"https://other.example.com"}}), id: alice()},
		{name: "methods match", allow: allow(Rule{Methods: []string{"post", "GET"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "methods no match", allow: allow(Rule{Methods: []string{"POST"}}), id: alice()},
		{name: "paths match", allow: allow(Rule{Paths: []string{"/api1"}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "paths no match", allow: allow(Rule{Paths: []string{"/api2"}}), id: alice()},
		{name: "when true", allow: allow(Rule{When: "identity.mfa && request.method == 'GET'"}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "when false", allow: allow(Rule{When: "identity.username == 'bob'"}), id: alice()},
		{name: "claims equals", allow: allow(Rule{Claims: []ClaimMatch{{Claim: "dept", Equals: "eng"}}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "claims contains", allow: allow(Rule{Claims: []ClaimMatch{{Claim: "roles", Contains: "writer"}}}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
	})
}

func TestDecideAndOr(t *testing.T) {
	adminPaths := Rule{Groups: []string{"admin", "dev"}, Paths: []string{"/admin", "/ops"}}
	runDecideCases(t, []decideCase{
		{name: "all fields hold", allow: []Rule{adminPaths}, id: alice(), req: get("/ops/x"), wantAllow: true, wantRule: "allow[0]"},
		{name: "one field fails", allow: []Rule{adminPaths}, id: alice(), req: get("/api1")},
		{name: "other field fails", allow: []Rule{adminPaths}, id: alice(func(i *identity.Identity) { i.Groups = []string{"staff"} }), req: get("/admin")},
		{
			name:  "claims are ANDed",
			allow: []Rule{{Claims: []ClaimMatch{{Claim: "dept", Equals: "eng"}, {Claim: "roles", Contains: "admin"}}}},
			id:    alice(),
		},
		{
			name:  "any rule of the list",
			allow: []Rule{{Groups: []string{"admin"}}, {Users: []string{"alice"}}},
			id:    alice(), wantAllow: true, wantRule: "allow[1]",
		},
		{
			name:  "first matching allow is named",
			allow: []Rule{{Users: []string{"alice"}}, {Groups: []string{"dev"}}},
			id:    alice(), wantAllow: true, wantRule: "allow[0]",
		},
	})
}

func TestDecideDenyOverAllow(t *testing.T) {
	runDecideCases(t, []decideCase{
		{
			name:  "deny wins over a matching allow",
			allow: []Rule{{Groups: []string{"dev"}}},
			deny:  []Rule{{Paths: []string{"/api2"}}, {Emails: []string{"alice@example.com"}}},
			id:    alice(), wantRule: "deny[1]",
		},
		{
			name:  "non-matching deny leaves allow",
			allow: []Rule{{Groups: []string{"dev"}}},
			deny:  []Rule{{Paths: []string{"/admin"}}},
			id:    alice(), wantAllow: true, wantRule: "allow[0]",
		},
		{name: "default deny", allow: []Rule{{Groups: []string{"admin"}}}, id: alice()},
		{name: "no rules denies", id: alice()},
		{name: "only deny rules deny", deny: []Rule{{Paths: []string{"/admin"}}}, id: alice()},
	})
}

func TestDecideAnonymous(t *testing.T) {
	runDecideCases(t, []decideCase{
		{name: "identity condition never matches", allow: []Rule{{Groups: []string{"dev"}}, {Domains: []string{"example.com"}}}},
		{name: "identity condition in deny does not match", allow: []Rule{{Paths: []string{"/"}}}, deny: []Rule{{Claims: []ClaimMatch{{Claim: "dept", Equals: "x"}}}}, wantAllow: true, wantRule: "allow[0]"},
		{name: "request-only rule matches", allow: []Rule{{Methods: []string{"GET"}, Paths: []string{"/api1"}}}, wantAllow: true, wantRule: "allow[0]"},
		{name: "when on authenticated", allow: []Rule{{When: "!identity.authenticated && identity.groups.size() == 0 && identity.username == ''"}}, wantAllow: true, wantRule: "allow[0]"},
		{name: "claims empty for anonymous", allow: []Rule{{When: "identity.claims.size() == 0"}}, wantAllow: true, wantRule: "allow[0]"},
		{name: "mixed rule needs identity", allow: []Rule{{Paths: []string{"/api1"}, Users: []string{"alice"}}}},
		{name: "mfa deny catches anonymous", allow: []Rule{{Paths: []string{"/"}}}, deny: []Rule{{When: "!identity.mfa"}}, wantRule: "deny[0]"},
	})
}

// The example from seed 003 (IAM MFA deny): deny whenever MFA is absent,
// allow by group or domain.
func TestDecideMFADeny(t *testing.T) {
	allow := []Rule{{Groups: []string{"admin"}}, {Domains: []string{"example.com"}}}
	deny := []Rule{{When: "!identity.mfa"}}
	runDecideCases(t, []decideCase{
		{name: "mfa user allowed", allow: allow, deny: deny, id: alice(), wantAllow: true, wantRule: "allow[1]"},
		{name: "no mfa denied", allow: allow, deny: deny, id: alice(func(i *identity.Identity) { i.MFA = false }), wantRule: "deny[0]"},
		// Like IAM's BoolIfExists, machines without MFA are denied too unless
		// the policy exempts them explicitly.
		{name: "token denied by plain mfa rule", allow: []Rule{{Tokens: []string{"ci-bot"}}}, deny: deny, id: ciBot(), wantRule: "deny[0]"},
		{
			name: "token exempted by kind", allow: []Rule{{Tokens: []string{"ci-bot"}}},
			deny: []Rule{{When: "identity.kind == 'user' && !identity.mfa"}}, id: ciBot(), wantAllow: true, wantRule: "allow[0]",
		},
	})
}

func TestDecideEmailShapes(t *testing.T) {
	email := func(e string) *identity.Identity {
		return alice(func(i *identity.Identity) { i.Email = e })
	}
	domain := []Rule{{Domains: []string{"example.com"}}}
	runDecideCases(t, []decideCase{
		{name: "two at signs", allow: domain, id: email("a@b.com@example.com")},
		{name: "two at signs trailing other", allow: domain, id: email("a@example.com@evil.com")},
		{name: "empty local part", allow: domain, id: email("@example.com")},
		{name: "empty domain", allow: []Rule{{Domains: []string{"example.com"}}}, id: email("alice@")},
		{name: "no at sign", allow: domain, id: email("example.com")},
		{name: "empty email", allow: domain, id: email("")},
		{name: "upper case matches", allow: domain, id: email("ALICE@EXAMPLE.COM"), wantAllow: true, wantRule: "allow[0]"},
		{name: "rule domain upper case", allow: []Rule{{Domains: []string{"Example.Com"}}}, id: email("alice@example.com"), wantAllow: true, wantRule: "allow[0]"},
		{name: "unicode fold does not match", allow: []Rule{{Domains: []string{"kuro.jp"}}}, id: email("alice@\u212auro.jp")},
		{name: "suffix is not domain", allow: domain, id: email("alice@evilexample.com")},
		{name: "deny domain with malformed email does not match", allow: []Rule{{Groups: []string{"dev"}}}, deny: []Rule{{Domains: []string{"evil.com"}}}, id: email("a@evil.com@x"), wantAllow: true, wantRule: "allow[0]"},
	})
}

func TestDecidePaths(t *testing.T) {
	cases := []struct {
		rule, path string
		want       bool
	}{
		{"/admin", "/admin", true},
		{"/admin", "/admin/", true},
		{"/admin", "/admin/x/y", true},
		{"/admin", "/administrator", false},
		{"/admin", "/adm", false},
		{"/admin", "/", false},
		{"/admin/", "/admin", true},
		{"/admin/", "/admin/x", true},
		{"/admin/", "/adminx", false},
		{"/a/b", "/a/b/c", true},
		{"/a/b", "/a/bc", false},
		{"/a/b", "/a", false},
		{"/", "/", true},
		{"/", "/anything/at/all", true},
	}
	var dcs []decideCase
	for _, c := range cases {
		dc := decideCase{name: c.rule + " vs " + c.path, allow: []Rule{{Paths: []string{c.rule}}}, req: get(c.path)}
		if c.want {
			dc.wantAllow, dc.wantRule = true, "allow[0]"
		}
		dcs = append(dcs, dc)
	}
	runDecideCases(t, dcs)
}

func TestDecideClaims(t *testing.T) {
	claim := func(c ClaimMatch) []Rule { return []Rule{{Claims: []ClaimMatch{c}}} }
	always := []Rule{{Paths: []string{"/"}}}
	runDecideCases(t, []decideCase{
		{name: "equals string", allow: claim(ClaimMatch{Claim: "dept", Equals: "eng"}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "equals string differs", allow: claim(ClaimMatch{Claim: "dept", Equals: "ops"}), id: alice()},
		{name: "equals yaml int vs json float", allow: claim(ClaimMatch{Claim: "level", Equals: 3}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "equals float differs", allow: claim(ClaimMatch{Claim: "level", Equals: 3.5}), id: alice()},
		{name: "equals bool", allow: claim(ClaimMatch{Claim: "admin", Equals: false}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "contains []any", allow: claim(ClaimMatch{Claim: "roles", Contains: "reader"}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "contains []string", allow: claim(ClaimMatch{Claim: "tags", Contains: "blue"}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "contains absent element", allow: claim(ClaimMatch{Claim: "roles", Contains: "admin"}), id: alice()},
		{name: "contains is not substring", allow: claim(ClaimMatch{Claim: "dept", Contains: "en"}), id: alice()},
		{name: "missing claim in allow", allow: claim(ClaimMatch{Claim: "nope", Equals: "x"}), id: alice()},
		{name: "missing claim in deny denies", allow: always, deny: claim(ClaimMatch{Claim: "nope", Equals: "x"}), id: alice(), wantRule: "deny[0]"},
		{name: "nil claims map in deny denies", allow: always, deny: claim(ClaimMatch{Claim: "dept", Equals: "x"}), id: alice(func(i *identity.Identity) { i.Claims = nil }), wantRule: "deny[0]"},
		{name: "mistyped claim in allow", allow: claim(ClaimMatch{Claim: "level", Equals: "3"}), id: alice()},
		{name: "mistyped claim in deny denies", allow: always, deny: claim(ClaimMatch{Claim: "dept", Contains: "eng"}), id: alice(), wantRule: "deny[0]"},
		{name: "decided claim in deny", allow: always, deny: claim(ClaimMatch{Claim: "dept", Equals: "contractors"}), id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{
			name: "undecided deny still needs its other conditions", allow: always,
			deny: []Rule{{Paths: []string{"/admin"}, Claims: []ClaimMatch{{Claim: "nope", Equals: "x"}}}}, id: alice(),
			wantAllow: true, wantRule: "allow[0]",
		},
		{
			name: "undecided deny with false claim after it", allow: always,
			deny: []Rule{{Claims: []ClaimMatch{{Claim: "nope", Equals: "x"}, {Claim: "dept", Equals: "ops"}}}}, id: alice(),
			wantAllow: true, wantRule: "allow[0]",
		},
	})
}

func TestDecideFailClosedCEL(t *testing.T) {
	const missing = "identity.claims.missing == 'x'"
	always := []Rule{{Paths: []string{"/"}}}
	runDecideCases(t, []decideCase{
		{name: "error in allow does not match", allow: []Rule{{When: missing}}, id: alice()},
		{name: "error in deny denies", allow: always, deny: []Rule{{When: missing}}, id: alice(), wantRule: "deny[0]"},
		{name: "error in deny with false other condition", allow: always, deny: []Rule{{When: missing, Methods: []string{"DELETE"}}}, id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "has() guards", allow: []Rule{{When: "has(identity.claims.missing) && identity.claims.missing == 'x'"}}, id: alice()},
		{name: "nested claim", allow: []Rule{{When: "'writer' in identity.claims.roles"}}, id: alice(), wantAllow: true, wantRule: "allow[0]"},
		{name: "division by zero in deny", allow: always, deny: []Rule{{When: "1 / (identity.groups.size() - 2) == 1"}}, id: alice(), wantRule: "deny[0]"},
	})
}

func TestDecideFailClosedReason(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, []Rule{{Paths: []string{"/"}}}, []Rule{{When: "identity.claims.missing == 'x'"}, {Paths: []string{"/x"}}})
	got := p.Decide(alice(), get("/x"))
	want := Decision{Rule: "deny[0]", Reason: "deny[0] could not be evaluated; failing closed"}
	if got != want {
		t.Errorf("Decide = %+v, want %+v", got, want)
	}
	if got := p.Decide(alice(func(i *identity.Identity) { i.Claims["missing"] = "y" }), get("/x")); got.Reason != "matched deny[1]" {
		t.Errorf("Decide reason = %q, want matched deny[1]", got.Reason)
	}
}

func TestDecideCostLimit(t *testing.T) {
	env := newTestEnv(t)
	many := alice(func(i *identity.Identity) {
		i.Groups = nil
		for n := range 100 {
			i.Groups = append(i.Groups, fmt.Sprint("g", n))
		}
	})
	const heavy = "identity.groups.all(a, identity.groups.all(b, identity.groups.all(c, a + b + c != '')))"
	allow := mustCompile(t, env, []Rule{{When: heavy}}, nil)
	if d := allow.Decide(many, get("/")); d.Allow {
		t.Errorf("allow over cost limit: %+v", d)
	}
	_, steps := allow.Explain(many, get("/"))
	if !strings.Contains(steps[0].Detail, "cost limit") {
		t.Errorf("detail = %q, want cost limit error", steps[0].Detail)
	}
	deny := mustCompile(t, env, []Rule{{Paths: []string{"/"}}}, []Rule{{When: "!(" + heavy + ")"}})
	if d := deny.Decide(many, get("/")); d.Allow || d.Rule != "deny[0]" {
		t.Errorf("deny over cost limit: %+v", d)
	}
	// The same expression on a small identity is within the limit.
	if d := allow.Decide(alice(), get("/")); !d.Allow {
		t.Errorf("small identity: %+v", d)
	}
}

func TestCELVariables(t *testing.T) {
	env := newTestEnv(t)
	exprs := []string{
		"identity.subject == 'u-alice'",
		"identity.username == 'alice'",
		"identity.email == 'alice@example.com'",
		"identity.email_verified",
		"'staff' in identity.groups",
		"identity.claims.dept == 'eng'",
		"identity.issuer == 'https://idp.example.com'",
		"identity.method == 'session'",
		"identity.mfa",
		"identity.kind == 'user'",
		"identity.token_name == ''",
		"identity.authenticated",
		"request.method == 'GET'",
		"request.host == 'api.example.com'",
		"request.path == '/api1/items'",
		"request.query == 'q=1'",
		"request.client_ip == '192.0.2.10'",
		"request.route == 'api1'",
		"request.headers['accept'] == 'application/json'",
		"request.headers['x-team'] == 'blue'",
		"!('authorization' in request.headers)",
		"!('cookie' in request.headers)",
		"request.headers.all(k, !k.matches('[A-Z]'))",
	}
	for _, expr := range exprs {
		t.Run(expr, func(t *testing.T) {
			p, err := Compile(env, "test", []Rule{{When: expr}}, nil)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if d, steps := p.Explain(alice(), get("/api1/items")); !d.Allow {
				t.Errorf("Explain = %+v %+v, want allow", d, steps)
			}
		})
	}
}

func TestCELToken(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, []Rule{{When: "identity.method == 'api_token' && identity.kind == 'service' && identity.token_name == 'ci-bot' && identity.claims.size() == 0"}}, nil)
	if d := p.Decide(ciBot(), get("/")); !d.Allow {
		t.Errorf("Decide = %+v, want allow", d)
	}
}

func TestDecideNilRequest(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, []Rule{{Paths: []string{"/x"}}, {When: "request.path == '' && request.client_ip == '' && request.headers.size() == 0"}}, nil)
	if d := p.Decide(alice(), nil); !d.Allow || d.Rule != "allow[1]" {
		t.Errorf("Decide(nil request) = %+v, want allow[1]", d)
	}
}

func TestExplain(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env,
		[]Rule{
			{Groups: []string{"admin"}},
			{Domains: []string{"example.com"}, Methods: []string{"GET"}},
			{When: "identity.claims.missing == 'x'"},
			{Claims: []ClaimMatch{{Claim: "dept", Equals: "ops"}}},
		},
		[]Rule{
			{When: "!identity.mfa"},
			{Paths: []string{"/admin"}},
			{Paths: []string{"/api1"}, Claims: []ClaimMatch{{Claim: "clearance", Equals: "high"}}},
		},
	)
	tests := []struct {
		name      string
		id        *identity.Identity
		req       *Request
		decision  Decision
		wantSteps []Step
	}{
		{
			name:     "fail-closed deny decides, every rule reported",
			id:       alice(),
			req:      get("/api1/x"),
			decision: Decision{Rule: "deny[2]", Reason: "deny[2] could not be evaluated; failing closed"},
			wantSteps: []Step{
				{Rule: "deny[0]", Detail: "when: expression is false"},
				{Rule: "deny[1]", Detail: "paths: path not under a listed prefix"},
				{Rule: "deny[2]", Matched: true, Detail: `matched: claims[0] could not be evaluated (claim "clearance" is missing); deny rules fail closed`},
				{Rule: "allow[0]", Detail: "groups: no listed group"},
				{Rule: "allow[1]", Matched: true, Detail: "matched"},
				{Rule: "allow[2]", Detail: "when could not be evaluated (no such key: missing); allow rules fail closed"},
				{Rule: "allow[3]", Detail: `claims[0]: claim "dept" does not equal ops`},
			},
		},
		{
			name:     "anonymous",
			req:      get("/other"),
			decision: Decision{Rule: "deny[0]", Reason: "matched deny[0]"},
			wantSteps: []Step{
				{Rule: "deny[0]", Matched: true, Detail: "matched"},
				{Rule: "deny[1]", Detail: "paths: path not under a listed prefix"},
				{Rule: "deny[2]", Detail: "paths: path not under a listed prefix"},
				{Rule: "allow[0]", Detail: "groups: anonymous request"},
				{Rule: "allow[1]", Detail: "domains: anonymous request"},
				{Rule: "allow[2]", Detail: "when could not be evaluated (no such key: missing); allow rules fail closed"},
				{Rule: "allow[3]", Detail: "claims: anonymous request"},
			},
		},
		{
			name:     "no allow",
			id:       alice(func(i *identity.Identity) { i.Email = "alice@" }),
			req:      with(get("/other"), func(r *Request) { r.Method = "POST" }),
			decision: Decision{Reason: "no allow rule matched"},
			wantSteps: []Step{
				{Rule: "deny[0]", Detail: "when: expression is false"},
				{Rule: "deny[1]", Detail: "paths: path not under a listed prefix"},
				{Rule: "deny[2]", Detail: "paths: path not under a listed prefix"},
				{Rule: "allow[0]", Detail: "groups: no listed group"},
				{Rule: "allow[1]", Detail: "methods: request method not listed"},
				{Rule: "allow[2]", Detail: "when could not be evaluated (no such key: missing); allow rules fail closed"},
				{Rule: "allow[3]", Detail: `claims[0]: claim "dept" does not equal ops`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, steps := p.Explain(tc.id, tc.req)
			if d != tc.decision {
				t.Errorf("decision = %+v, want %+v", d, tc.decision)
			}
			if dd := p.Decide(tc.id, tc.req); dd != d {
				t.Errorf("Decide = %+v, Explain = %+v", dd, d)
			}
			if len(steps) != len(tc.wantSteps) {
				t.Fatalf("steps = %d, want %d: %+v", len(steps), len(tc.wantSteps), steps)
			}
			for i := range steps {
				if steps[i] != tc.wantSteps[i] {
					t.Errorf("step %d = %+v\n            want %+v", i, steps[i], tc.wantSteps[i])
				}
			}
		})
	}
}

// Explain output goes to logs: credentials in the request never show, even
// when an expression fails on a header.
func TestExplainLeaksNoCredentials(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, []Rule{
		{When: "int(request.headers['authorization']) > 0"},
		{When: "request.headers['cookie'] == 'x'"},
	}, nil)
	_, steps := p.Explain(alice(), get("/"))
	for _, s := range steps {
		if strings.Contains(s.Detail, "secret") {
			t.Errorf("step %s leaks a credential: %q", s.Rule, s.Detail)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name        string
		allow, deny []Rule
		want        []string // substrings of the error
	}{
		{name: "empty rule", allow: []Rule{{}}, want: []string{`route "test": allow[0]: rule has no conditions`}},
		{name: "empty list", deny: []Rule{{Groups: []string{}}}, want: []string{"deny[0].groups: empty list"}},
		{name: "empty value", allow: []Rule{{Groups: []string{"a", ""}}}, want: []string{"allow[0].groups[1]: empty value"}},
		{name: "cel syntax", deny: []Rule{{When: "identity.mfa &&"}}, want: []string{"deny[0].when:", "Syntax error"}},
		{name: "cel unknown field", deny: []Rule{{When: "!identity.mfaa"}}, want: []string{"deny[0].when:", "mfaa"}},
		{name: "cel unknown variable", allow: []Rule{{When: "user.name == 'x'"}}, want: []string{"allow[0].when:", "undeclared reference to 'user'"}},
		{name: "cel not bool", allow: []Rule{{When: "identity.username"}}, want: []string{"allow[0].when: expression is of type string, not bool"}},
		{name: "cel dyn not bool", allow: []Rule{{When: "identity.claims.admin"}}, want: []string{"not bool", "== true"}},
		{name: "cel too long", allow: []Rule{{When: strings.Repeat("true && ", 600) + "true"}}, want: []string{"allow[0].when:", "size"}},
		{name: "bad email", allow: []Rule{{Emails: []string{"a@b@c"}}}, want: []string{`allow[0].emails[0]: email "a@b@c" is not a well-formed address`}},
		{name: "email without local part", allow: []Rule{{Emails: []string{"@example.com"}}}, want: []string{"allow[0].emails[0]"}},
		{name: "domain with at", allow: []Rule{{Domains: []string{"@example.com"}}}, want: []string{"allow[0].domains[0]", "without @"}},
		{name: "domain wildcard", allow: []Rule{{Domains: []string{"*.example.com"}}}, want: []string{"wildcards are not supported"}},
		{name: "path relative", allow: []Rule{{Paths: []string{"admin"}}}, want: []string{"must start with /"}},
		{name: "path glob", allow: []Rule{{Paths: []string{"/x/*"}}}, want: []string{`not globs; write "/x"`}},
		{name: "path dot segment", allow: []Rule{{Paths: []string{"/a/../b"}}}, want: []string{"must be canonical"}},
		{name: "path double slash", allow: []Rule{{Paths: []string{"/a//b"}}}, want: []string{"must be canonical"}},
		{name: "path encoded", allow: []Rule{{Paths: []string{"/a%2Fb"}}}, want: []string{"canonical (decoded)"}},
		{name: "path query", allow: []Rule{{Paths: []string{"/a?x=1"}}}, want: []string{"without query"}},
		{name: "method", allow: []Rule{{Methods: []string{"GET /"}}}, want: []string{"is not an HTTP method"}},
		{name: "claim no name", allow: []Rule{{Claims: []ClaimMatch{{Equals: "x"}}}}, want: []string{"allow[0].claims[0]: claim name is empty"}},
		{name: "claim both", allow: []Rule{{Claims: []ClaimMatch{{Claim: "a", Equals: "x", Contains: "y"}}}}, want: []string{"exactly one of equals and contains"}},
		{name: "claim neither", allow: []Rule{{Claims: []ClaimMatch{{Claim: "a"}}}}, want: []string{"exactly one of equals and contains"}},
		{name: "claim list value", allow: []Rule{{Claims: []ClaimMatch{{Claim: "a", Equals: []any{"x"}}}}}, want: []string{"equals must be a string, number or boolean"}},
		{name: "claims empty", allow: []Rule{{Claims: []ClaimMatch{}}}, want: []string{"allow[0].claims: empty list"}},
		{
			name:  "every error reported",
			allow: []Rule{{}, {Groups: []string{}}},
			deny:  []Rule{{When: "1"}},
			want:  []string{"allow[0]: rule has no conditions", "allow[1].groups", "deny[0].when"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(env, "test", tc.allow, tc.deny)
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want error", p)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Route != "test" {
				t.Errorf("error %v is not a *RuleError for route test", err)
			}
		})
	}
}

func TestCompileNilEnv(t *testing.T) {
	if _, err := Compile(nil, "r", []Rule{{Groups: []string{"a"}}}, nil); err == nil {
		t.Error("Compile(nil env) succeeded")
	}
}

func TestRuleErrorFields(t *testing.T) {
	_, err := Compile(newTestEnv(t), "api1", []Rule{{Groups: []string{"a"}}, {Paths: []string{"x"}}}, nil)
	var re *RuleError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *RuleError", err)
	}
	want := RuleError{Route: "api1", List: "allow", Index: 1, Field: "paths[0]"}
	if re.Route != want.Route || re.List != want.List || re.Index != want.Index || re.Field != want.Field {
		t.Errorf("RuleError = %+v, want %+v", *re, want)
	}
}

// Without CEL a decision must not allocate; the hot path depends on it.
func TestDecideNoAllocs(t *testing.T) {
	p := mustCompile(t, newTestEnv(t),
		[]Rule{{Groups: []string{"admin"}}, {Domains: []string{"example.com"}, Claims: []ClaimMatch{{Claim: "dept", Equals: "eng"}}}},
		[]Rule{{Paths: []string{"/admin"}}, {Claims: []ClaimMatch{{Claim: "missing", Equals: "x"}}, Methods: []string{"DELETE"}}},
	)
	id, req := alice(), get("/api1")
	if d := p.Decide(id, req); !d.Allow {
		t.Fatalf("Decide = %+v, want allow", d)
	}
	if n := testing.AllocsPerRun(100, func() { p.Decide(id, req) }); n != 0 {
		t.Errorf("Decide allocates %v times per run, want 0", n)
	}
}

func TestDecideConcurrent(t *testing.T) {
	p := mustCompile(t, newTestEnv(t),
		[]Rule{{Groups: []string{"dev"}, When: "request.headers['x-team'] == 'blue'"}},
		[]Rule{{When: "!identity.mfa"}},
	)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				mfa := (g+i)%2 == 0
				d := p.Decide(alice(func(id *identity.Identity) { id.MFA = mfa }), get("/"))
				if d.Allow != mfa {
					t.Errorf("mfa=%v: Decide = %+v", mfa, d)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestEmailDomain(t *testing.T) {
	tests := []struct {
		email, domain string
		ok            bool
	}{
		{"alice@example.com", "example.com", true},
		{"ALICE@EXAMPLE.COM", "EXAMPLE.COM", true},
		{"a@evil.com@example.com", "", false},
		{"a@example.com@evil.com", "", false},
		{"@example.com", "", false},
		{"alice@", "", false},
		{"example.com", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		d, ok := emailDomain(tc.email)
		if d != tc.domain || ok != tc.ok {
			t.Errorf("emailDomain(%q) = %q, %v; want %q, %v", tc.email, d, ok, tc.domain, tc.ok)
		}
	}
}
