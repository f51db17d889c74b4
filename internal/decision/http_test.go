package decision

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/login"
	"github.com/sekisho/sekisho/internal/snapshot"
)

func TestDescribe(t *testing.T) {
	type want struct {
		method, scheme, host, target, query string
	}
	tests := []struct {
		name    string
		dialect *dialect
		method  string // of the decision request
		uri     string // of the decision request
		hdr     []string
		want    want
		problem string // expected refusal, "" when it describes a request
	}{
		{name: "envoy: path and query after the prefix, undecoded", dialect: envoyHTTP, method: "PUT", uri: "/envoy/api1/a%2Fb/../c?x=%2F&y",
			hdr:  []string{"Host", "App.example.com:8443", "X-Forwarded-Proto", "https"},
			want: want{"PUT", "https", "App.example.com:8443", "/api1/a%2Fb/../c?x=%2F&y", "x=%2F&y"}},
		{name: "envoy: the bare prefix is the root", dialect: envoyHTTP, method: "GET", uri: "/envoy",
			hdr: []string{"Host", "a.test"}, want: want{"GET", "http", "a.test", "/", ""}},
		{name: "envoy: the prefix followed by a query", dialect: envoyHTTP, method: "GET", uri: "/envoy?q=1",
			hdr: []string{"Host", "a.test"}, want: want{"GET", "http", "a.test", "/?q=1", "q=1"}},
		{name: "nginx: X-Original-URI and X-Forwarded-Host", dialect: nginx, method: "GET", uri: "/nginx",
			hdr:  []string{"X-Original-URI", "/api1/%2e%2e/x?a=b", "X-Original-Method", "DELETE", "X-Forwarded-Host", "app.test", "X-Forwarded-Proto", "https"},
			want: want{"DELETE", "https", "app.test", "/api1/%2e%2e/x?a=b", "a=b"}},
		{name: "nginx: Host when X-Forwarded-Host is absent, GET when the method is", dialect: nginx, method: "GET", uri: "/nginx",
			hdr: []string{"Host", "app.test", "X-Original-URI", "/x"}, want: want{"GET", "http", "app.test", "/x", ""}},
		{name: "ingress-nginx: X-Original-URL", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr:  []string{"X-Original-URL", "HTTPS://app.test:8443//a/../b?c=%20", "X-Original-Method", "POST", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "http"},
			want: want{"POST", "https", "app.test:8443", "//a/../b?c=%20", "c=%20"}},
		{name: "ingress-nginx: X-Original-URL without a path", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr: []string{"X-Original-URL", "http://app.test?x=1"}, want: want{"GET", "http", "app.test", "/?x=1", "x=1"}},
		{name: "ingress-nginx: the X-Original-URI of auth-method agrees", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr: []string{"X-Original-URL", "http://app.test/a?b", "X-Original-URI", "/a?b"}, want: want{"GET", "http", "app.test", "/a?b", "b"}},
		{name: "forward-auth: the four X-Forwarded headers", dialect: forwardAuth, method: "GET", uri: "/forward-auth",
			hdr:  []string{"X-Forwarded-Method", "PATCH", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.test", "X-Forwarded-Uri", "/a//b?c"},
			want: want{"PATCH", "https", "app.test", "/a//b?c", "c"}},
		{name: "forward-auth: http unless told otherwise", dialect: forwardAuth, method: "GET", uri: "/forward-auth",
			hdr:  []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.test", "X-Forwarded-Uri", "/"},
			want: want{"GET", "http", "app.test", "/", ""}},

		{name: "nginx: nothing described", dialect: nginx, method: "GET", uri: "/nginx", hdr: []string{"Host", "app.test"},
			problem: "set X-Original-URI"},
		{name: "nginx: two X-Original-URI", dialect: nginx, method: "GET", uri: "/nginx", hdr: []string{"X-Original-URI", "/a", "X-Original-URI", "/b"},
			problem: "X-Original-URI is sent more than once"},
		{name: "nginx: two hosts", dialect: nginx, method: "GET", uri: "/nginx", hdr: []string{"X-Original-URI", "/a", "X-Forwarded-Host", "a", "X-Forwarded-Host", "b"},
			problem: "X-Forwarded-Host is sent more than once"},
		{name: "nginx: a client's X-Original-URL", dialect: nginx, method: "GET", uri: "/nginx",
			hdr:     []string{"X-Original-URI", "/api1/x", "X-Original-URL", "http://gw.test/open"},
			problem: "X-Original-URL is not read here"},
		{name: "nginx: an empty X-Original-URL", dialect: nginx, method: "GET", uri: "/nginx",
			hdr:     []string{"X-Original-URI", "/api1/x", "X-Original-URL", ""},
			problem: "X-Original-URL is not read here"},
		{name: "ingress-nginx: not an http URL", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx", hdr: []string{"X-Original-URL", "ftp://app.test/x"},
			problem: "not an absolute http(s) URL"},
		{name: "ingress-nginx: URL without a host", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx", hdr: []string{"X-Original-URL", "https:///x"},
			problem: "not an absolute http(s) URL"},
		{name: "ingress-nginx: nothing described", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx", hdr: []string{"X-Original-URI", "/x"},
			problem: "X-Original-URL is missing"},
		{name: "ingress-nginx: a client's X-Original-URI", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr:     []string{"X-Original-URL", "http://gw.test/api1/x", "X-Original-URI", "/open"},
			problem: "X-Original-URI disagrees"},
		{name: "ingress-nginx: two X-Original-URI", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr:     []string{"X-Original-URL", "http://gw.test/a", "X-Original-URI", "/a", "X-Original-URI", "/a"},
			problem: "X-Original-URI disagrees"},
		{name: "ingress-nginx: two URLs", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr:     []string{"X-Original-URL", "http://gw.test/a", "X-Original-URL", "http://gw.test/open"},
			problem: "X-Original-URL is sent more than once"},
		{name: "ingress-nginx: two methods", dialect: ingressNginx, method: "GET", uri: "/ingress-nginx",
			hdr:     []string{"X-Original-URL", "http://gw.test/a", "X-Original-Method", "GET", "X-Original-Method", "DELETE"},
			problem: "X-Original-Method is sent more than once"},
		{name: "nginx: not a method", dialect: nginx, method: "GET", uri: "/nginx", hdr: []string{"X-Original-URI", "/x", "X-Original-Method", "GET /admin"},
			problem: "not an HTTP method"},
		{name: "nginx: not a path", dialect: nginx, method: "GET", uri: "/nginx", hdr: []string{"X-Original-URI", "http://evil.example/admin"},
			problem: "X-Original-URI must be a path"},
		{name: "forward-auth: not a path", dialect: forwardAuth, method: "GET", uri: "/forward-auth",
			hdr:     []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "a", "X-Forwarded-Uri", "*"},
			problem: "X-Forwarded-Uri must be a path"},
		{name: "forward-auth: no URI", dialect: forwardAuth, method: "GET", uri: "/forward-auth", hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "a"},
			problem: "X-Forwarded-Uri is missing"},
		{name: "forward-auth: no method", dialect: forwardAuth, method: "GET", uri: "/forward-auth", hdr: []string{"X-Forwarded-Uri", "/", "X-Forwarded-Host", "a"},
			problem: "X-Forwarded-Method is missing"},
		{name: "forward-auth: no host", dialect: forwardAuth, method: "GET", uri: "/forward-auth", hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/"},
			problem: "X-Forwarded-Host is missing"},
		{name: "forward-auth: two URIs", dialect: forwardAuth, method: "GET", uri: "/forward-auth",
			hdr:     []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "a", "X-Forwarded-Uri", "/open", "X-Forwarded-Uri", "/admin"},
			problem: "X-Forwarded-Uri is sent more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.uri, nil)
			r.RequestURI = tt.uri
			for i := 0; i < len(tt.hdr); i += 2 {
				if tt.hdr[i] == "Host" {
					r.Host = tt.hdr[i+1]
					continue
				}
				r.Header.Add(tt.hdr[i], tt.hdr[i+1])
			}
			d := &described{}
			msg, ok := tt.dialect.describe(r, d)
			if tt.problem != "" {
				if ok || !strings.Contains(msg, tt.problem) {
					t.Fatalf("describe = (%q, %v), want a refusal mentioning %q", msg, ok, tt.problem)
				}
				return
			}
			if !ok {
				t.Fatalf("refused: %s", msg)
			}
			got := want{d.req.Method, d.scheme, d.req.Host, d.req.RequestURI, d.req.URL.RawQuery}
			if got != tt.want {
				t.Errorf("described %+v\nwant      %+v", got, tt.want)
			}
		})
	}
}

