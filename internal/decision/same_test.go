package decision

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sekisho/sekisho/internal/configtest"
	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/gateway"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// modeResult is what one mode decided: the status the client would get,
// the user the upstream would be told about and, on an allow, the
// upstreamNames headers the upstream would get (nil for modes whose proxy
// cannot remove request headers: nginx, forward-auth).
type modeResult struct {
	status   int
	user     string
	upstream http.Header
}

// decisionCase is one original request and what the gateway answers it.
type decisionCase struct {
	name         string
	method, host string
	target       string // request-target exactly as the client sent it
	cred         string
	want         int
	wantUser     string
	// headers are more request header lines, name then value.
	headers []string
}

// upstreamNames are the headers the upstream changes touch: consumed
// credentials, cookies, identity headers and spoofed copies, overrides.
var upstreamNames = []string{
	"Authorization", "X-Api-Key", "Cookie",
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Sekisho-Note",
	"X-Http-Method-Override", "Accept",
}

// TestSameDecisionsInEveryMode runs one list of requests through the
// gateway and through every decision dialect; all must decide alike, and
// on an allow the upstream must get the same headers from the gateway as
// from a proxy that applies the decision's changes (Envoy): one function
// computes them for both.
func TestSameDecisionsInEveryMode(t *testing.T) {
	const extra = "credentials: {header: X-Api-Key, cookie: access_token}"
	f := newFixture(t, Config{}, extra)
	f.snap.Authn.SessionCookie = "_sekisho" // before the first request: snapshots are read without locks
	gw := gateway.New(slog.New(slog.DiscardHandler), nil, false)
	gw.Swap(gatewaySnapshot(t, f, extra))
	gwSrv := httptest.NewServer(gw)
	t.Cleanup(gwSrv.Close)
	tk := f.tokens
	alice := "alice@example.com"

	cases := []decisionCase{
		{"no credentials", "GET", "gw.test", "/api1/x", "", 401, "", nil},
		{"admin token", "GET", "gw.test", "/api1/x", tk.admin, 200, alice, nil},
		{"authenticated, not allowed", "GET", "gw.test", "/api1/x", tk.dev, 403, "", nil},
		{"API token", "GET", "gw.test", "/api1/x", ciToken, 200, "token:ci-bot", nil},
		{"garbage token", "GET", "gw.test", "/api1/x", "not-a-token", 401, "", nil},
		{"expired token", "GET", "gw.test", "/api1/x", tk.expired, 401, "", nil},
		{"dot segments decided on the canonical path", "GET", "gw.test", "/api1/../api2/x", tk.dev, 200, "dave@example.com", nil},
		{"dot segments cannot reach a stricter route's neighbour", "GET", "gw.test", "/api2/../api1/x", tk.dev, 403, "", nil},
		{"encoded dot segments", "GET", "gw.test", "/api1/%2e%2e/api2/x", tk.dev, 200, "dave@example.com", nil},
		{"duplicate slashes", "GET", "gw.test", "//api1//x", tk.admin, 200, alice, nil},
		{"encoded slash refused by default", "GET", "gw.test", "/api1/a%2Fb", tk.admin, 400, "", nil},
		{"encoded slash on a route that allows it", "GET", "gw.test", "/files/a%2Fb", tk.admin, 200, alice, nil},
		{"double-encoded dot segment refused by default", "GET", "gw.test", "/api1/%252e%252e/admin", tk.admin, 400, "", nil},
		{"double-encoded dot segment on a route that allows encoded slashes", "GET", "gw.test", "/files/%252e%252e/x", tk.admin, 200, alice, nil},
		{"dot segments above the root", "GET", "gw.test", "/api1/../../etc", tk.admin, 400, "", nil},
		{"no route", "GET", "gw.test", "/nothing", tk.admin, 404, "", nil},
		{"query does not change the route", "GET", "gw.test", "/api2/x?r=/api1", tk.admin, 200, alice, nil},
		{"method outside the route", "POST", "gw.test", "/ro/x", tk.dev, 404, "", nil},
		{"method inside the route", "GET", "gw.test", "/ro/x", tk.dev, 200, "dave@example.com", nil},
		{"lower-case method inside the route", "get", "gw.test", "/ro/x", tk.dev, 200, "dave@example.com", nil},
		{"lower-case method outside the route", "post", "gw.test", "/ro/x", tk.dev, 404, "", nil},
		{"delete cannot fall through to a public route", "delete", "gw.test", "/board/x", "", 401, "", nil},
		{"Delete is DELETE", "Delete", "gw.test", "/board/x", tk.dev, 403, "", nil},
		{"dElEtE is DELETE", "dElEtE", "gw.test", "/board/x", tk.admin, 200, alice, nil},
		{"get on the public route", "get", "gw.test", "/board/x", "", 200, "", nil},
		{"extension method without the route's opt-in", "PROPFIND", "gw.test", "/board/x", "", 400, "", nil},
		{"a near-miss of DELETE is an extension method", "delete2", "gw.test", "/board/x", tk.admin, 400, "", nil},
		{"extension method where the route allows it", "propfind", "gw.test", "/dav/x", tk.dev, 200, "dave@example.com", nil},
		{"a _method parameter on a POST without the opt-in", "POST", "gw.test", "/board/x?_method=GET", tk.admin, 400, "", nil},
		{"a _method parameter is decided on", "POST", "gw.test", "/forms/x?_method=DELETE", tk.dev, 403, "", nil},
		{"a PHP spelling of _method is decided on", "POST", "gw.test", "/forms/x?%5Fmethod=delete", tk.dev, 403, "", nil},
		{"a _method parameter an admin may use", "POST", "gw.test", "/forms/x?_method=DELETE", tk.admin, 200, alice, nil},
		{"public route", "GET", "gw.test", "/open/x", "", 200, "", nil},
		{"public route ignores a bad token", "GET", "gw.test", "/open/x", "garbage", 200, "", nil},
		{"host route", "GET", "app.example.com", "/anything", tk.admin, 200, alice, nil},
		{"host is case- and port-insensitive", "GET", "APP.example.com:8443", "/anything", tk.admin, 200, alice, nil},
		{"host route, wrong user", "GET", "app.example.com", "/anything", tk.ops, 403, "", nil},
		{"bad host", "GET", "bad_host..", "/api1/x", tk.admin, 400, "", nil},
		{"overlong UTF-8 refused", "GET", "gw.test", "/open/%C0%AE%C0%AE/api1/x", "", 400, "", nil},
		{"surrogate refused", "GET", "gw.test", "/open/%ED%A0%80", tk.admin, 400, "", nil},
		{"valid UTF-8 path", "GET", "gw.test", "/api1/%E6%97%A5", tk.admin, 200, alice, nil},
		{"CRLF in the username is invalid credentials", "GET", "gw.test", "/api1/x", f.iss.Token(t, "email", "alice@example.com\r\nX-Forwarded-Groups: admin"), 401, "", nil},
		{"a control character in a group is invalid credentials", "GET", "gw.test", "/api1/x", f.iss.Token(t, "groups", []string{"admin", "dev\x00"}), 401, "", nil},
		{"spoofed identity headers replaced or removed", "GET", "gw.test", "/api1/x", tk.admin, 200, alice, []string{
			"X-Forwarded-User", "mallory", "X-Forwarded-Groups", "admin", "X-Sekisho-Note", "forged", "Accept", "text/plain"}},
		{"spoofed identity headers removed on a public route", "GET", "gw.test", "/open/x", "", 200, "", []string{
			"X-Forwarded-User", "mallory", "X-Forwarded-Email", "m@example.com", "Accept", "text/plain"}},
		{"token cookie consumed, session cookie dropped, others kept", "GET", "gw.test", "/api1/x", "", 200, alice, []string{
			"Cookie", "theme=dark; access_token=" + tk.admin + "; _sekisho=s; _sekisho_1=t;lang=ja"}},
		{"token header consumed", "GET", "gw.test", "/api1/x", "", 200, "token:ci-bot", []string{"X-Api-Key", ciToken, "Cookie", "theme=dark"}},
		{"pass_credentials keeps the token, not the session cookie", "GET", "gw.test", "/pass/x", tk.admin, 200, alice, []string{
			"Cookie", "_sekisho=s; theme=dark"}},
		{"only sekisho's cookies: no Cookie upstream", "GET", "gw.test", "/api1/x", tk.admin, 200, alice, []string{"Cookie", "_sekisho=s"}},
		{"override header applied, canonical upstream", "POST", "gw.test", "/forms/x", tk.admin, 200, alice, []string{"X-Http-Method-Override", "delete"}},
		{"override header applied as sent", "POST", "gw.test", "/forms/x", tk.admin, 200, alice, []string{"X-Http-Method-Override", "DELETE"}},
	}

	modes := []struct {
		name string
		do   func(t *testing.T, c decisionCase) modeResult
		// status maps the gateway's answer to what this mode must answer.
		status func(int) int
	}{
		{"gateway", func(t *testing.T, c decisionCase) modeResult {
			resp, body := raw(t, gwSrv.Listener.Addr().String(), c.method, c.target, c.header("Host", c.host)...)
			r := modeResult{status: resp.StatusCode}
			if resp.StatusCode == 200 {
				var e echo.Request
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					t.Fatalf("gateway upstream answer: %v", err)
				}
				r.user = e.Headers.Get("X-Forwarded-User")
				r.upstream = only(e.Headers)
			}
			return r
		}, same},
		{"envoy-http", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), c.method, "/envoy"+c.target, c.header("Host", c.host)...)
			r := modeResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
			if resp.StatusCode == 200 {
				// Envoy copies the allowed headers upstream, then removes
				// what X-Envoy-Auth-Headers-To-Remove lists.
				set := http.Header{}
				for _, name := range upstreamNames {
					if vs, ok := resp.Header[name]; ok {
						set[name] = vs
					}
				}
				r.upstream = c.upstream(set, strings.Split(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"), ", "))
			}
			return r
		}, same},
		{"nginx", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), "GET", "/nginx", c.header("X-Original-URI", c.target, "X-Original-Method", c.method,
				"X-Forwarded-Host", c.host, "X-Forwarded-Proto", "https")...)
			return modeResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
		}, nginxStatus},
		{"ingress-nginx", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), "GET", "/ingress-nginx", c.header("X-Original-URL", "https://"+c.host+c.target, "X-Original-Method", c.method)...)
			return modeResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
		}, nginxStatus},
		{"forward-auth", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), "GET", "/forward-auth", c.header("X-Forwarded-Method", c.method, "X-Forwarded-Proto", "https",
				"X-Forwarded-Host", c.host, "X-Forwarded-Uri", c.target)...)
			return modeResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
		}, same},
		{"envoy-grpc", func(t *testing.T, c decisionCase) modeResult {
			headers := map[string]string{":authority": c.host, ":path": c.target, ":method": c.method}
			hdr := c.header()
			for i := 0; i+1 < len(hdr); i += 2 {
				headers[strings.ToLower(hdr[i])] = hdr[i+1]
			}
			resp, err := f.grpc.Check(context.Background(), envoyCheck(c.method, c.host, c.target, headers))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			r := grpcResult(t, resp)
			if r.status == 200 {
				ok := resp.GetOkResponse()
				set := http.Header{}
				for _, o := range ok.GetHeaders() {
					set.Add(o.GetHeader().GetKey(), o.GetHeader().GetValue())
				}
				r.upstream = c.upstream(only(set), ok.GetHeadersToRemove())
			}
			return r
		}, same},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var gwUpstream http.Header
			for _, m := range modes {
				got := m.do(t, c)
				if want := m.status(c.want); got.status != want {
					t.Errorf("%s: status %d, want %d", m.name, got.status, want)
				}
				if got.user != c.wantUser {
					t.Errorf("%s: upstream user %q, want %q", m.name, got.user, c.wantUser)
				}
				switch {
				case got.upstream == nil:
				case m.name == "gateway":
					gwUpstream = got.upstream
				case !maps.EqualFunc(got.upstream, gwUpstream, slices.Equal):
					t.Errorf("%s: upstream headers differ from the gateway's\n got %v\nwant %v", m.name, got.upstream, gwUpstream)
				}
			}
		})
	}
}

