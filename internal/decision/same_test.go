package decision

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/gateway"
)

// modeResult is what one mode decided: the status the client would get
// and the user the upstream would be told about.
type modeResult struct {
	status int
	user   string
}

// decisionCase is one original request and what the gateway answers it.
type decisionCase struct {
	name         string
	method, host string
	target       string // request-target exactly as the client sent it
	cred         string
	want         int
	wantUser     string
}

// TestSameDecisionsInEveryMode runs one list of requests through the
// gateway and through every decision dialect; all must decide alike.
func TestSameDecisionsInEveryMode(t *testing.T) {
	f := newFixture(t, Config{}, "")
	gw := gateway.New(slog.New(slog.DiscardHandler), nil, false)
	gw.Swap(f.snap)
	gwSrv := httptest.NewServer(gw)
	t.Cleanup(gwSrv.Close)
	tk := f.tokens
	alice := "alice@example.com"

	cases := []decisionCase{
		{"no credentials", "GET", "gw.test", "/api1/x", "", 401, ""},
		{"admin token", "GET", "gw.test", "/api1/x", tk.admin, 200, alice},
		{"authenticated, not allowed", "GET", "gw.test", "/api1/x", tk.dev, 403, ""},
		{"API token", "GET", "gw.test", "/api1/x", ciToken, 200, "token:ci-bot"},
		{"garbage token", "GET", "gw.test", "/api1/x", "not-a-token", 401, ""},
		{"expired token", "GET", "gw.test", "/api1/x", tk.expired, 401, ""},
		{"dot segments decided on the canonical path", "GET", "gw.test", "/api1/../api2/x", tk.dev, 200, "dave@example.com"},
		{"dot segments cannot reach a stricter route's neighbour", "GET", "gw.test", "/api2/../api1/x", tk.dev, 403, ""},
		{"encoded dot segments", "GET", "gw.test", "/api1/%2e%2e/api2/x", tk.dev, 200, "dave@example.com"},
		{"duplicate slashes", "GET", "gw.test", "//api1//x", tk.admin, 200, alice},
		{"encoded slash refused by default", "GET", "gw.test", "/api1/a%2Fb", tk.admin, 400, ""},
		{"encoded slash on a route that allows it", "GET", "gw.test", "/files/a%2Fb", tk.admin, 200, alice},
		{"dot segments above the root", "GET", "gw.test", "/api1/../../etc", tk.admin, 400, ""},
		{"no route", "GET", "gw.test", "/nothing", tk.admin, 404, ""},
		{"query does not change the route", "GET", "gw.test", "/api2/x?r=/api1", tk.admin, 200, alice},
		{"method outside the route", "POST", "gw.test", "/ro/x", tk.dev, 404, ""},
		{"method inside the route", "GET", "gw.test", "/ro/x", tk.dev, 200, "dave@example.com"},
		{"lower-case method inside the route", "get", "gw.test", "/ro/x", tk.dev, 200, "dave@example.com"},
		{"lower-case method outside the route", "post", "gw.test", "/ro/x", tk.dev, 404, ""},
		{"delete cannot fall through to a public route", "delete", "gw.test", "/board/x", "", 401, ""},
		{"Delete is DELETE", "Delete", "gw.test", "/board/x", tk.dev, 403, ""},
		{"dElEtE is DELETE", "dElEtE", "gw.test", "/board/x", tk.admin, 200, alice},
		{"get on the public route", "get", "gw.test", "/board/x", "", 200, ""},
		{"extension method without the route's opt-in", "PROPFIND", "gw.test", "/board/x", "", 400, ""},
		{"a near-miss of DELETE is an extension method", "delete2", "gw.test", "/board/x", tk.admin, 400, ""},
		{"extension method where the route allows it", "propfind", "gw.test", "/dav/x", tk.dev, 200, "dave@example.com"},
		{"a _method parameter on a POST without the opt-in", "POST", "gw.test", "/board/x?_method=GET", tk.admin, 400, ""},
		{"a _method parameter is decided on", "POST", "gw.test", "/forms/x?_method=DELETE", tk.dev, 403, ""},
		{"a PHP spelling of _method is decided on", "POST", "gw.test", "/forms/x?%5Fmethod=delete", tk.dev, 403, ""},
		{"a _method parameter an admin may use", "POST", "gw.test", "/forms/x?_method=DELETE", tk.admin, 200, alice},
		{"public route", "GET", "gw.test", "/open/x", "", 200, ""},
		{"public route ignores a bad token", "GET", "gw.test", "/open/x", "garbage", 200, ""},
		{"host route", "GET", "app.example.com", "/anything", tk.admin, 200, alice},
		{"host is case- and port-insensitive", "GET", "APP.example.com:8443", "/anything", tk.admin, 200, alice},
		{"host route, wrong user", "GET", "app.example.com", "/anything", tk.ops, 403, ""},
		{"bad host", "GET", "bad_host..", "/api1/x", tk.admin, 400, ""},
		{"overlong UTF-8 refused", "GET", "gw.test", "/open/%C0%AE%C0%AE/api1/x", "", 400, ""},
		{"surrogate refused", "GET", "gw.test", "/open/%ED%A0%80", tk.admin, 400, ""},
		{"valid UTF-8 path", "GET", "gw.test", "/api1/%E6%97%A5", tk.admin, 200, alice},
	}

	modes := []struct {
		name string
		do   func(t *testing.T, c decisionCase) modeResult
		// status maps the gateway's answer to what this mode must answer.
		status func(int) int
	}{
		{"gateway", func(t *testing.T, c decisionCase) modeResult {
			resp, body := raw(t, gwSrv.Listener.Addr().String(), c.method, c.target, append([]string{"Host", c.host}, bearer(c.cred)...)...)
			r := modeResult{status: resp.StatusCode}
			if resp.StatusCode == 200 {
				var e echo.Request
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					t.Fatalf("gateway upstream answer: %v", err)
				}
				r.user = e.Headers.Get("X-Forwarded-User")
			}
			return r
		}, same},
		{"envoy-http", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), c.method, "/envoy"+c.target, append([]string{"Host", c.host}, bearer(c.cred)...)...)
			return modeResult{resp.StatusCode, resp.Header.Get("X-Forwarded-User")}
		}, same},
		{"nginx", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), "GET", "/nginx", append([]string{"X-Original-URI", c.target, "X-Original-Method", c.method,
				"X-Forwarded-Host", c.host, "X-Forwarded-Proto", "https"}, bearer(c.cred)...)...)
			return modeResult{resp.StatusCode, resp.Header.Get("X-Forwarded-User")}
		}, nginxStatus},
		{"ingress-nginx", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), "GET", "/ingress-nginx", append([]string{"X-Original-URL", "https://" + c.host + c.target, "X-Original-Method", c.method}, bearer(c.cred)...)...)
			return modeResult{resp.StatusCode, resp.Header.Get("X-Forwarded-User")}
		}, nginxStatus},
		{"forward-auth", func(t *testing.T, c decisionCase) modeResult {
			resp, _ := raw(t, f.addr(), "GET", "/forward-auth", append([]string{"X-Forwarded-Method", c.method, "X-Forwarded-Proto", "https",
				"X-Forwarded-Host", c.host, "X-Forwarded-Uri", c.target}, bearer(c.cred)...)...)
			return modeResult{resp.StatusCode, resp.Header.Get("X-Forwarded-User")}
		}, same},
		{"envoy-grpc", func(t *testing.T, c decisionCase) modeResult {
			headers := map[string]string{":authority": c.host, ":path": c.target, ":method": c.method}
			if c.cred != "" {
				headers["authorization"] = "Bearer " + c.cred
			}
			resp, err := f.grpc.Check(context.Background(), envoyCheck(c.method, c.host, c.target, headers))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			return grpcResult(t, resp)
		}, same},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, m := range modes {
				got := m.do(t, c)
				if want := m.status(c.want); got.status != want {
					t.Errorf("%s: status %d, want %d", m.name, got.status, want)
				}
				if got.user != c.wantUser {
					t.Errorf("%s: upstream user %q, want %q", m.name, got.user, c.wantUser)
				}
			}
		})
	}
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
