package kubeuser

import (
	"errors"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/identity"
)

func compile(t *testing.T, src string) *Mapper {
	t.Helper()
	m, ps, _ := compileYAML(t, src)
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	return m
}

func compileYAML(t *testing.T, src string) (*Mapper, []string, []string) {
	t.Helper()
	var cfg Config
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	env, err := authz.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	m, ps, ws := Compile(env, cfg)
	var probs, warns []string
	for _, p := range ps {
		probs = append(probs, p.Key+": "+p.Msg)
	}
	for _, w := range ws {
		warns = append(warns, w.Key+": "+w.Msg)
	}
	return m, probs, warns
}

// cognito is a Cognito user as the JWT issuer maps it: groups from
// cognito:groups, no prefix.
func cognito(groups ...string) *identity.Identity {
	return &identity.Identity{
		Subject: "0b6c-42", Username: "alice", Email: "alice@example.com", EmailVerified: true,
		Groups: groups, Issuer: "https://cognito-idp.ap-northeast-1.amazonaws.com/pool",
		Method: identity.MethodJWT, Kind: identity.KindUser,
		Claims: map[string]any{"cognito:username": "alice", "custom:team": "payments"},
	}
}

func apiToken(name string, groups ...string) *identity.Identity {
	return &identity.Identity{Subject: name, Username: name, Groups: groups, Method: identity.MethodAPIToken, Kind: identity.KindService, TokenName: name}
}

const rules = `
rules:
  - name: ci
    match: {tokens: [deployer]}
    username: "ci:{{token_name}}"
    groups: [deployers]
  - name: cognito-admins
    match:
      issuers: [https://cognito-idp.ap-northeast-1.amazonaws.com/pool]
      groups: [admin]
    username: "cognito:{{email}}"
    groups: ["gid:{{groups}}", platform]
  - name: team
    match: {when: "identity.claims['custom:team'] == 'payments'"}
    username: "{{claims.cognito:username}}@payments"
    groups: []
default:
  username_prefix: "oidc:"
  groups_prefix: "gid:"
`

func TestMap(t *testing.T) {
	m := compile(t, rules)
	for _, tt := range []struct {
		name       string
		id         *identity.Identity
		wantUser   string
		wantGroups []string
		wantRule   string
	}{
		{"api token rule", apiToken("deployer", "x"), "ci:deployer", []string{"deployers"}, "ci"},
		{"groups template expands each group", cognito("admin", "staff"), "cognito:alice@example.com", []string{"gid:admin", "gid:staff", "platform"}, "cognito-admins"},
		{"cel match, claim template, no groups", cognito("staff"), "alice@payments", nil, "team"},
		{"default prefixes", &identity.Identity{Subject: "b-1", Username: "bob", Groups: []string{"staff"}, Method: identity.MethodJWT, Issuer: "https://idp"}, "oidc:bob", []string{"gid:staff"}, "default"},
		{"other api token falls to default", apiToken("reader", "ro"), "oidc:reader", []string{"gid:ro"}, "default"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := m.Map(tt.id)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if u.Username != tt.wantUser || !slices.Equal(u.Groups, tt.wantGroups) || u.Rule != tt.wantRule {
				t.Fatalf("got %q %q rule %q, want %q %q rule %q", u.Username, u.Groups, u.Rule, tt.wantUser, tt.wantGroups, tt.wantRule)
			}
			if u.Extra[ExtraRule][0] != tt.wantRule || u.Extra[ExtraMethod][0] != string(tt.id.Method) {
				t.Errorf("extra %v", u.Extra)
			}
			if u.UID == "" {
				t.Error("no uid")
			}
		})
	}
}

func TestUIDAndExtra(t *testing.T) {
	m := compile(t, "default: {}")
	u, err := m.Map(cognito("admin"))
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != "https://cognito-idp.ap-northeast-1.amazonaws.com/pool#0b6c-42" {
		t.Errorf("uid %q", u.UID)
	}
	if u.Extra[ExtraIssuer][0] != cognito().Issuer || u.Extra[ExtraEmail][0] != "alice@example.com" {
		t.Errorf("extra %v", u.Extra)
	}
	u, err = m.Map(apiToken("ci"))
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != "sekisho:api-token:ci" || u.Extra[ExtraTokenName][0] != "ci" || u.Extra[ExtraIssuer] != nil {
		t.Errorf("api token user %+v", u)
	}
}

// TestUnmapped: without a default, an identity no rule matches is not a
// Kubernetes user.
func TestUnmapped(t *testing.T) {
	m := compile(t, `
rules:
  - match: {groups: [admin]}
`)
	if _, err := m.Map(cognito("staff")); !errors.Is(err, ErrUnmapped) {
		t.Fatalf("unmapped identity: err %v, want ErrUnmapped", err)
	}
	u, err := m.Map(cognito("admin"))
	if err != nil || u.Username != "alice" || !slices.Equal(u.Groups, []string{"admin"}) || u.Rule != "rules[0]" {
		t.Fatalf("rule with defaults: %+v %v", u, err)
	}
}