// gatewaySnapshot compiles the fixture's configuration for the gateway
// with a real upstream in place of builtin:echo, which redacts credentials
// and cookies: this one answers with every header it got, as the echo's
// JSON.
func gatewaySnapshot(t *testing.T, f *fixture, extra string) *snapshot.Snapshot {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(echo.Request{Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Headers: r.Header})
	}))
	t.Cleanup(up.Close)
	src, _ := snapshotYAML(t, f.iss, extra)
	snap := configtest.New(t).Snapshot(strings.ReplaceAll(src, "builtin:echo", up.URL))
	snap.Authn.SessionCookie = f.snap.Authn.SessionCookie
	return snap
}

// header is the case's credential and extra header lines after the given
// pairs, for raw.
func (c decisionCase) header(pairs ...string) []string {
	return append(append(pairs, bearer(c.cred)...), c.headers...)
}

// upstream is what an upstream behind Envoy gets for c: the request's
// headers (upstreamNames only) with set applied, then remove (any case).
func (c decisionCase) upstream(set http.Header, remove []string) http.Header {
	h := http.Header{}
	hdr := c.header()
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	h = only(h)
	for k, vs := range set {
		h[k] = vs
	}
	for _, name := range remove {
		h.Del(name)
	}
	return h
}

// only keeps upstreamNames of h, with canonical keys.
func only(h http.Header) http.Header {
	out := http.Header{}
	for _, name := range upstreamNames {
		if vs := h.Values(name); len(vs) > 0 {
			out[name] = vs
		}
	}
	return out
}

