package authz

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/sekisho/sekisho/internal/identity"
)

func newTestEnv(tb testing.TB) *Env {
	tb.Helper()
	env, err := NewEnv()
	if err != nil {
		tb.Fatalf("NewEnv: %v", err)
	}
	return env
}

func mustCompile(tb testing.TB, env *Env, allow, deny []Rule) *Policy {
	tb.Helper()
	p, err := Compile(env, "test", allow, deny)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return p
}

// alice returns a fresh session identity, changed by the given edits.
func alice(edits ...func(*identity.Identity)) *identity.Identity {
	id := &identity.Identity{
		Subject:       "u-alice",
		Username:      "alice",
		Email:         "alice@example.com",
		EmailVerified: true,
		Groups:        []string{"dev", "staff"},
		Claims: map[string]any{
			"dept":  "eng",
			"level": float64(3),
			"roles": []any{"reader", "writer"},
			"tags":  []string{"blue"},
			"admin": false,
		},
		Issuer: "https://idp.example.com",
		Method: identity.MethodSession,
		MFA:    true,
		Kind:   identity.KindUser,
	}
	for _, e := range edits {
		e(id)
	}
	return id
}

func ciBot() *identity.Identity {
	return &identity.Identity{
		Subject: "token:ci-bot", Username: "token:ci-bot", Groups: []string{"ci"},
		Method: identity.MethodAPIToken, Kind: identity.KindService, TokenName: "ci-bot",
	}
}

func get(path string) *Request {
	return &Request{
		Method:   http.MethodGet,
		Host:     "api.example.com",
		Path:     path,
		Query:    "q=1",
		Route:    "api1",
		ClientIP: netip.MustParseAddr("192.0.2.10"),
		Headers: http.Header{
			"Accept":        {"application/json", "text/html"},
			"X-Team":        {"blue"},
			"Authorization": {"Bearer secret-token-value"},
			"Cookie":        {"_sekisho=secret-cookie-value"},
		},
	}
}

func with(req *Request, edit func(*Request)) *Request {
	edit(req)
	return req
}