// TestMisdescribedRequests checks the answers to bad descriptions: a clear
// message, 400 where the proxy relays it and 403 for nginx.
func TestMisdescribedRequests(t *testing.T) {
	f := newFixture(t, Config{}, "")
	tests := []struct {
		name   string
		target string
		hdr    []string
		status int
		msg    string
	}{
		{"forward-auth without URI", "/forward-auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "a"}, 400, "X-Forwarded-Uri is missing"},
		{"nginx without URI", "/nginx", nil, 403, "set X-Original-URI"},
		{"nginx with a client's X-Original-URL", "/nginx", []string{"X-Original-URI", "/api1/x", "X-Original-URL", "http://gw.test/open"}, 403, "X-Original-URL is not read here"},
		{"ingress-nginx with a client's X-Original-URI", "/ingress-nginx", []string{"X-Original-URL", "http://gw.test/api1/x", "X-Original-URI", "/open"}, 403, "X-Original-URI disagrees"},
		{"Connection names an identity header", "/forward-auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "a", "X-Forwarded-Uri", "/open", "Connection", "keep-alive, x-forwarded-user"}, 400, "The Connection header names X-Forwarded-User"},
		{"Connection names the assertion header", "/nginx", []string{"X-Original-URI", "/open", "Connection", "X-Sekisho-Assertion"}, 403, "The Connection header names X-Sekisho-Assertion"},
		{"unknown endpoint", "/check", nil, 404, "No such decision endpoint"},
		{"not the envoy prefix", "/envoyx/api1", nil, 404, "No such decision endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, f.addr(), "GET", tt.target, append(tt.hdr, "Accept", "application/json")...)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.msg) {
				t.Fatalf("%d %s, want %d mentioning %q", resp.StatusCode, body, tt.status, tt.msg)
			}
		})
	}
}

