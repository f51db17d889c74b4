package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/authn/apitoken"
	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

func policyConfig(t *testing.T, issuer string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sekisho.yaml")
	src := fmt.Sprintf(`listen: {http: "127.0.0.1:0"}
jwt:
  - issuer: %s
    audiences: [api]
    claims: {username: email}
routes:
  - name: api1
    match: {host: api.example.com, path_prefix: /api1}
    to: builtin:echo
    allow:
      - groups: [admin]
      - domains: [example.com]
        methods: [GET]
    deny:
      - when: "identity.kind == 'user' && !identity.mfa"
  - name: health
    match: {path: /healthz}
    to: builtin:echo
    public: true
`, issuer)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExplain(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	cfg := policyConfig(t, iss.URL)

	code, out, errs := runCLI(t, "explain", "--config", cfg, "--identity", `{"email":"alice@example.com","groups":["dev"],"mfa":true}`, "GET", "https://api.example.com/api1/../api1/users?x=1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"route:     api1", "path:      /api1/users (canonical)", "deny[0]", "allow[0]", "allow[1]", "MATCH", "decision:  allow (200)"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}

	// A real token, verified against the issuer; no MFA → the deny rule matches.
	code, out, errs = runCLI(t, "explain", "--config", cfg, "--json", "--token", iss.Token(t), "GET", "https://api.example.com/api1/users")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		Route    string `json:"route"`
		Decision string `json:"decision"`
		Status   int    `json:"status"`
		Reason   string `json:"reason"`
		Identity struct {
			Username string `json:"username"`
		} `json:"identity"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if rep.Route != "api1" || rep.Decision != "deny" || rep.Status != 403 || rep.Identity.Username != "alice@example.com" || !strings.Contains(rep.Reason, "deny[0]") {
		t.Errorf("report = %+v", rep)
	}

	// Bad input.
	for _, args := range [][]string{
		{"explain", "--config", cfg, "GET"},
		{"explain", "--config", cfg, "--token", "x", "--identity", "{}", "GET", "https://a/"},
		{"explain", "--config", cfg, "--identity", `{"emial":"x"}`, "GET", "https://a/"},
		{"explain", "--config", cfg, "GET", "/relative"},
	} {
		if code, _, errs := runCLI(t, args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, code, errs)
		}
	}
}

func TestPolicyTest(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	cfg := policyConfig(t, iss.URL)
	dir := filepath.Dir(cfg)
	suite := filepath.Join(dir, "tests.yaml")
	write := func(cases string) {
		t.Helper()
		if err := os.WriteFile(suite, []byte("config: sekisho.yaml\ncases:\n"+cases), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`
  - name: admin with mfa
    method: GET
    url: https://api.example.com/api1/x
    identity: {email: bob@other.org, groups: [admin], mfa: true}
    expect: allow
  - name: no mfa is denied
    url: https://api.example.com/api1/x
    identity: {email: alice@example.com, groups: [admin]}
    expect: "403"
  - name: domain rule is GET only
    method: POST
    url: https://api.example.com/api1/x
    identity: {email: alice@example.com, mfa: true}
    expect: deny
  - name: anonymous
    url: https://api.example.com/api1/x
    expect: "401"
  - name: health is public
    url: https://anything/healthz
    expect: allow
  - name: api10 is not api1
    url: https://api.example.com/api10
    identity: {email: alice@example.com, groups: [admin], mfa: true}
    expect: "404"
  - name: escaping the root
    url: https://api.example.com/api1/%2e%2e/%2e%2e/etc
    expect: "400"
`)
	code, out, errs := runCLI(t, "policy", "test", suite)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "7 passed, 0 failed") {
		t.Errorf("summary: %s", out)
	}

	write(`
  - name: wrong expectation
    url: https://api.example.com/api1/x
    identity: {email: alice@example.com, groups: [admin]}
    expect: allow
`)
	code, out, _ = runCLI(t, "policy", "test", suite)
	if code != 1 || !strings.Contains(out, "FAIL wrong expectation") || !strings.Contains(out, "0 passed, 1 failed") || !strings.Contains(out, "deny[0]") {
		t.Errorf("mismatch: exit %d\n%s", code, out)
	}

	write("  - {name: bad, url: 'https://a/', expect: maybe}\n")
	if code, _, errs := runCLI(t, "policy", "test", suite); code != 2 || !strings.Contains(errs, "expect must be") {
		t.Errorf("bad expect: %d %s", code, errs)
	}
	write("  - {name: typo, url: 'https://a/', expect: allow, identty: {}}\n")
	if code, _, errs := runCLI(t, "policy", "test", suite); code != 2 || !strings.Contains(errs, "identty") {
		t.Errorf("unknown key: %d %s", code, errs)
	}
}

func TestToken(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cmdToken([]string{"hash"}, strings.NewReader("s3cret\n"), &out, &errb); code != 0 {
		t.Fatalf("hash: %d %s", code, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != apitoken.Hash([]byte("s3cret")) {
		t.Errorf("hash = %q", got)
	}
	out.Reset()
	if code := cmdToken([]string{"hash"}, strings.NewReader(""), &out, &errb); code != 2 {
		t.Errorf("empty stdin: exit %d", code)
	}
	out.Reset()
	if code := cmdToken([]string{"new"}, nil, &out, &errb); code != 0 {
		t.Fatalf("new: %d", code)
	}
	var tok, hash string
	fmt.Sscanf(out.String(), "token: %s\nhash:  %s", &tok, &hash)
	if !strings.HasPrefix(tok, "skt_") || hash != apitoken.Hash([]byte(tok)) {
		t.Errorf("new printed %q", out.String())
	}
	if code := cmdToken([]string{"bogus"}, nil, &out, &errb); code != 2 {
		t.Errorf("unknown subcommand: exit %d", code)
	}
}
