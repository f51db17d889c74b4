package gateway

import (
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// TestControlCharactersInIdentityAre401: a signed token whose subject,
// username (email) or a group carries CR, LF or another control character
// is refused as invalid credentials (401), before anything is forwarded; it
// is not a 502 with an upstream ERROR, and neither the answer nor the log
// repeats the value.
func TestControlCharactersInIdentityAre401(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	up := newUpstream(t)
	f := newFixture(t, identityConfig(iss, up.srv.URL))
	waitJWTReady(t, f)
	const marker = "planted-value"
	for _, tt := range []struct {
		name string
		kv   []any
	}{
		{"CRLF in the subject", []any{"sub", "alice\r\nX-Forwarded-Groups: " + marker}},
		{"LF in the username", []any{"email", "alice@example.com\n" + marker}},
		{"NUL in the username", []any{"email", "alice@example.com\x00" + marker}},
		{"CR in a group", []any{"groups", []string{"admin", "dev\r" + marker}}},
		{"DEL in a group", []any{"groups", []string{"admin\x7f" + marker}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", "/app", bearer(iss.Token(t, tt.kv...)))
			if resp.StatusCode != 401 {
				t.Fatalf("status %d, want 401: %s", resp.StatusCode, body)
			}
			if !strings.Contains(string(body), "credentials") || strings.Contains(string(body), marker) {
				t.Errorf("body should say the credentials are not valid, without the value: %s", body)
			}
		})
	}
	logs := f.logs.String()
	if strings.Contains(logs, marker) || strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("the log repeats the value or reports an ERROR:\n%s", logs)
	}
	if !strings.Contains(logs, "control character") {
		t.Errorf("the log does not say why the credentials were refused:\n%s", logs)
	}
	select {
	case h := <-up.seen:
		t.Errorf("a request reached the upstream: %v", h)
	default:
	}
	if resp, body := f.do(t, "GET", "/app", bearer(iss.Token(t))); resp.StatusCode != 200 {
		t.Errorf("a clean token: status %d: %s", resp.StatusCode, body)
	}
}