// TestUntrustedPeerRefused is oauth2-proxy CVE-2026-40575: a client that
// reaches the decision endpoint directly must not get a decision for a
// request it describes itself.
func TestUntrustedPeerRefused(t *testing.T) {
	f := newFixture(t, Config{TrustedProxies: []string{"10.0.0.0/8"}}, "")
	spoof := []struct {
		name   string
		target string
		hdr    []string
	}{
		{"forward-auth", "/forward-auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/open/x"}},
		{"nginx", "/nginx", []string{"X-Original-URI", "/open/x"}},
		{"envoy", "/envoy/open/x", nil},
	}
	for _, tt := range spoof {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, f.addr(), "GET", tt.target, append(tt.hdr, "Accept", "application/json", "X-Request-Id", "spoof-"+tt.name)...)
			if resp.StatusCode != 403 || !strings.Contains(body, "trusted proxies only") {
				t.Fatalf("untrusted peer got %d %s, want 403 saying why", resp.StatusCode, body)
			}
			if resp.Header.Get("X-Forwarded-User") != "" {
				t.Error("an identity header on a refusal")
			}
			// The refusal is logged under an id of sekisho's, not the
			// caller's (an untrusted peer's X-Request-Id is not believed).
			var b struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(body), &b); err != nil || len(b.RequestID) != 32 {
				t.Errorf("body %s: want a new request id (%v)", body, err)
			}
			if logs := f.logs.String(); strings.Contains(logs, "spoof-"+tt.name) || !strings.Contains(logs, `"request_id":"`+b.RequestID+`"`) {
				t.Errorf("want a log line under the new id %q, without the caller's:\n%s", b.RequestID, logs)
			}
		})
	}
	t.Run("envoy-grpc", func(t *testing.T) {
		resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/open/x", map[string]string{"x-request-id": "spoof-grpc"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := grpcResult(t, resp); got.status != 403 || !strings.Contains(resp.GetDeniedResponse().GetBody(), "trusted proxies only") {
			t.Fatalf("untrusted gRPC peer: %v", resp)
		}
		if body := resp.GetDeniedResponse().GetBody(); strings.Contains(body, "spoof-grpc") || strings.Contains(f.logs.String(), "spoof-grpc") {
			t.Errorf("an untrusted peer's x-request-id was believed: body %s\nlogs:\n%s", body, f.logs)
		}
	})
	t.Run("sign-in is for browsers and answers anyone", func(t *testing.T) {
		resp, body := raw(t, f.addr(), "GET", "/sign_in?rd=/x", "Accept", "application/json")
		if resp.StatusCode != 404 || !strings.Contains(body, "Login is not configured") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestAllowAnswers(t *testing.T) {
	f := newFixture(t, Config{}, "")
	admin := f.tokens.admin
	spoofed := []string{"X-Forwarded-User", "mallory", "X-Forwarded_Email", "mallory@example.com", "X-Sekisho-Assertion", "forged", "X-Auth-Request-Groups", "admin"}

	t.Run("envoy: exactly 200, identity, and what to remove", func(t *testing.T) {
		resp, body := raw(t, f.addr(), "GET", "/envoy/api1/x", append(append([]string{"Host", "gw.test"}, bearer(admin)...), spoofed...)...)
		if resp.StatusCode != 200 || body != "" {
			t.Fatalf("%d %q, want exactly 200 with no body", resp.StatusCode, body)
		}
		if u, g := resp.Header.Get("X-Forwarded-User"), resp.Header.Get("X-Forwarded-Groups"); u != "alice@example.com" || g != "admin,dev" {
			t.Errorf("identity headers: user %q groups %q", u, g)
		}
		remove := strings.Split(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"), ", ")
		slices.Sort(remove)
		want := []string{"Authorization", "X-Auth-Request-Groups", "X-Forwarded_email", "X-Sekisho-Assertion", "x-http-method", "x-http-method-override", "x-method-override"}
		if !slices.Equal(remove, want) {
			t.Errorf("headers to remove = %q, want %q", remove, want)
		}
		if resp.Header.Get(PathHeader) != "" {
			t.Error("the canonical path header is for nginx only")
		}
	})
	t.Run("envoy: a route that passes credentials keeps them", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/envoy/pass/x", append([]string{"Host", "gw.test"}, bearer(admin)...)...)
		if resp.StatusCode != 200 || strings.Contains(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"), "Authorization") {
			t.Fatalf("%d, remove %q", resp.StatusCode, resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"))
		}
	})
	t.Run("nginx: identity and the canonical path", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/nginx", append([]string{"X-Original-URI", "/api2/../api1//a/%2e/b?q=1", "X-Forwarded-Host", "gw.test"}, bearer(admin)...)...)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if p := resp.Header.Get(PathHeader); p != "/api1/a/b" {
			t.Errorf("%s = %q, want /api1/a/b", PathHeader, p)
		}
		if resp.Header.Get("X-Forwarded-Email") != "alice@example.com" {
			t.Errorf("email header %q", resp.Header.Get("X-Forwarded-Email"))
		}
	})
	t.Run("forward-auth: every identity header, empty when unknown", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/forward-auth", append([]string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/api1/x"}, bearer(ciToken)...)...)
		if resp.StatusCode != 200 || resp.Header.Get("X-Forwarded-User") != "token:ci-bot" {
			t.Fatalf("%d user %q", resp.StatusCode, resp.Header.Get("X-Forwarded-User"))
		}
		for _, name := range []string{"X-Forwarded-Email", "X-Sekisho-Assertion"} {
			if v, ok := resp.Header[name]; !ok || len(v) != 1 || v[0] != "" {
				t.Errorf("%s = %q, want present and empty", name, v)
			}
		}
	})
	t.Run("the client address comes from trusted X-Forwarded-For", func(t *testing.T) {
		for _, tt := range []struct {
			xff    string
			status int
		}{
			{"203.0.113.7", 200},
			{"203.0.113.7, 127.0.0.1", 200},         // a trusted hop is skipped
			{"203.0.113.7, 198.51.100.1", 403},      // the client wrote the left entry
			{"198.51.100.1, 203.0.113.7:4711", 200}, // a port is allowed
			{"junk, 203.0.113.7", 200},              // the right-most untrusted hop stands
			{"203.0.113.7, junk", 403},              // unparseable: the peer stands
			{"", 403},
		} {
			hdr := append([]string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/office/x"}, bearer(admin)...)
			if tt.xff != "" {
				hdr = append(hdr, "X-Forwarded-For", tt.xff)
			}
			if resp, _ := raw(t, f.addr(), "GET", "/forward-auth", hdr...); resp.StatusCode != tt.status {
				t.Errorf("X-Forwarded-For %q: %d, want %d", tt.xff, resp.StatusCode, tt.status)
			}
		}
	})
}

