package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// clientForwardingHeaders are request descriptions a client can send itself:
// the address, scheme, host, port, method, path or prefix of "the original
// request", as upstream frameworks read them.
var clientForwardingHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Real-Ip", "True-Client-Ip", "X-Client-Ip",
	"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
	"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Server", "X-Forwarded-Path",
	"X-Forwarded-Scheme", "X-Forwarded-Ssl", "Front-End-Https", "X-Url-Scheme",
	"X-Original-Url", "X-Original-Uri", "X-Original-Host", "X-Original-Method",
	"X-Rewrite-Url", "X-Host", "X-Envoy-Original-Path", "X-Request-Id",
}

// spellings are the ways a client writes one header name so that some
// upstream stack still reads it as that name.
func spellings(name string) []string {
	return []string{name, strings.ToLower(name), strings.ReplaceAll(name, "-", "_")}
}

// TestClientForwardingHeadersNeverReachUpstream: every forwarding header a
// client sends, in every spelling, is gone before the request reaches a real
// upstream; only sekisho's own X-Forwarded-For/-Proto/-Host and
// X-Request-Id arrive.
func TestClientForwardingHeadersNeverReachUpstream(t *testing.T) {
	up := newUpstream(t)
	f := newFixture(t, fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
routes:
  - {name: app, match: {path_prefix: /}, to: %s, public: true}
`, up.srv.URL))
	for _, name := range clientForwardingHeaders {
		for _, sp := range spellings(name) {
			t.Run(sp, func(t *testing.T) {
				resp, body := f.do(t, "GET", "/app", map[string]string{sp: "/admin"})
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				got := up.received(t)
				for k, vs := range got {
					for _, v := range vs {
						if strings.Contains(v, "/admin") {
							t.Errorf("the client's %s reached the upstream as %s: %q", sp, k, v)
						}
					}
				}
			})
		}
	}
}

// TestPoliciesNeverSeeClientForwardingHeaders: a rule on a forwarding header
// cannot be satisfied by a client that sends it; the client's address is
// request.client_ip.
func TestPoliciesNeverSeeClientForwardingHeaders(t *testing.T) {
	for _, name := range clientForwardingHeaders {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, fmt.Sprintf(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: app
    match: {path_prefix: /}
    to: builtin:echo
    allow: [{when: "request.headers['%s'] == '10.0.0.1'"}]
`, strings.ToLower(name)))
			for _, sp := range spellings(name) {
				if resp, body := f.do(t, "GET", "/app", map[string]string{sp: "10.0.0.1"}); resp.StatusCode != 401 {
					t.Errorf("%s: 10.0.0.1 sent by the client: status %d, want 401: %s", sp, resp.StatusCode, body)
				}
			}
		})
	}
}
