package authz

import (
	"net/netip"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/interpreter"
)

// from is a GET /api1/items from the client address ip ("" for unknown).
func from(ip string) *Request {
	return with(get("/api1/items"), func(r *Request) {
		r.ClientIP = netip.Addr{}
		if ip != "" {
			r.ClientIP = netip.MustParseAddr(ip)
		}
	})
}

func TestDecideClientIPs(t *testing.T) {
	office := Rule{ClientIPs: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}}
	always := []Rule{{Paths: []string{"/"}}}
	runDecideCases(t, []decideCase{
		{name: "IPv4 in a CIDR", allow: []Rule{office}, id: alice(), req: from("10.1.2.3"), wantAllow: true, wantRule: "allow[0]"},
		{name: "IPv4 single address", allow: []Rule{office}, id: alice(), req: from("192.0.2.7"), wantAllow: true, wantRule: "allow[0]"},
		{name: "IPv4 next to the single address", allow: []Rule{office}, id: alice(), req: from("192.0.2.8")},
		{name: "IPv4 outside", allow: []Rule{office}, id: alice(), req: from("11.0.0.1")},
		{name: "IPv6 in a CIDR", allow: []Rule{office}, id: alice(), req: from("2001:db8:1::5"), wantAllow: true, wantRule: "allow[0]"},
		{name: "IPv6 outside", allow: []Rule{office}, id: alice(), req: from("2001:db9::1")},
		{name: "IPv4-mapped IPv6 counts as IPv4", allow: []Rule{office}, id: alice(), req: from("::ffff:10.9.9.9"), wantAllow: true, wantRule: "allow[0]"},
		{name: "zone ignored", allow: []Rule{office}, id: alice(), req: from("2001:db8::1%eth0"), wantAllow: true, wantRule: "allow[0]"},
		{name: "anonymous from a listed range", allow: []Rule{office}, req: from("10.1.2.3"), wantAllow: true, wantRule: "allow[0]"},
		{name: "AND with groups", allow: []Rule{{ClientIPs: []string{"10.0.0.0/8"}, Groups: []string{"admin"}}}, id: alice(), req: from("10.1.2.3")},
		{name: "unknown address: allow does not match", allow: []Rule{office}, id: alice(), req: from("")},
		{name: "unknown address: deny fails closed", allow: always, deny: []Rule{{ClientIPs: []string{"0.0.0.0/0", "::/0"}}}, id: alice(), req: from(""), wantRule: "deny[0]"},
		{name: "deny from a range", allow: always, deny: []Rule{{ClientIPs: []string{"203.0.113.0/24"}}}, id: alice(), req: from("203.0.113.9"), wantRule: "deny[0]"},
		{name: "deny elsewhere", allow: always, deny: []Rule{{ClientIPs: []string{"203.0.113.0/24"}}}, id: alice(), req: from("198.51.100.1"), wantAllow: true, wantRule: "allow[0]"},
	})
}

func TestClientIPsExplainAndReason(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, []Rule{{Groups: []string{"staff"}, ClientIPs: []string{"10.0.0.0/8"}}}, []Rule{{ClientIPs: []string{"203.0.113.0/24"}}})
	tests := []struct {
		name     string
		req      *Request
		decision Decision
		steps    []Step
	}{
		{"allowed from the office", from("10.0.0.1"), Decision{Allow: true, Rule: "allow[0]", Reason: "matched allow[0]"},
			[]Step{{Rule: "deny[0]", Detail: "client_ips: client address not in a listed range"}, {Rule: "allow[0]", Matched: true, Detail: "matched"}}},
		{"denied from a blocked range", from("203.0.113.5"), Decision{Rule: "deny[0]", Reason: "matched deny[0]"},
			[]Step{{Rule: "deny[0]", Matched: true, Detail: "matched"}, {Rule: "allow[0]", Detail: "client_ips: client address not in a listed range"}}},
		{"unknown address", from(""), Decision{Rule: "deny[0]", Reason: "deny[0] could not be evaluated; failing closed"},
			[]Step{
				{Rule: "deny[0]", Matched: true, Detail: "matched: client_ips could not be evaluated (client address unknown); deny rules fail closed"},
				{Rule: "allow[0]", Detail: "client_ips could not be evaluated (client address unknown); allow rules fail closed"},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, steps := p.Explain(alice(), tc.req)
			if d != tc.decision {
				t.Errorf("decision = %+v, want %+v", d, tc.decision)
			}
			if len(steps) != len(tc.steps) {
				t.Fatalf("steps = %+v, want %+v", steps, tc.steps)
			}
			for i := range steps {
				if steps[i] != tc.steps[i] {
					t.Errorf("step %d = %+v, want %+v", i, steps[i], tc.steps[i])
				}
			}
		})
	}
}