func TestDenyAnswers(t *testing.T) {
	f := newFixture(t, Config{}, "")
	tests := []struct {
		name      string
		target    string
		hdr       []string
		status    int
		challenge string
	}{
		{"envoy, no credentials", "/envoy/api1/x", []string{"Host", "gw.test"}, 401, `Bearer realm="sekisho"`},
		{"envoy, not allowed", "/envoy/api1/x", append([]string{"Host", "gw.test"}, bearer(f.tokens.ops)...), 403, `Bearer realm="sekisho", error="insufficient_scope"`},
		{"envoy, bad token", "/envoy/api1/x", append([]string{"Host", "gw.test"}, bearer(f.tokens.expired)...), 401, `Bearer realm="sekisho", error="invalid_token"`},
		{"envoy, no route", "/envoy/nope", append([]string{"Host", "gw.test"}, bearer(f.tokens.admin)...), 404, ""},
		{"nginx, no route becomes 403", "/nginx", append([]string{"X-Original-URI", "/nope", "X-Forwarded-Host", "gw.test"}, bearer(f.tokens.admin)...), 403, ""},
		{"nginx, bad path becomes 403", "/nginx", append([]string{"X-Original-URI", "/api1/../../x", "X-Forwarded-Host", "gw.test"}, bearer(f.tokens.admin)...), 403, ""},
		{"forward-auth, no credentials", "/forward-auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/api1/x"}, 401, `Bearer realm="sekisho"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, f.addr(), "GET", tt.target, append(tt.hdr, "Accept", "application/json", "X-Request-Id", "rid-1")...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if resp.Header.Get("X-Forwarded-User") != "" || resp.Header.Get("Location") != "" {
				t.Error("a denial carries identity or a redirect")
			}
			var b struct {
				RequestID string `json:"request_id"`
				Message   string `json:"message"`
			}
			if err := json.Unmarshal([]byte(body), &b); err != nil || b.RequestID != "rid-1" || b.Message == "" {
				t.Errorf("body %s: %v", body, err)
			}
			for _, leak := range []string{f.tokens.ops, f.tokens.expired, f.tokens.admin, "expired", "allow["} {
				if strings.Contains(body, leak) {
					t.Errorf("the body says too much: %s", body)
				}
			}
		})
	}
	for _, tok := range []string{f.tokens.admin, f.tokens.ops, f.tokens.expired} {
		if strings.Contains(f.logs.String(), tok) {
			t.Fatal("a token appears in the logs")
		}
	}
	if !strings.Contains(f.logs.String(), `"route":"api1","status":403,"user":"olga@example.com","reason":"no allow rule matched"`) {
		t.Errorf("denials are not logged with their reason:\n%s", f.logs.String())
	}
}

// loginConfig gives the snapshot browser login (the built-in provider), so
// that denials can send browsers to sign in.
const loginConfig = `
providers:
  - name: dev
    builtin:
      issuer: http://127.0.0.1:1/.sekisho/dev/dev
      users: [{email: alice@example.com, password: alice, groups: [admin]}]
`

func TestBrowserRedirects(t *testing.T) {
	f := newFixture(t, Config{}, loginConfig)
	login := &fakeLogin{}
	f.dec.SetLogin(func(*snapshot.Snapshot) LoginStarter { return login })
	html := []string{"Accept", "text/html,application/xhtml+xml"}
	loc := "https://login.example.com/start?rd=https://gw.test/api1/a/b?x=1"

	t.Run("envoy", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/envoy/api1//a/./b?x=1", append([]string{"Host", "gw.test", "X-Forwarded-Proto", "https"}, html...)...)
		if resp.StatusCode != 302 || resp.Header.Get("Location") != loc {
			t.Fatalf("%d Location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), loc)
		}
		if rt, host := login.asked(); rt != "https://gw.test/api1/a/b?x=1" || host != "gw.test" {
			t.Errorf("login asked to return to %q on %q", rt, host)
		}
	})
	t.Run("forward-auth", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/forward-auth", append([]string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/api1/a/b?x=1"}, html...)...)
		if resp.StatusCode != 302 || resp.Header.Get("Location") != loc {
			t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("nginx gets 401 with the sign-in address", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "GET", "/nginx", append([]string{"X-Original-URI", "/api1/a/b?x=1", "X-Forwarded-Host", "gw.test", "X-Forwarded-Proto", "https"}, html...)...)
		if resp.StatusCode != 401 || resp.Header.Get("Location") != loc {
			t.Fatalf("%d Location %q, want 401 with Location", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("envoy-grpc", func(t *testing.T) {
		resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/api1/a/b?x=1", map[string]string{"accept": "text/html"}))
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeniedResponse()
		if got, _ := headerOf(d.GetHeaders(), "location"); d.GetStatus().GetCode() != 302 || got != loc {
			t.Fatalf("denied %v, location %q", d.GetStatus(), got)
		}
	})
	noRedirect := []struct {
		name string
		hdr  []string
	}{
		{"an API client", []string{"Host", "gw.test", "Accept", "application/json"}},
		{"an API route", []string{"Host", "gw.test"}},
		{"a return address the login refuses", []string{"Host", "evil.example"}},
	}
	for i, tt := range noRedirect {
		t.Run("no redirect for "+tt.name, func(t *testing.T) {
			target := "/envoy/api1/x"
			hdr := tt.hdr
			if i != 0 {
				hdr = append(hdr, html...)
			}
			if i == 1 {
				target = "/envoy/api/x"
			}
			resp, _ := raw(t, f.addr(), "GET", target, hdr...)
			if resp.StatusCode != 401 || resp.Header.Get("Location") != "" || resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
	t.Run("no redirect for a POST", func(t *testing.T) {
		resp, _ := raw(t, f.addr(), "POST", "/envoy/api1/x", append([]string{"Host", "gw.test", "Content-Length", "0"}, html...)...)
		if resp.StatusCode != 401 || resp.Header.Get("Location") != "" {
			t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("with the login service", func(t *testing.T) {
		g := newFixture(t, Config{}, loginConfig)
		g.dec.SetLogin(func(s *snapshot.Snapshot) LoginStarter { return s.Login.Service })
		resp, _ := raw(t, g.addr(), "GET", "/envoy/api1/x?y=1", append([]string{"Host", "gw.test", "X-Forwarded-Proto", "https"}, html...)...)
		want := "https://gw.test/.sekisho/start?rd=https%3A%2F%2Fgw.test%2Fapi1%2Fx%3Fy%3D1"
		if resp.StatusCode != 302 || resp.Header.Get("Location") != want {
			t.Fatalf("%d Location %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})
	t.Run("no redirect without a login", func(t *testing.T) {
		g := newFixture(t, Config{}, loginConfig) // SetLogin never called
		resp, _ := raw(t, g.addr(), "GET", "/envoy/api1/x", append([]string{"Host", "gw.test"}, html...)...)
		if resp.StatusCode != 401 || resp.Header.Get("Location") != "" {
			t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestSignIn(t *testing.T) {
	f := newFixture(t, Config{}, loginConfig)
	login := &fakeLogin{}
	tests := []struct {
		name     string
		method   string
		target   string
		status   int
		location string
		msg      string
	}{
		{"starts the login", "GET", "/sign_in?rd=https%3A%2F%2Fapp.test%2Fx%3Fy%3D1", 302, "https://login.example.com/start?rd=https://app.test/x?y=1", ""},
		{"needs rd", "GET", "/sign_in", 400, "", "rd parameter"},
		{"refuses a target the login refuses", "GET", "/sign_in?rd=https://evil.example/", 400, "", "not allowed"},
		{"GET only", "POST", "/sign_in?rd=/x", 405, "", "Use GET"},
	}
	f.dec.SetLogin(func(*snapshot.Snapshot) LoginStarter { return login })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, f.addr(), tt.method, tt.target, "Host", "auth.test", "Accept", "application/json", "Content-Length", "0")
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location || !strings.Contains(body, tt.msg) {
				t.Fatalf("%d Location %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}
	if _, host := login.asked(); host != "http://auth.test" {
		t.Errorf("rd was checked against %q, want the sign-in request's origin", host)
	}
}

// originLogin is a LoginStarter that checks returnTo as the login service
// does (login.SafeRedirect, host as "scheme://authority" or authority).
type originLogin struct{}

func (originLogin) LoginURL(returnTo, host string) (string, bool) {
	scheme, authority := "", host
	if sch, rest, ok := strings.Cut(host, "://"); ok {
		scheme, authority = sch, rest
	}
	target, ok := login.SafeRedirect(returnTo, scheme, authority, nil)
	return "https://login.example.com/start?rd=" + target, ok
}

// TestSignInComparesScheme: /sign_in compares rd with the request's origin
// by scheme too, taking the scheme from the proxy's X-Forwarded-Proto only
// when the peer is trusted and the value is exactly http or https.
func TestSignInComparesScheme(t *testing.T) {
	trusting := newFixture(t, Config{}, loginConfig) // loopback is trusted
	distrusting := newFixture(t, Config{TrustedProxies: []string{"192.0.2.0/24"}}, loginConfig)
	for _, f := range []*fixture{trusting, distrusting} {
		f.dec.SetLogin(func(*snapshot.Snapshot) LoginStarter { return originLogin{} })
	}
	const httpsRD, httpRD = "https%3A%2F%2Fapp.test%2Fx", "http%3A%2F%2Fapp.test%2Fx"
	tests := []struct {
		name   string
		f      *fixture
		rd     string
		hdr    []string
		status int
	}{
		{"https rd on a plain-http request", trusting, httpsRD, nil, 400},
		{"http rd on a plain-http request", trusting, httpRD, nil, 302},
		{"https rd, proxy says https", trusting, httpsRD, []string{"X-Forwarded-Proto", "https"}, 302},
		{"http rd, proxy says https", trusting, httpRD, []string{"X-Forwarded-Proto", "https"}, 400},
		{"https rd, proxy says http", trusting, httpsRD, []string{"X-Forwarded-Proto", "http"}, 400},
		{"X-Forwarded-Proto not exactly https", trusting, httpsRD, []string{"X-Forwarded-Proto", "HTTPS"}, 400},
		{"X-Forwarded-Proto a list", trusting, httpsRD, []string{"X-Forwarded-Proto", "https, http"}, 400},
		{"X-Forwarded-Proto twice", trusting, httpsRD, []string{"X-Forwarded-Proto", "https", "X-Forwarded-Proto", "https"}, 400},
		{"X-Forwarded-Proto from an untrusted peer", distrusting, httpsRD, []string{"X-Forwarded-Proto", "https"}, 400},
		{"untrusted peer, the listener's own scheme", distrusting, httpRD, []string{"X-Forwarded-Proto", "https"}, 302},
		{"another port", trusting, "http%3A%2F%2Fapp.test%3A8080%2Fx", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := append([]string{"Host", "app.test", "Accept", "application/json"}, tt.hdr...)
			resp, body := raw(t, tt.f.addr(), "GET", "/sign_in?rd="+tt.rd, hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("%d, want %d (Location %q) %s", resp.StatusCode, tt.status, resp.Header.Get("Location"), body)
			}
		})
	}
}

func TestNoSnapshotAnswers503(t *testing.T) {
	dec, err := New(Config{Listen: "127.0.0.1:0"}, func() *snapshot.Snapshot { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dec.Handler())
	defer srv.Close()
	for _, target := range []string{"/envoy/x", "/nginx", "/forward-auth"} {
		resp, _ := raw(t, srv.Listener.Addr().String(), "GET", target)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: %d, want 503", target, resp.StatusCode)
		}
	}
	resp, err := startGRPC(t, dec).Check(t.Context(), envoyCheck("GET", "a", "/", nil))
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 503 || resp.GetStatus().GetCode() == 0 {
		t.Fatalf("gRPC while starting: %v %v", resp, err)
	}
}

func TestClientIPWalk(t *testing.T) {
	dec, err := New(Config{Listen: ":0", TrustedProxies: []string{"10.0.0.0/8"}}, func() *snapshot.Snapshot { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("10.1.1.1")
	tests := []struct {
		xff  []string
		want string
	}{
		{nil, "10.1.1.1"},
		{[]string{"192.0.2.1"}, "192.0.2.1"},
		{[]string{"192.0.2.1, 10.2.2.2"}, "192.0.2.1"},
		{[]string{"192.0.2.9", "192.0.2.1, 10.2.2.2"}, "192.0.2.1"},
		{[]string{"10.3.3.3", "10.2.2.2"}, "10.3.3.3"},
		{[]string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{[]string{"::ffff:192.0.2.5"}, "192.0.2.5"},
	}
	for _, tt := range tests {
		if got := dec.clientIP(peer, tt.xff); got.String() != tt.want {
			t.Errorf("clientIP(%q) = %s, want %s", tt.xff, got, tt.want)
		}
	}
}

// TestForwardAuthHeaderNamesInAnyCase: header names are configured as the
// operator writes them, but an HTTP header has one name whatever its case.
// A lower-case name must still give exactly one value per identity header,
// not the identity plus an empty duplicate for the proxy to choose from.
func TestForwardAuthHeaderNamesInAnyCase(t *testing.T) {
	f := newFixture(t, Config{}, "upstream_identity: {headers: {user: x-auth-user, email: x-auth-email, groups: x-auth-groups}}")
	resp, _ := raw(t, f.addr(), "GET", "/forward-auth", append([]string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", "/api1/x"}, bearer(f.tokens.admin)...)...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for name, want := range map[string]string{"X-Auth-User": "alice@example.com", "X-Auth-Email": "alice@example.com", "X-Auth-Groups": "admin,dev"} {
		if got := resp.Header[name]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want exactly [%q]", name, got, want)
		}
	}
}

// TestEnvoyIgnoresForgedDescriptions follows Envoy's documented ext_authz
// contract (there is no Envoy binary here): the HTTP service receives the
// original method and Host, the original path after path_prefix, and the
// client's headers that allowed_headers lets through; the gRPC service gets
// them as attributes and a header map. A client's description headers ride
// along as ordinary headers and must change nothing: the decision is on
// the request Envoy describes, /api1/x without a credential.
func TestEnvoyIgnoresForgedDescriptions(t *testing.T) {
	f := newFixture(t, Config{}, "")
	resp, body := raw(t, f.addr(), "GET", "/envoy/api1/x", append([]string{"Host", "gw.test"}, forgedDescription...)...)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTP: %d, want 401\n%s", resp.StatusCode, body)
	}

	forged := map[string]string{}
	for i := 0; i < len(forgedDescription); i += 2 {
		forged[strings.ToLower(forgedDescription[i])] = forgedDescription[i+1]
	}
	check, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/api1/x", forged))
	if err != nil {
		t.Fatal(err)
	}
	if got := check.GetDeniedResponse().GetStatus().GetCode(); got != http.StatusUnauthorized {
		t.Errorf("gRPC: %v, want a 401 denial", check)
	}
}
