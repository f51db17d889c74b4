package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sekisho/sekisho/internal/authn/jwtauth/jwttest"
)

// upstreamLog is a real upstream that records the method, path and headers
// of every request it receives.
type upstreamLog struct {
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	method, path string
	header       http.Header
}

func newUpstreamLog(t *testing.T) (*upstreamLog, string) {
	t.Helper()
	u := &upstreamLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seenRequest{r.Method, r.URL.Path, r.Header.Clone()})
		u.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return u, srv.URL
}

// since returns the requests received after the first n.
func (u *upstreamLog) since(n int) []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.reqs[n:]...)
}

func (u *upstreamLog) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// methodConfig reproduces the attack: writes on /board are for admins, a
// public route serves the same path for everything else.
func methodConfig(iss *jwttest.Issuer, up string) string {
	return fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
jwt:
  - issuer: %[1]s
    audiences: [api]
    claims: {username: email}
routes:
  - name: board-admin
    match: {path_prefix: /board, methods: [POST, PUT, PATCH, DELETE]}
    to: %[2]s
    allow: [{groups: [admin]}]
  - name: board
    match: {path_prefix: /board}
    to: %[2]s
    public: true
  - name: dav
    match: {path_prefix: /dav}
    to: %[2]s
    allow_extension_methods: true
    allow: [{groups: [dev], methods: [GET, propfind, M-SEARCH]}]
  - name: forms-delete
    match: {path_prefix: /forms, methods: [DELETE]}
    to: %[2]s
    allow_method_override: true
    allow: [{groups: [admin]}]
  - name: forms
    match: {path_prefix: /forms}
    to: %[2]s
    allow_method_override: true
    allow: [{groups: [dev], methods: [GET, POST, PUT]}, {groups: [admin]}]
  - name: half
    match: {path_prefix: /half, methods: [POST]}
    to: %[2]s
    allow_method_override: true
    public: true
  - name: half-rest
    match: {path_prefix: /half}
    to: %[2]s
    public: true
`, iss.URL, up)
}

// TestMethodCaseCannotReachALaxerRoute is the method-case bypass and its
// relatives through the gateway, over raw connections (Go's client would
// not send every spelling): a method is decided as the standard upper-case
// token the upstream will run, and forwarded in that form.
func TestMethodCaseCannotReachALaxerRoute(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	up, upURL := newUpstreamLog(t)
	f := newFixture(t, methodConfig(iss, upURL))
	waitJWTReady(t, f)
	admin := iss.Token(t)
	dev := iss.Token(t, "groups", []string{"dev"}, "email", "dave@example.com")
	with := func(tok string, kv ...string) map[string]string {
		h := map[string]string{}
		if tok != "" {
			h["Authorization"] = "Bearer " + tok
		}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}

	tests := []struct {
		name   string
		method string
		target string
		hdr    map[string]string
		status int
		// upstream is the method the upstream must receive ("" when the
		// request must not reach it); override the X-HTTP-Method-Override
		// value it must see ("" for none in any spelling).
		upstream, override string
		msg                string // in the refusal body
	}{
		{"delete without credentials", "delete", "/board/x", nil, 401, "", "", ""},
		{"Delete without credentials", "Delete", "/board/x", nil, 401, "", "", ""},
		{"dElEtE without credentials", "dElEtE", "/board/x", nil, 401, "", "", ""},
		{"delete by a non-admin", "delete", "/board/x", with(dev), 403, "", "", ""},
		{"pAtCh by a non-admin", "pAtCh", "/board/x", with(dev), 403, "", "", ""},
		{"delete by an admin is forwarded as DELETE", "delete", "/board/x", with(admin), 200, "DELETE", "", ""},
		{"get on the public route is forwarded as GET", "get", "/board/x", nil, 200, "GET", "", ""},
		{"DELETE without credentials", "DELETE", "/board/x", nil, 401, "", "", ""},

		{"extension method on a route without the opt-in", "PROPFIND", "/board/x", nil, 400, "", "", "standard HTTP methods"},
		{"a near-miss of DELETE is an extension method", "delete2", "/board/x", nil, 400, "", "", "standard HTTP methods"},
		{"extension method where allowed, upper-cased", "propfind", "/dav/x", with(dev), 200, "PROPFIND", "", ""},
		{"extension method with a dash", "m-search", "/dav/x", with(dev), 200, "M-SEARCH", "", ""},
		{"extension method the policy does not list", "MKCOL", "/dav/x", with(dev), 403, "", "", ""},

		{"override on a public route is stripped", "GET", "/board/x", with("", "X-HTTP-Method-Override", "DELETE"), 200, "GET", "", ""},
		{"override spellings are stripped", "GET", "/board/x", with("", "x_http_method_override", "DELETE", "X-HTTP-Method", "DELETE", "x-method-override", "DELETE"), 200, "GET", "", ""},
		{"a stripped override does not change the decision", "POST", "/board/x", with(dev, "X-HTTP-Method-Override", "GET"), 403, "", "", ""},
		{"override DELETE is decided as DELETE (denied)", "POST", "/forms/x", with(dev, "X-HTTP-Method-Override", "DELETE"), 403, "", "", ""},
		{"override in another spelling is decided too", "post", "/forms/x", with(dev, "x_http_method", "delete"), 403, "", "", ""},
		{"override DELETE is decided as DELETE (allowed)", "POST", "/forms/x", with(admin, "X-HTTP-Method-Override", "delete"), 200, "POST", "DELETE", ""},
		{"policy methods see the override", "POST", "/forms/x", with(dev, "X-HTTP-Method-Override", "PATCH"), 403, "", "", ""},
		{"an allowed override is forwarded", "POST", "/forms/x", with(dev, "X-HTTP-Method-Override", "put"), 200, "POST", "PUT", ""},
		{"no override, plain POST", "POST", "/forms/x", with(dev), 200, "POST", "", ""},
		{"two override headers", "POST", "/forms/x", with(admin, "X-HTTP-Method-Override", "PUT", "X-HTTP-Method", "PUT"), 400, "", "", "more than one"},
		{"an override that is not a method", "POST", "/forms/x", with(admin, "X-HTTP-Method-Override", "PUT, DELETE"), 400, "", "", "does not name"},
		{"an override on GET", "GET", "/forms/x", with(admin, "X-HTTP-Method-Override", "DELETE"), 400, "", "", "only accepted on a POST"},
		{"an override to an extension method", "POST", "/forms/x", with(admin, "X-HTTP-Method-Override", "PROPFIND"), 400, "", "", "standard HTTP methods"},
		{"an override leading to a route without the opt-in", "POST", "/half/x", with("", "X-HTTP-Method-Override", "DELETE"), 400, "", "", "does not accept method overrides"},
		{"a _method parameter without the opt-in", "POST", "/board/x?_method=GET", with(admin), 400, "", "", "_method"},
		{"a _method parameter decided as DELETE", "POST", "/forms/x?_method=DELETE", with(dev), 403, "", "", ""},
		{"a PHP spelling of _method", "POST", "/forms/x?.method=DELETE", with(dev), 403, "", "", ""},
		{"a _method parameter by an admin", "POST", "/forms/x?_method=DELETE", with(admin), 200, "POST", "", ""},
		{"a _method parameter and a header", "POST", "/forms/x?_method=PUT", with(admin, "X-HTTP-Method-Override", "PUT"), 400, "", "", "more than one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := up.count()
			resp, body := f.do(t, tt.method, tt.target, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if tt.msg != "" && !strings.Contains(string(body), tt.msg) {
				t.Errorf("body %s does not say %q", body, tt.msg)
			}
			got := up.since(n)
			if tt.upstream == "" {
				if len(got) != 0 {
					t.Fatalf("the upstream received %d request(s) (%s)", len(got), got[0].method)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("the upstream received %d requests, want 1", len(got))
			}
			if got[0].method != tt.upstream {
				t.Errorf("upstream method %q, want %q", got[0].method, tt.upstream)
			}
			var overrides []string
			for k, vs := range got[0].header {
				if strings.Contains(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "method") {
					overrides = append(overrides, k+": "+strings.Join(vs, ","))
				}
			}
			switch {
			case tt.override == "" && len(overrides) != 0:
				t.Errorf("the upstream received override headers %q", overrides)
			case tt.override != "" && (len(overrides) != 1 || got[0].header.Get("X-Http-Method-Override") != tt.override):
				t.Errorf("the upstream received override headers %q, want X-Http-Method-Override: %s", overrides, tt.override)
			}
		})
	}
}
