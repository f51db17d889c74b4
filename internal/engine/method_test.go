package engine

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/identity"
)

// TestEvaluateMethods: Evaluate decides on the canonical method and leaves
// it in r.Method for forwarding; refuses what is not a method; refuses an
// override header it cannot have stripped; and decides on the override
// where the route allows one, CEL included.
func TestEvaluateMethods(t *testing.T) {
	snap := configtest.New(t).Snapshot(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: writes
    match: {path: /x, methods: [DELETE]}
    to: builtin:echo
    allow_method_override: true
    allow: [{groups: [admin]}]
  - name: cel
    match: {path: /x}
    to: builtin:echo
    allow_method_override: true
    allow: [{when: "request.method in ['GET', 'POST', 'PUT']"}]
  - {name: open, match: {path: /open}, to: builtin:echo, public: true}
`)
	dev := &identity.Identity{Username: "dave", Groups: []string{"dev"}}

	for _, tt := range []struct {
		name      string
		method    string
		path      string
		override  string
		keeps     bool // Options.HeadersReachUpstream
		want      Outcome
		canon     string // r.Method afterwards
		decidedAs string // Result.Method
		route     string
	}{
		{"not a token", "GE T", "/open", "", false, BadRequest, "GE T", "", ""},
		{"empty", "", "/open", "", false, BadRequest, "", "", ""},
		{"lower case is canonicalized for forwarding", "get", "/open", "", false, Allowed, "GET", "GET", "open"},
		{"CEL sees the canonical method", "put", "/x", "", false, Allowed, "PUT", "PUT", "cel"},
		{"lower-case delete reaches the DELETE route", "delete", "/x", "", false, Forbidden, "DELETE", "DELETE", "writes"},
		{"CEL sees the override", "POST", "/x", "patch", false, Forbidden, "POST", "PATCH", "cel"},
		{"the override is routed", "POST", "/x", "DELETE", false, Forbidden, "POST", "DELETE", "writes"},
		{"an override to an allowed method", "POST", "/x", "put", false, Allowed, "POST", "PUT", "cel"},
		{"stripped where it cannot matter", "GET", "/open", "DELETE", false, Allowed, "GET", "GET", "open"},
		{"refused where it cannot be stripped", "GET", "/open", "DELETE", true, BadRequest, "GET", "GET", "open"},
		{"a _method parameter is decided on", "POST", "/x?_method=delete", "", false, Forbidden, "POST", "DELETE", "writes"},
		{"a _method parameter is refused without the opt-in", "POST", "/open?_method=DELETE", "", false, BadRequest, "POST", "POST", "open"},
		{"a _method parameter on GET is no override", "GET", "/open?_method=DELETE", "", false, Allowed, "GET", "GET", "open"},
		{"a header and a parameter are two overrides", "POST", "/x?_method=PUT", "PUT", false, BadRequest, "POST", "POST", "cel"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.path, nil)
			r.Method = tt.method
			if tt.override != "" {
				r.Header.Set("X-HTTP-Method-Override", tt.override)
			}
			res := Evaluate(context.Background(), snap, r, Options{Identity: dev, HeadersReachUpstream: tt.keeps})
			if res.Outcome != tt.want || r.Method != tt.canon || res.Method != tt.decidedAs || res.RouteName != tt.route {
				t.Errorf("outcome %v (%s), r.Method %q, decided as %q, route %q; want %v, %q, %q, %q",
					res.Outcome, res.Reason, r.Method, res.Method, res.RouteName, tt.want, tt.canon, tt.decidedAs, tt.route)
			}
		})
	}
}