func TestClientIPsCompileErrors(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		entry string
		want  string
	}{
		{"10.0.0.0/33", "is not an IP address or CIDR"},
		{"10.0.0.256", "is not an IP address or CIDR"},
		{"example.com", "is not an IP address or CIDR"},
		{"10.0.0.1/8", "write 10.0.0.0/8"},
		{"2001:db8::1/32", "write 2001:db8::/32"},
		{"fe80::1%eth0", "zones are not allowed"},
		{"::ffff:10.0.0.0/104", "IPv4 form"},
	}
	for _, tc := range tests {
		t.Run(tc.entry, func(t *testing.T) {
			_, err := Compile(env, "test", []Rule{{ClientIPs: []string{"10.0.0.0/8", tc.entry}}}, nil)
			if err == nil || !strings.Contains(err.Error(), "allow[0].client_ips[1]: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile error = %v, want allow[0].client_ips[1] saying %q", err, tc.want)
			}
		})
	}
	if _, err := Compile(env, "test", nil, []Rule{{ClientIPs: []string{}}}); err == nil || !strings.Contains(err.Error(), "deny[0].client_ips: empty list") {
		t.Errorf("empty client_ips: %v", err)
	}
	// client_ips alone is a condition: the rule is not empty.
	if _, err := Compile(env, "test", []Rule{{ClientIPs: []string{"::1"}}}, nil); err != nil {
		t.Errorf("client_ips only: %v", err)
	}
}

// Without CEL, a client_ips rule decides without allocating.
func TestClientIPsNoAllocs(t *testing.T) {
	p := mustCompile(t, newTestEnv(t), []Rule{{ClientIPs: []string{"192.0.2.0/24", "2001:db8::/32"}, Groups: []string{"staff"}}}, nil)
	id, req := alice(), get("/api1")
	if d := p.Decide(id, req); !d.Allow {
		t.Fatalf("Decide = %+v, want allow", d)
	}
	if n := testing.AllocsPerRun(100, func() { p.Decide(id, req) }); n != 0 {
		t.Errorf("Decide allocates %v times per run, want 0", n)
	}
}

func TestCELNetwork(t *testing.T) {
	always := []Rule{{Paths: []string{"/"}}}
	const office = "cidr('10.0.0.0/8').containsIP(request.client_ip)"
	runDecideCases(t, []decideCase{
		{name: "containsIP string", allow: []Rule{{When: office}}, id: alice(), req: from("10.2.3.4"), wantAllow: true, wantRule: "allow[0]"},
		{name: "containsIP outside", allow: []Rule{{When: office}}, id: alice(), req: from("192.0.2.1")},
		{name: "containsIP ip()", allow: []Rule{{When: "cidr('2001:db8::/32').containsIP(ip(request.client_ip))"}}, id: alice(), req: from("2001:db8::9"), wantAllow: true, wantRule: "allow[0]"},
		{name: "ip methods", allow: []Rule{{When: "ip(request.client_ip).isLoopback() && ip(request.client_ip).family() == 6"}}, id: alice(), req: from("::1"), wantAllow: true, wantRule: "allow[0]"},
		{name: "isIP", allow: []Rule{{When: "isIP(request.client_ip) && isCIDR('10.0.0.0/8')"}}, id: alice(), req: from("10.0.0.1"), wantAllow: true, wantRule: "allow[0]"},
		{name: "negated", deny: []Rule{{When: "!" + office}}, allow: always, id: alice(), req: from("192.0.2.1"), wantRule: "deny[0]"},
		// An address that does not parse at run time is an error: fail closed.
		{name: "unknown address: allow does not match", allow: []Rule{{When: office}}, id: alice(), req: from("")},
		{name: "unknown address: deny denies", deny: []Rule{{When: "!" + office}}, allow: always, id: alice(), req: from(""), wantRule: "deny[0]"},
		{name: "unparseable header: deny denies", deny: []Rule{{When: "cidr('10.0.0.0/8').containsIP(request.headers['x-team'])"}}, allow: always, id: alice(), wantRule: "deny[0]"},
	})
}

func TestCELNetworkBadLiteral(t *testing.T) {
	env := newTestEnv(t)
	for _, expr := range []string{
		"cidr('10.0.0.0/33').containsIP(request.client_ip)",
		"cidr('office').containsIP(request.client_ip)",
		"cidr('10.0.0.0/8').containsIP(ip('10.0.0.256'))",
	} {
		_, err := Compile(env, "test", []Rule{{When: expr}}, nil)
		if err == nil || !strings.Contains(err.Error(), "allow[0].when:") {
			t.Errorf("Compile(%q) = %v, want a compile error at allow[0].when", expr, err)
		}
	}
}

// Literal ip() and cidr() calls become constants when the program is
// built, so their strings are parsed once, not per request.
func TestCELNetworkLiteralsFoldedOnce(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		expr string
		want int
	}{
		{"cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))", 2},
		{"cidr('10.0.0.0/8').containsIP(request.client_ip)", 1},
		{"cidr(request.headers['x-net']).containsIP(request.client_ip)", 0},
	}
	for _, tc := range tests {
		ast, iss := env.cel.Compile(tc.expr)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		folded := 0
		count := func(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
			out, err := foldNetworkLiterals(i)
			if out != i {
				folded++
			}
			return out, err
		}
		prg, err := env.cel.Program(ast, cel.CustomDecoratorV2(count))
		if err != nil {
			t.Fatal(err)
		}
		if folded != tc.want {
			t.Errorf("%s: %d literals folded, want %d", tc.expr, folded, tc.want)
		}
		act := &activation{env: env, id: alice(), req: from("10.1.2.3")}
		if out, _, err := prg.Eval(act); tc.want > 0 && (err != nil || out.Value() != true) {
			t.Errorf("%s = %v, %v; want true", tc.expr, out, err)
		}
	}
}