// TestSystemNames: no mapping produces a reserved name unless its rule
// allows it, whatever the identity's own names are.
func TestSystemNames(t *testing.T) {
	m := compile(t, `
rules:
  - name: ops
    match: {tokens: [break-glass]}
    username: "{{token_name}}"
    groups: ["system:masters"]
    allow_system: true
  - name: keep
    match: {issuers: [https://idp]}
default: {}
`)
	if u, err := m.Map(apiToken("break-glass")); err != nil || u.Groups[0] != "system:masters" {
		t.Fatalf("allowed rule: %+v %v", u, err)
	}
	for _, tt := range []struct {
		name string
		id   *identity.Identity
	}{
		{"group from the issuer", &identity.Identity{Username: "eve", Groups: []string{"system:masters"}, Issuer: "https://idp", Method: identity.MethodJWT}},
		{"case variant", &identity.Identity{Username: "eve", Groups: []string{"SYSTEM:Masters"}, Issuer: "https://idp", Method: identity.MethodJWT}},
		{"username from the issuer", &identity.Identity{Username: "system:kube-controller-manager", Issuer: "https://idp", Method: identity.MethodJWT}},
		{"default mapping", &identity.Identity{Username: "system:admin", Issuer: "https://other", Method: identity.MethodJWT}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := m.Map(tt.id)
			if err == nil || !strings.Contains(err.Error(), "reserved system: namespace") {
				t.Fatalf("mapped to %+v (err %v), want refusal", u, err)
			}
			if strings.Contains(err.Error(), "masters") || strings.Contains(err.Error(), "eve") {
				t.Errorf("error carries identity values: %v", err)
			}
		})
	}
}

func TestMissingValuesFailClosed(t *testing.T) {
	m := compile(t, `
rules:
  - match: {issuers: [https://idp]}
    username: "{{email}}"
  - match: {issuers: [https://claims]}
    username: "{{claims.login}}"
default: {}
`)
	for _, id := range []*identity.Identity{
		{Username: "bob", Issuer: "https://idp", Method: identity.MethodJWT},
		{Username: "bob", Issuer: "https://claims", Method: identity.MethodJWT, Claims: map[string]any{"login": 7.0}},
	} {
		if u, err := m.Map(id); err == nil {
			t.Errorf("%s: mapped to %+v without the value its template needs", id.Issuer, u)
		}
	}
}

func TestGroupsCleaned(t *testing.T) {
	m := compile(t, `
rules:
  - groups: ["g:{{groups}}", "g:a", "fixed"]
`)
	u, err := m.Map(&identity.Identity{Username: "bob", Groups: []string{"a", "", "b"}, Method: identity.MethodJWT})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"g:a", "g:b", "fixed"}; !slices.Equal(u.Groups, want) {
		t.Fatalf("groups %q, want %q", u.Groups, want)
	}
	if _, err := m.Map(&identity.Identity{Username: "bob", Groups: []string{"a\nb"}, Method: identity.MethodJWT}); err == nil {
		t.Error("a group with a newline was mapped")
	}
}

func TestCompileProblems(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      []string // keys
		warn      []string
	}{
		{"nothing", "rules: []", []string{""}, nil},
		{"system literal", "rules: [{username: 'system:admin', groups: ['system:masters', 'ok']}]", []string{"rules[0].username", "rules[0].groups[0]"}, nil},
		{"allow_system warns", "rules: [{groups: ['system:masters'], allow_system: true}]", nil, []string{"rules[0].allow_system"}},
		{"templates", "rules: [{username: '{{groups}}', groups: ['{{nope}}', '{{claims.}}', 'a}}', '{{groups}}{{groups}}']}]", []string{"rules[0].username", "rules[0].groups[0]", "rules[0].groups[1]", "rules[0].groups[2]", "rules[0].groups[3]"}, nil},
		{"request fields", "rules: [{match: {methods: [GET]}}]", []string{"rules[0].match"}, nil},
		{"bad match", "rules: [{match: {when: 'identity.nope'}}, {match: {}}]", []string{"rules[0].match.when", "rules[1].match"}, nil},
		{"duplicate names", "rules: [{name: a}, {name: a}]", []string{"rules[1].name"}, nil},
		{"system prefixes", "default: {username_prefix: 'system:', groups_prefix: 'System:'}", []string{"default.username_prefix", "default.groups_prefix"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ps, ws := compileYAML(t, tt.src)
			if got := keys(ps); !slices.Equal(got, tt.want) {
				t.Errorf("problems %q, want keys %q", ps, tt.want)
			}
			if got := keys(ws); !slices.Equal(got, tt.warn) {
				t.Errorf("warnings %q, want keys %q", ws, tt.warn)
			}
		})
	}
}

func keys(ps []string) []string {
	var out []string
	for _, p := range ps {
		k, _, _ := strings.Cut(p, ": ")
		out = append(out, k)
	}
	return out
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{{username}}", "gid:{{groups}}:x", "{{claims.a}}", "{{", "}}", "a{{email}}b{{issuer}}"} {
		f.Add(s)
	}
	id := cognito("a", "b")
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := ParseTemplate(s, true)
		if err != nil {
			return
		}
		if tmpl.String() != s {
			t.Fatalf("String() = %q, want %q", tmpl.String(), s)
		}
		_, _ = tmpl.expand(id)
	})
}
