package decision

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/gateway"
)

// overrideResult is what one mode did with a request that carries a
// method-override header.
type overrideResult struct {
	status int
	user   string
	// passed is the override value the upstream gets ("" when none reaches
	// it): what the gateway forwarded, or for Envoy the client's header
	// unless sekisho told Envoy to remove it (or the value Envoy is told to
	// set).
	passed string
}

// overrideCase is one request with override headers (name, value pairs).
type overrideCase struct {
	name     string
	method   string
	target   string
	cred     string
	override []string
	// status is the gateway's and Envoy's answer; keeps the answer of the
	// dialects whose proxy cannot remove a header on sekisho's word (nginx,
	// forward-auth), before nginx's 401/403 mapping.
	status, keeps int
	user          string
	passed        string // the override the upstream gets on an allow
}

// TestMethodOverrideInEveryMode: override headers are stripped (or, where
// the proxy cannot strip them, refused) on routes that do not opt in, and
// decided on as the method, consistently, on routes that do.
func TestMethodOverrideInEveryMode(t *testing.T) {
	f := newFixture(t, Config{}, "")
	gw := gateway.New(slog.New(slog.DiscardHandler), nil, false)
	gw.Swap(f.snap)
	gwSrv := httptest.NewServer(gw)
	t.Cleanup(gwSrv.Close)
	tk := f.tokens
	alice, dave := "alice@example.com", "dave@example.com"
	ov := func(kv ...string) []string { return kv }

	cases := []overrideCase{
		{"override on a public route without the opt-in", "GET", "/board/x", "", ov("X-HTTP-Method-Override", "DELETE"), 200, 400, "", ""},
		{"underscore spelling without the opt-in", "GET", "/board/x", "", ov("X_HTTP_Method", "DELETE"), 200, 400, "", ""},
		{"a stripped override does not change the decision", "POST", "/board/x", tk.dev, ov("X-HTTP-Method-Override", "GET"), 403, 400, "", ""},
		{"override DELETE is decided as DELETE", "POST", "/forms/x", tk.dev, ov("X-HTTP-Method-Override", "DELETE"), 403, 403, "", ""},
		{"lower-case override in another spelling", "post", "/forms/x", tk.dev, ov("X-Method-Override", "delete"), 403, 403, "", ""},
		{"override DELETE by an admin", "POST", "/forms/x", tk.admin, ov("X-HTTP-Method-Override", "delete"), 200, 200, alice, "DELETE"},
		{"policy methods see the override", "POST", "/forms/x", tk.dev, ov("X-HTTP-Method-Override", "PATCH"), 403, 403, "", ""},
		{"an allowed override", "POST", "/forms/x", tk.dev, ov("X-HTTP-Method-Override", "PUT"), 200, 200, dave, "PUT"},
		{"two override headers", "POST", "/forms/x", tk.admin, ov("X-HTTP-Method-Override", "PUT", "X-HTTP-Method", "PUT"), 400, 400, "", ""},
		{"an override that is not a method", "POST", "/forms/x", tk.admin, ov("X-HTTP-Method-Override", "PUT DELETE"), 400, 400, "", ""},
		{"an override on GET", "GET", "/forms/x", tk.admin, ov("X-HTTP-Method-Override", "DELETE"), 400, 400, "", ""},
	}

	modes := []struct {
		name  string
		keeps bool // the proxy cannot remove headers
		do    func(t *testing.T, c overrideCase) overrideResult
	}{
		{"gateway", false, func(t *testing.T, c overrideCase) overrideResult {
			resp, body := raw(t, gwSrv.Listener.Addr().String(), c.method, c.target, append(append([]string{"Host", "gw.test"}, bearer(c.cred)...), c.override...)...)
			r := overrideResult{status: resp.StatusCode}
			if resp.StatusCode == 200 {
				var e echo.Request
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					t.Fatalf("gateway upstream answer: %v", err)
				}
				r.user = e.Headers.Get("X-Forwarded-User")
				for k, vs := range e.Headers {
					if strings.Contains(strings.ToLower(k), "method") {
						if r.passed != "" {
							t.Errorf("more than one override header reached the upstream: %v", e.Headers)
						}
						r.passed = strings.Join(vs, ",")
					}
				}
			}
			return r
		}},
		{"envoy-http", false, func(t *testing.T, c overrideCase) overrideResult {
			resp, _ := raw(t, f.addr(), c.method, "/envoy"+c.target, append(append([]string{"Host", "gw.test"}, bearer(c.cred)...), c.override...)...)
			r := overrideResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User")}
			if resp.StatusCode == 200 {
				removed := strings.Split(strings.ToLower(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove")), ", ")
				r.passed = envoyPassed(c.override, removed, func(name string) string { return resp.Header.Get(name) })
			}
			return r
		}},
		{"nginx", true, func(t *testing.T, c overrideCase) overrideResult {
			resp, _ := raw(t, f.addr(), "GET", "/nginx", append(append([]string{"X-Original-URI", c.target, "X-Original-Method", c.method,
				"X-Forwarded-Host", "gw.test", "X-Forwarded-Proto", "https"}, bearer(c.cred)...), c.override...)...)
			return overrideResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User"), passed: keptOverride(c, resp.StatusCode)}
		}},
		{"forward-auth", true, func(t *testing.T, c overrideCase) overrideResult {
			resp, _ := raw(t, f.addr(), "GET", "/forward-auth", append(append([]string{"X-Forwarded-Method", c.method, "X-Forwarded-Proto", "https",
				"X-Forwarded-Host", "gw.test", "X-Forwarded-Uri", c.target}, bearer(c.cred)...), c.override...)...)
			return overrideResult{status: resp.StatusCode, user: resp.Header.Get("X-Forwarded-User"), passed: keptOverride(c, resp.StatusCode)}
		}},
		{"envoy-grpc", false, func(t *testing.T, c overrideCase) overrideResult {
			headers := map[string]string{":authority": "gw.test", ":path": c.target, ":method": c.method}
			if c.cred != "" {
				headers["authorization"] = "Bearer " + c.cred
			}
			for i := 0; i+1 < len(c.override); i += 2 {
				headers[strings.ToLower(c.override[i])] = c.override[i+1]
			}
			resp, err := f.grpc.Check(context.Background(), envoyCheck(c.method, "gw.test", c.target, headers))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			m := grpcResult(t, resp)
			r := overrideResult{status: m.status, user: m.user}
			if r.status == 200 {
				ok := resp.GetOkResponse()
				r.passed = envoyPassed(c.override, lower(ok.GetHeadersToRemove()), func(name string) string {
					v, _ := headerOf(ok.GetHeaders(), name)
					return v
				})
			}
			return r
		}},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, m := range modes {
				want := c.status
				if m.keeps {
					want = c.keeps
				}
				wantUser, wantPassed := c.user, c.passed
				if want != 200 {
					wantUser, wantPassed = "", ""
				}
				if m.name == "nginx" {
					want = nginxStatus(want)
				}
				got := m.do(t, c)
				if got.status != want || got.user != wantUser || got.passed != wantPassed {
					t.Errorf("%s: status %d, user %q, upstream override %q; want %d, %q, %q", m.name, got.status, got.user, got.passed, want, wantUser, wantPassed)
				}
			}
		})
	}
}

