package identity

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// secretValue is planted in claims so tests can check that no error message
// ever repeats a claim value.
const secretValue = "s3cr3t-claim-value"

func mustMapper(t testing.TB, c ClaimsConfig, p PrefixConfig, rules []Rule, m MappingConfig) *Mapper {
	t.Helper()
	mp, err := NewMapper(c, p, rules, m)
	if err != nil {
		t.Fatalf("NewMapper: %v", err)
	}
	return mp
}

// claimsJSON decodes like a JWT library does, so numbers are float64 and
// arrays are []any.
func claimsJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test claims %s: %v", s, err)
	}
	return m
}

func TestMapDefaults(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	claims := claimsJSON(t, `{"sub":"u-1","email":"alice@example.com","email_verified":true,"groups":["admin","dev"]}`)
	id, err := mp.Map("https://issuer.example", MethodJWT, claims)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	want := &Identity{
		Subject: "u-1", Username: "u-1", Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"admin", "dev"}, Claims: claims, Issuer: "https://issuer.example",
		Method: MethodJWT, Kind: KindUser,
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("Map =\n%+v\nwant\n%+v", id, want)
	}
}

func TestMapClaimNamesAndPrefixes(t *testing.T) {
	mp := mustMapper(t,
		ClaimsConfig{Username: "email", Groups: "cognito:groups", Email: "mail"},
		PrefixConfig{Username: "oidc:", Groups: "gid:"}, nil, MappingConfig{})
	claims := claimsJSON(t, `{"sub":"x","email":"alice@example.com","mail":"a@corp.example","cognito:groups":["admin","","ops"],"groups":["ignored"]}`)
	id, err := mp.Map("iss", MethodJWT, claims)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if id.Username != "oidc:alice@example.com" {
		t.Errorf("Username = %q", id.Username)
	}
	if id.Email != "a@corp.example" {
		t.Errorf("Email = %q, want the configured email claim", id.Email)
	}
	if want := []string{"gid:admin", "gid:ops"}; !reflect.DeepEqual(id.Groups, want) {
		t.Errorf("Groups = %q, want %q (prefixed, empty names dropped)", id.Groups, want)
	}
}

func TestMapGroupShapes(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	tests := []struct {
		name    string
		claims  string
		want    []string
		wantErr string
	}{
		{"array", `{"sub":"u","groups":["a","b"]}`, []string{"a", "b"}, ""},
		{"string", `{"sub":"u","groups":"a"}`, []string{"a"}, ""},
		{"missing", `{"sub":"u"}`, []string{}, ""},
		{"null", `{"sub":"u","groups":null}`, []string{}, ""},
		{"empty array", `{"sub":"u","groups":[]}`, []string{}, ""},
		{"number", `{"sub":"u","groups":42}`, nil, `groups claim "groups" must be a string or a list of strings`},
		{"array with number", `{"sub":"u","groups":["a",1]}`, nil, `groups claim "groups" must be a string or a list of strings`},
		{"object", `{"sub":"u","groups":{"a":"` + secretValue + `"}}`, nil, `groups claim "groups"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := mp.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			checkErr(t, err, tt.wantErr)
			if err == nil && !reflect.DeepEqual(id.Groups, tt.want) {
				t.Errorf("Groups = %#v, want %#v", id.Groups, tt.want)
			}
		})
	}
}

func TestMapUsernameRequired(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{Username: "email"}, PrefixConfig{Username: "p:"}, nil, MappingConfig{})
	tests := []struct {
		name   string
		claims string
	}{
		{"missing", `{"sub":"` + secretValue + `"}`},
		{"empty", `{"sub":"u","email":""}`},
		{"not a string", `{"sub":"u","email":["` + secretValue + `"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mp.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			checkErr(t, err, `username claim "email" is missing, empty or not a string`)
		})
	}
}

func TestMapEmailVerified(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	tests := []struct {
		value string
		want  bool
	}{
		{`true`, true}, {`"true"`, true}, {`false`, false}, {`"false"`, false},
		{`"yes"`, false}, {`1`, false}, {`null`, false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			id, err := mp.Map("iss", MethodJWT, claimsJSON(t, `{"sub":"u","email_verified":`+tt.value+`}`))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if id.EmailVerified != tt.want {
				t.Errorf("EmailVerified = %v, want %v", id.EmailVerified, tt.want)
			}
		})
	}
}