// envoyCheck builds a CheckRequest the way Envoy's ext_authz filter does:
// lower-case header names, pseudo-headers in the map too, the path
// undecoded with its query, the downstream address as the source.
func envoyCheck(method, host, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234},
			}}},
			Principal: "spiffe://cluster.local/ns/web/sa/frontend",
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "envoy-request-1",
			Method:   method,
			Headers:  headers,
			Path:     path,
			Host:     host,
			Scheme:   "https",
			Protocol: "HTTP/1.1",
		}},
	}}
}

// grpcResult maps a CheckResponse to the status Envoy would answer and the
// user header it would set upstream.
func grpcResult(t *testing.T, resp *authv3.CheckResponse) modeResult {
	t.Helper()
	if resp.GetStatus().GetCode() == 0 {
		r := modeResult{status: 200}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-forwarded-user" {
				r.user = h.GetHeader().GetValue()
			}
		}
		return r
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("a denial without denied_response: %v", resp)
	}
	return modeResult{status: int(d.GetStatus().GetCode())}
}

// headerOf returns the value of a header option by (lower-case) name.
func headerOf(opts []*corev3.HeaderValueOption, name string) (string, bool) {
	for _, o := range opts {
		if strings.EqualFold(o.GetHeader().GetKey(), name) {
			return o.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// nginxStatus is what nginx must be told for a gateway answer: allow stays
// 200, every denial is 401 or 403.
func nginxStatus(status int) int {
	if status == 200 {
		return 200
	}
	return only401or403(status)
}
