package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
	"github.com/sekisho/sekisho/internal/testutil"
)

const ciToken = "skt_test-token-for-the-ci-bot-0123456789abcdef"

// authConfig is a gateway with a real JWT issuer, an API token file and
// routes with policies.
func authConfig(t *testing.T, iss *jwttest.Issuer) string {
	t.Helper()
	tokens := testutil.TokenFile(t, "ci-bot", ciToken, "ci")
	return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - issuer: %s
    audiences: [api]
    claims: {username: email}
api_tokens: {file: %s}
upstream_identity:
  assertion: {ttl: 30s}
routes:
  - name: api1
    match: {path_prefix: /api1}
    to: builtin:echo
    allow:
      - groups: [admin]
      - tokens: [ci-bot]
  - name: mfa
    match: {path_prefix: /mfa}
    to: builtin:echo
    allow: [{domains: [example.com]}]
    deny: [{when: "!identity.mfa"}]
  - name: broken-cel
    match: {path_prefix: /cel}
    to: builtin:echo
    allow: [{when: "identity.claims.missing == 'x'"}]
  - name: deny-broken-cel
    match: {path_prefix: /denycel}
    to: builtin:echo
    allow: [{groups: [admin]}]
    deny: [{when: "identity.claims.missing == 'x'"}]
  - name: passthrough
    match: {path_prefix: /pass}
    to: builtin:echo
    pass_credentials: true
    allow: [{groups: [admin]}]
  - name: open
    match: {path_prefix: /open}
    to: builtin:echo
    public: true
`, iss.URL, tokens)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestAuthorize(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	f := newFixture(t, authConfig(t, iss))
	waitJWTReady(t, f)

	admin := iss.Token(t)
	devOnly := iss.Token(t, "groups", []string{"dev"})
	withMFA := iss.Token(t, "amr", []string{"pwd", "mfa"})
	expired := iss.Token(t, "exp", time.Now().Add(-time.Hour).Unix(), "iat", time.Now().Add(-2*time.Hour).Unix())
	wrongAud := iss.Token(t, "aud", "other")
	evilEmail := iss.Token(t, "email", "a@example.com@evil.com", "amr", []string{"mfa"})

	tests := []struct {
		name      string
		target    string
		hdr       map[string]string
		status    int
		challenge string // expected WWW-Authenticate
	}{
		{"no credentials", "/api1/x", nil, 401, `Bearer realm="sekisho"`},
		{"valid admin JWT", "/api1/x", bearer(admin), 200, ""},
		{"scheme is case-insensitive", "/api1/x", map[string]string{"Authorization": "bearer " + admin}, 200, ""},
		{"authenticated, not allowed", "/api1/x", bearer(devOnly), 403, `Bearer realm="sekisho", error="insufficient_scope"`},
		{"expired", "/api1/x", bearer(expired), 401, `Bearer realm="sekisho", error="invalid_token"`},
		{"wrong audience", "/api1/x", bearer(wrongAud), 401, `Bearer realm="sekisho", error="invalid_token"`},
		{"garbage token", "/api1/x", bearer("a.b.c"), 401, `Bearer realm="sekisho", error="invalid_token"`},
		{"huge token", "/api1/x", bearer(strings.Repeat("A", 20000) + ".b.c"), 401, `Bearer realm="sekisho", error="invalid_token"`},
		{"api token", "/api1/x", bearer(ciToken), 200, ""},
		{"wrong api token", "/api1/x", bearer(ciToken + "x"), 401, `Bearer realm="sekisho", error="invalid_token"`},
		{"basic auth is not a credential", "/api1/x", map[string]string{"Authorization": "Basic YTpi"}, 401, `Bearer realm="sekisho"`},
		{"mfa deny without mfa", "/mfa/x", bearer(admin), 403, `Bearer realm="sekisho", error="insufficient_scope"`},
		{"mfa deny with mfa", "/mfa/x", bearer(withMFA), 200, ""},
		{"malformed email never matches a domain", "/mfa/x", bearer(evilEmail), 403, `Bearer realm="sekisho", error="insufficient_scope"`},
		{"CEL error in allow does not allow", "/cel/x", bearer(admin), 403, `Bearer realm="sekisho", error="insufficient_scope"`},
		{"CEL error in deny denies", "/denycel/x", bearer(admin), 403, `Bearer realm="sekisho", error="insufficient_scope"`},
		{"public route needs nothing", "/open/x", nil, 200, ""},
		{"public route ignores a bad token", "/open/x", bearer("garbage"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", tt.target, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if tt.status >= 400 {
				for _, leak := range []string{"allow[", "deny[", "expired", "audience", "missing"} {
					if strings.Contains(string(body), leak) {
						t.Errorf("the %d body explains too much (%q): %s", tt.status, leak, body)
					}
				}
			}
		})
	}
	logs := f.logs.String()
	for _, secret := range []string{admin, ciToken, devOnly} {
		if strings.Contains(logs, secret) {
			t.Fatal("a token appears in the logs")
		}
	}
	if !strings.Contains(logs, `"reason":"matched deny[0]"`) && !strings.Contains(logs, `deny[0]`) {
		t.Errorf("the access log does not carry the decision reason:\n%s", logs)
	}
}

func waitJWTReady(t *testing.T, f *fixture) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !f.gw.Snapshot().WaitReady(ctx) {
		t.Fatal("JWT keys never loaded")
	}
}

func TestIdentityReachesUpstream(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	f := newFixture(t, authConfig(t, iss))
	waitJWTReady(t, f)
	admin := iss.Token(t)

	hdr := bearer(admin)
	hdr["X-Forwarded-User"] = "mallory"
	hdr["X-Forwarded_Groups"] = "root"
	hdr["X-Sekisho-Assertion"] = "forged"
	resp, body := f.do(t, "GET", "/api1/x", hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := seen(t, body)
	if u := got.Headers.Values("X-Forwarded-User"); len(u) != 1 || u[0] != "alice@example.com" {
		t.Errorf("X-Forwarded-User = %v, want only alice@example.com", u)
	}
	if g := got.Headers.Get("X-Forwarded-Groups"); g != "admin,dev" {
		t.Errorf("X-Forwarded-Groups = %q", g)
	}
	if e := got.Headers.Get("X-Forwarded-Email"); e != "alice@example.com" {
		t.Errorf("X-Forwarded-Email = %q", e)
	}
	for name := range got.Headers {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Forwarded-Groups") && name != "X-Forwarded-Groups" {
			t.Errorf("spoofed %s reached the upstream", name)
		}
	}
	if _, ok := got.Headers["Authorization"]; ok {
		t.Error("the bearer token was forwarded to an upstream that did not ask for it")
	}

	// The assertion verifies against the gateway's published keys, for this route.
	assertion := got.Headers.Get("X-Sekisho-Assertion")
	if assertion == "" || assertion == "forged" {
		t.Fatalf("assertion = %q", assertion)
	}
	ctx := context.Background()
	keys := oidc.NewRemoteKeySet(ctx, f.srv.URL+JWKSPath)
	v := oidc.NewVerifier("sekisho", keys, &oidc.Config{ClientID: "api1", SupportedSigningAlgs: []string{"ES256"}})
	tok, err := v.Verify(ctx, assertion)
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	var claims struct {
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	if err := tok.Claims(&claims); err != nil || claims.Email != "alice@example.com" || len(claims.Groups) != 2 {
		t.Errorf("assertion claims = %+v, %v", claims, err)
	}

	// pass_credentials forwards the token (the echo redacts its value).
	resp, body = f.do(t, "GET", "/pass/x", bearer(admin))
	if resp.StatusCode != 200 {
		t.Fatalf("pass: %d", resp.StatusCode)
	}
	if a := seen(t, body).Headers.Get("Authorization"); a != "[redacted]" {
		t.Errorf("pass_credentials: Authorization = %q", a)
	}
}

func TestDeniedBodies(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	f := newFixture(t, authConfig(t, iss))
	waitJWTReady(t, f)
	hdr := bearer(iss.Token(t, "groups", []string{"dev"}))
	hdr["Accept"] = "application/json"
	hdr["X-Request-Id"] = "rid-403"
	resp, body := f.do(t, "GET", "/api1/x", hdr)
	var b map[string]any
	if resp.StatusCode != 403 || json.Unmarshal(body, &b) != nil {
		t.Fatalf("403 JSON: %d %s", resp.StatusCode, body)
	}
	if b["route"] != "api1" || b["request_id"] == "rid-403" || b["request_id"] != resp.Header.Get("X-Request-Id") {
		t.Errorf("403 body = %s", body)
	}
	resp, body = f.do(t, "GET", "/api1/x", map[string]string{"Accept": "text/html"})
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "<h1>401") {
		t.Errorf("401 HTML: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestClientIPRules: client_ips and CEL's cidr() decide on the client
// behind a trusted proxy (the right-most X-Forwarded-For entry that is not
// a trusted proxy); from an untrusted peer X-Forwarded-For is ignored.
func TestClientIPRules(t *testing.T) {
	const cfg = `
listen: {http: "127.0.0.1:0"}
trusted_proxies: [TRUSTED]
routes:
  - name: office
    match: {path_prefix: /office}
    to: builtin:echo
    allow: [{client_ips: [203.0.113.0/24, "2001:db8::/32"]}]
  - name: cel
    match: {path_prefix: /cel}
    to: builtin:echo
    allow: [{when: "cidr('203.0.113.0/24').containsIP(request.client_ip)"}]
  - name: blocked
    match: {path_prefix: /blocked}
    to: builtin:echo
    deny: [{client_ips: [198.51.100.0/24]}]
    allow: [{paths: [/]}]
`
	tests := []struct {
		name    string
		trusted string
		path    string
		xff     string
		status  int
	}{
		{"office from a listed client via the proxy", "127.0.0.1", "/office/x", "203.0.113.5", 200},
		{"office IPv6 client via the proxy", "127.0.0.1", "/office/x", "2001:db8::7", 200},
		{"office from another client", "127.0.0.1", "/office/x", "198.51.100.1", 401},
		{"office: a client-written entry left of the real one proves nothing", "127.0.0.1", "/office/x", "203.0.113.5, 198.51.100.1", 401},
		{"office: the proxy itself is not the client", "127.0.0.1", "/office/x", "", 401},
		{"office: X-Forwarded-For from an untrusted peer is ignored", "10.9.0.0/16", "/office/x", "203.0.113.5", 401},
		{"cel from a listed client", "127.0.0.1", "/cel/x", "203.0.113.9", 200},
		{"cel from another client", "127.0.0.1", "/cel/x", "192.0.2.1", 401},
		{"cel: untrusted peer", "10.9.0.0/16", "/cel/x", "203.0.113.9", 401},
		{"deny a range", "127.0.0.1", "/blocked/x", "198.51.100.20", 401},
		{"deny: other clients pass", "127.0.0.1", "/blocked/x", "192.0.2.1", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, strings.Replace(cfg, "TRUSTED", tt.trusted, 1))
			hdr := map[string]string{"Accept": "application/json"}
			if tt.xff != "" {
				hdr["X-Forwarded-For"] = tt.xff
			}
			resp, body := f.do(t, "GET", tt.path, hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			want := `"reason":"matched allow[0]"`
			switch {
			case tt.name == "deny a range":
				want = `"reason":"matched deny[0]"`
			case tt.status != 200:
				want = `"reason":"no allow rule matched"`
			}
			if !strings.Contains(f.logs.String(), want) {
				t.Errorf("access log lacks %s:\n%s", want, f.logs)
			}
		})
	}
}