func TestMapMFA(t *testing.T) {
	byAMR := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	byClaim := mustMapper(t, ClaimsConfig{MFA: "custom:mfa"}, PrefixConfig{}, nil, MappingConfig{})
	tests := []struct {
		name   string
		mapper *Mapper
		claims string
		want   bool
	}{
		{"amr mfa", byAMR, `{"sub":"u","amr":["pwd","mfa"]}`, true},
		{"amr otp", byAMR, `{"sub":"u","amr":["otp"]}`, true},
		{"amr hwk", byAMR, `{"sub":"u","amr":["hwk"]}`, true},
		{"amr password only", byAMR, `{"sub":"u","amr":["pwd"]}`, false},
		{"amr as string", byAMR, `{"sub":"u","amr":"mfa"}`, true},
		{"amr wrong type", byAMR, `{"sub":"u","amr":[1,2]}`, false},
		{"no amr", byAMR, `{"sub":"u"}`, false},
		{"custom claim true", byClaim, `{"sub":"u","custom:mfa":true}`, true},
		{"custom claim string", byClaim, `{"sub":"u","custom:mfa":"true"}`, true},
		{"custom claim false", byClaim, `{"sub":"u","custom:mfa":false,"amr":["mfa"]}`, false},
		{"custom claim missing ignores amr", byClaim, `{"sub":"u","amr":["mfa"]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.mapper.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if id.MFA != tt.want {
				t.Errorf("MFA = %v, want %v", id.MFA, tt.want)
			}
		})
	}
}

func TestMapKind(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	tests := []struct {
		name   string
		claims string
		want   Kind
	}{
		{"person", `{"sub":"u-1","email":"a@example.com"}`, KindUser},
		{"kubernetes service account", `{"sub":"system:serviceaccount:ns:app"}`, KindService},
		{"client credentials client_id", `{"sub":"ci-bot","client_id":"ci-bot"}`, KindService},
		{"client credentials azp", `{"sub":"ci-bot","azp":"ci-bot"}`, KindService},
		{"user token via a client", `{"sub":"u-1","azp":"web-app"}`, KindUser},
		{"azp equals sub but has email", `{"sub":"u-1","azp":"u-1","email":"a@example.com"}`, KindUser},
		{"no client", `{"sub":"u-1"}`, KindUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := mp.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if id.Kind != tt.want {
				t.Errorf("Kind = %q, want %q", id.Kind, tt.want)
			}
		})
	}
}

func TestMapRules(t *testing.T) {
	rules := []Rule{
		{Expr: "claims.email_verified == true", Message: "email must be verified"},
		{Expr: `claims.email.endsWith("@example.com")`},
	}
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, rules, MappingConfig{})
	tests := []struct {
		name    string
		claims  string
		wantErr string
	}{
		{"all true", `{"sub":"u","email":"a@example.com","email_verified":true}`, ""},
		{"first false uses message", `{"sub":"u","email":"a@example.com","email_verified":false}`, "validation rule 0 failed: email must be verified"},
		{"second false uses expression", `{"sub":"u","email":"` + secretValue + `@evil.test","email_verified":true}`, `validation rule 1 failed: claims.email.endsWith("@example.com")`},
		{"missing claim fails closed", `{"sub":"u","email":"a@example.com"}`, "validation rule 0 (email must be verified) could not be evaluated"},
		{"wrong type fails closed", `{"sub":"u","email":["` + secretValue + `"],"email_verified":true}`, "validation rule 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mp.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestMapRuleNonBoolFailsClosed(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, []Rule{{Expr: "claims.flag"}}, MappingConfig{})
	for _, v := range []string{`"true"`, `1`, `null`} {
		_, err := mp.Map("iss", MethodJWT, claimsJSON(t, `{"sub":"u","flag":`+v+`}`))
		checkErr(t, err, "validation rule 0")
	}
	if _, err := mp.Map("iss", MethodJWT, claimsJSON(t, `{"sub":"u","flag":true}`)); err != nil {
		t.Errorf("flag=true: %v", err)
	}
}

func TestMapRuleCostLimit(t *testing.T) {
	// A quadratic rule over a large list must be cut off, not allowed.
	mp := mustMapper(t, ClaimsConfig{}, PrefixConfig{},
		[]Rule{{Expr: "claims.items.all(x, claims.items.all(y, x != y || x == y))"}}, MappingConfig{})
	items := make([]any, 3000)
	for i := range items {
		items[i] = float64(i)
	}
	_, err := mp.Map("iss", MethodJWT, map[string]any{"sub": "u", "items": items})
	checkErr(t, err, "could not be evaluated")
}

func TestMapMappings(t *testing.T) {
	tests := []struct {
		name    string
		mapping MappingConfig
		prefix  PrefixConfig
		claims  string
		user    string
		groups  []string
		wantErr string
	}{
		{
			name:    "username expression",
			mapping: MappingConfig{Username: `claims.preferred_username + "@corp"`},
			claims:  `{"sub":"u","preferred_username":"alice"}`,
			user:    "alice@corp", groups: []string{},
		},
		{
			name:    "prefix applies to expressions",
			mapping: MappingConfig{Username: `claims.preferred_username`, Groups: `claims.roles`},
			prefix:  PrefixConfig{Username: "u:", Groups: "g:"},
			claims:  `{"sub":"u","preferred_username":"alice","roles":["r1"]}`,
			user:    "u:alice", groups: []string{"g:r1"},
		},
		{
			name:    "groups expression list",
			mapping: MappingConfig{Groups: `claims.realm_access.roles.map(r, "kc-" + r)`},
			claims:  `{"sub":"u","realm_access":{"roles":["a","b"]}}`,
			user:    "u", groups: []string{"kc-a", "kc-b"},
		},
		{
			name:    "groups expression string",
			mapping: MappingConfig{Groups: `claims.team`},
			claims:  `{"sub":"u","team":"blue"}`,
			user:    "u", groups: []string{"blue"},
		},
		{
			name:    "username expression empty",
			mapping: MappingConfig{Username: `claims.name`},
			claims:  `{"sub":"u","name":""}`,
			wantErr: "username mapping expression returned an empty or non-string value",
		},
		{
			name:    "username expression wrong type at runtime",
			mapping: MappingConfig{Username: `claims.name`},
			claims:  `{"sub":"u","name":7}`,
			wantErr: "username mapping expression returned an empty or non-string value",
		},
		{
			name:    "username expression errors",
			mapping: MappingConfig{Username: `claims.nope`},
			claims:  `{"sub":"u"}`,
			wantErr: "username mapping expression could not be evaluated",
		},
		{
			name:    "groups expression errors",
			mapping: MappingConfig{Groups: `claims.nope`},
			claims:  `{"sub":"u"}`,
			wantErr: "groups mapping expression could not be evaluated",
		},
		{
			name:    "groups expression wrong element type",
			mapping: MappingConfig{Groups: `claims.roles`},
			claims:  `{"sub":"u","roles":[1,"` + secretValue + `"]}`,
			wantErr: "groups mapping expression must return a string or a list of strings",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp := mustMapper(t, ClaimsConfig{}, tt.prefix, nil, tt.mapping)
			id, err := mp.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			if id.Username != tt.user || !reflect.DeepEqual(id.Groups, tt.groups) {
				t.Errorf("got username %q groups %#v, want %q %#v", id.Username, id.Groups, tt.user, tt.groups)
			}
		})
	}
}

func TestNewMapperErrors(t *testing.T) {
	tests := []struct {
		name    string
		rules   []Rule
		mapping MappingConfig
		wantErr string
	}{
		{"rule syntax", []Rule{{Expr: "claims.a =="}}, MappingConfig{}, `rules[0] "claims.a =="`},
		{"rule not bool", []Rule{{Expr: "true"}, {Expr: `"yes"`}}, MappingConfig{}, `rules[1] "\"yes\"": expression returns string, want bool`},
		{"rule empty", []Rule{{Expr: " "}}, MappingConfig{}, "rules[0]"},
		{"rule unknown variable", []Rule{{Expr: "request.x == 1"}}, MappingConfig{}, `rules[0] "request.x == 1"`},
		{"username not string", nil, MappingConfig{Username: "1 + 2"}, `mappings.username "1 + 2": expression returns int`},
		{"groups not list or string", nil, MappingConfig{Groups: "true"}, `mappings.groups "true": expression returns bool, want string or list(string)`},
		{"groups syntax", nil, MappingConfig{Groups: "claims.("}, `mappings.groups "claims.("`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMapper(ClaimsConfig{}, PrefixConfig{}, tt.rules, tt.mapping)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if strings.Contains(err.Error(), secretValue) {
		t.Errorf("error %q leaks a claim value", err)
	}
}

func FuzzMapper(f *testing.F) {
	f.Add(`{"sub":"u","groups":["a"],"email":"a@example.com","email_verified":"true","amr":["mfa"]}`)
	f.Add(`{"sub":"system:serviceaccount:ns:sa","groups":"x"}`)
	f.Add(`{"sub":"c","client_id":"c","roles":[1,2]}`)
	f.Add(`{"sub":"","preferred_username":null}`)
	f.Add(`{"sub":{"a":[]},"email":7}`)
	plain := mustMapper(f, ClaimsConfig{}, PrefixConfig{Groups: "gid:"}, nil, MappingConfig{})
	withCEL := mustMapper(f, ClaimsConfig{}, PrefixConfig{Username: "u:", Groups: "gid:"},
		[]Rule{{Expr: `!has(claims.blocked)`}},
		MappingConfig{Username: `has(claims.preferred_username) ? claims.preferred_username : claims.sub`, Groups: `claims.roles`})
	f.Fuzz(func(t *testing.T, doc string) {
		var claims map[string]any
		if json.Unmarshal([]byte(doc), &claims) != nil {
			return
		}
		for _, mp := range []*Mapper{plain, withCEL} {
			id, err := mp.Map("iss", MethodJWT, claims)
			if err != nil {
				continue
			}
			if id.Username == "" || id.Username == mp.prefix.Username {
				t.Fatalf("empty username accepted: %+v", id)
			}
			for _, g := range id.Groups {
				if !strings.HasPrefix(g, "gid:") || g == "gid:" {
					t.Fatalf("group %q lacks prefix or is empty", g)
				}
			}
			if id.Groups == nil {
				t.Fatal("nil groups")
			}
		}
	})
}

// TestMapUnverifiedEmail: an email the issuer marks unverified is not part
// of the identity, and cannot be the username; an absent email_verified
// (many issuers never send it) leaves the email as it is.
func TestMapUnverifiedEmail(t *testing.T) {
	bySub := mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	byEmail := mustMapper(t, ClaimsConfig{Username: "email"}, PrefixConfig{}, nil, MappingConfig{})
	// The email is read from another claim, but the username is still the
	// "email" claim that email_verified speaks of.
	byEmailOtherMail := mustMapper(t, ClaimsConfig{Username: "email", Email: "mail"}, PrefixConfig{}, nil, MappingConfig{})
	tests := []struct {
		name      string
		mapper    *Mapper
		claims    string
		wantEmail string
		wantErr   bool
	}{
		{"verified", bySub, `{"sub":"u","email":"a@example.com","email_verified":true}`, "a@example.com", false},
		{"not sent", bySub, `{"sub":"u","email":"a@example.com"}`, "a@example.com", false},
		{"unverified is dropped", bySub, `{"sub":"u","email":"a@example.com","email_verified":false}`, "", false},
		{"unverified string is dropped", bySub, `{"sub":"u","email":"a@example.com","email_verified":"false"}`, "", false},
		{"unverified email as username", byEmail, `{"sub":"u","email":"a@example.com","email_verified":false}`, "", true},
		{"unverified email as username, email read from another claim", byEmailOtherMail, `{"sub":"u","email":"a@example.com","mail":"a@example.com","email_verified":false}`, "", true},
		{"verified email as username", byEmail, `{"sub":"u","email":"a@example.com","email_verified":true}`, "a@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.mapper.Map("iss", MethodJWT, claimsJSON(t, tt.claims))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Map error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && id.Email != tt.wantEmail {
				t.Errorf("Email = %q, want %q", id.Email, tt.wantEmail)
			}
		})
	}
}

// TestMapRefusesControlCharacters: a subject, username, email or group with
// a control character (CR/LF would split a header, NUL or DEL cut or garble
// it) rejects the token; the error names the field, never the value.
func TestMapRefusesControlCharacters(t *testing.T) {
	mp := mustMapper(t, ClaimsConfig{Username: "email"}, PrefixConfig{}, nil, MappingConfig{})
	ok := map[string]any{"sub": "u-1", "email": "alice@example.com", "groups": []any{"admin", "dev"}}
	for _, tt := range []struct {
		name, claim string
		value       any
		field       string
	}{
		{"CRLF in sub", "sub", "u-1\r\nX-Forwarded-Groups: admin" + secretValue, "subject"},
		{"LF in email (the username)", "email", "alice@example.com\n" + secretValue, "username"},
		{"NUL in email", "email", "alice@example.com\x00" + secretValue, "username"},
		{"tab in email", "email", "alice@example.com\t" + secretValue, "username"},
		{"DEL in a group", "groups", []any{"dev", "admin\x7f" + secretValue}, "group list"},
		{"CR in the only group", "groups", "admin\r" + secretValue, "group list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			claims := map[string]any{}
			for k, v := range ok {
				claims[k] = v
			}
			claims[tt.claim] = tt.value
			id, err := mp.Map("iss", MethodJWT, claims)
			if err == nil {
				t.Fatalf("Map accepted %q = %q: %+v", tt.claim, tt.value, id)
			}
			if !strings.Contains(err.Error(), tt.field) || strings.Contains(err.Error(), secretValue) {
				t.Errorf("error %q should name the %s and not carry its value", err, tt.field)
			}
		})
	}
	// A separate email claim with a control character is refused too,
	// even when the username comes from elsewhere.
	mp = mustMapper(t, ClaimsConfig{}, PrefixConfig{}, nil, MappingConfig{})
	if _, err := mp.Map("iss", MethodJWT, map[string]any{"sub": "u-1", "email": "a@b.example\r\n"}); err == nil || !strings.Contains(err.Error(), "email") {
		t.Errorf("email with CRLF: %v", err)
	}
	if _, err := mp.Map("iss", MethodJWT, map[string]any{"sub": "u-1", "email": "café@b.example", "groups": []any{"équipe"}}); err != nil {
		t.Errorf("non-ASCII names are valid header values: %v", err)
	}
}
