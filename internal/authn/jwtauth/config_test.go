package jwtauth

import (
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/identity"
)

// TestIssuerConfigYAML checks the field names users write under `jwt:`.
func TestIssuerConfigYAML(t *testing.T) {
	const doc = `
- issuer: https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_XXXX
  jwks_url: https://example.com/jwks.json
  audiences: [example-client-id]
  algorithms: [RS256, HS256]
  hmac_secret_file: /etc/sekisho/hmac
  clock_skew: 30s
  claims: {username: email, groups: "cognito:groups", email: mail, mfa: "custom:mfa"}
  prefix: {username: "oidc:", groups: "gid:"}
  rules:
    - {expr: "claims.email_verified == true", message: "verify your email"}
  mappings: {username: "claims.sub", groups: "claims.roles"}
`
	var got []IssuerConfig
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatal(err)
	}
	want := []IssuerConfig{{
		Issuer:         "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_XXXX",
		JWKSURL:        "https://example.com/jwks.json",
		Audiences:      []string{"example-client-id"},
		Algorithms:     []string{"RS256", "HS256"},
		HMACSecretFile: "/etc/sekisho/hmac",
		ClockSkew:      30 * time.Second,
		Claims:         identity.ClaimsConfig{Username: "email", Groups: "cognito:groups", Email: "mail", MFA: "custom:mfa"},
		Prefix:         identity.PrefixConfig{Username: "oidc:", Groups: "gid:"},
		Rules:          []identity.Rule{{Expr: "claims.email_verified == true", Message: "verify your email"}},
		Mappings:       identity.MappingConfig{Username: "claims.sub", Groups: "claims.roles"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
}