// envoyPassed is the override value an upstream behind Envoy receives: the
// value sekisho tells Envoy to set, else the client's unless sekisho names
// the header for removal.
func envoyPassed(override, removed []string, set func(string) string) string {
	for i := 0; i+1 < len(override); i += 2 {
		if v := set(override[i]); v != "" {
			return v
		}
		if !slices.Contains(removed, strings.ToLower(override[i])) {
			return override[i+1]
		}
	}
	return ""
}

// keptOverride is the override value an upstream behind nginx or a
// forward-auth proxy receives on an allow: the client's, untouched.
func keptOverride(c overrideCase, status int) string {
	if status != 200 || len(c.override) < 2 {
		return ""
	}
	v, _, _ := strings.Cut(strings.ToUpper(c.override[1]), " ")
	return v
}

// methodProxyCase is one request through a real proxy with a method or
// method-override header to decide on.
type methodProxyCase struct {
	name   string
	method string
	target string
	hdr    []string
	status int
	// appMethod is what the app receives, in any case ("" for nothing);
	// appOverride the X-HTTP-Method-Override it receives.
	appMethod, appOverride string
}

// methodProxyCases are the method-case bypass and the override cases for
// a real proxy ("caddy" or "nginx"). Caddy passes any method, in any case,
// to forward_auth as X-Forwarded-Method; nginx refuses lower-case methods
// itself. Both copy a client's override header into the decision request.
func methodProxyCases(f *fixture, proxy string) []methodProxyCase {
	tk := f.tokens
	refused := func(s int) int { // what the proxy answers for a sekisho 400
		if proxy == "nginx" {
			return 403
		}
		return s
	}
	lower := func(s int) int { // what the proxy answers for a lower-case method
		if proxy == "nginx" {
			return 400
		}
		return s
	}
	return []methodProxyCase{
		{"delete without credentials", "delete", "/board/x", nil, lower(401), "", ""},
		{"Delete by a non-admin", "Delete", "/board/x", bearer(tk.dev), lower(403), "", ""},
		{"dElEtE by a non-admin", "dElEtE", "/board/x", bearer(tk.dev), lower(403), "", ""},
		{"DELETE without credentials", "DELETE", "/board/x", nil, 401, "", ""},
		{"GET on the public route", "GET", "/board/x", nil, 200, "GET", ""},
		{"extension method without the opt-in", "PROPFIND", "/board/x", nil, refused(400), "", ""},
		{"override where the route does not allow it", "GET", "/board/x", []string{"X-HTTP-Method-Override", "DELETE"}, refused(400), "", ""},
		{"override DELETE decided as DELETE", "POST", "/forms/x", append(bearer(tk.dev), "X-HTTP-Method-Override", "DELETE"), 403, "", ""},
		{"override DELETE by an admin", "POST", "/forms/x", append(bearer(tk.admin), "X-HTTP-Method-Override", "DELETE"), 200, "POST", "DELETE"},
		{"a _method parameter without the opt-in", "POST", "/board/x?_method=GET", bearer(tk.admin), refused(400), "", ""},
		{"a _method parameter decided as DELETE", "POST", "/forms/x?_method=DELETE", bearer(tk.dev), 403, "", ""},
	}
}

// runMethodCases drives each case through the proxy at addr and checks the
// status and that refused requests never reached the app.
func runMethodCases(t *testing.T, addr string, app *recordingApp, cases []methodProxyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run("method/"+c.name, func(t *testing.T) {
			before := app.hits.Load()
			resp, body := raw(t, addr, c.method, c.target, append([]string{"Host", "gw.test"}, c.hdr...)...)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, c.status, body)
			}
			if c.status != 200 {
				if n := app.hits.Load() - before; n != 0 {
					t.Errorf("a refused request reached the app (%d times)", n)
				}
				return
			}
			var seen seenRequest
			if err := json.Unmarshal([]byte(body), &seen); err != nil {
				t.Fatalf("not the app's answer: %v\n%s", err, body)
			}
			if !strings.EqualFold(seen.Method, c.appMethod) {
				t.Errorf("the app received method %q, want %q", seen.Method, c.appMethod)
			}
			if got := seen.Headers.Get("X-Http-Method-Override"); got != c.appOverride {
				t.Errorf("the app received X-HTTP-Method-Override %q, want %q", got, c.appOverride)
			}
		})
	}
}
