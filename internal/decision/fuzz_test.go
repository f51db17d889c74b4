package decision

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// descriptionHeaders are the headers each header-reading dialect takes its
// description from; sending any of them twice must be refused.
var descriptionHeaders = map[*dialect][]string{
	nginx:        {"X-Original-Uri", "X-Original-Method", "X-Forwarded-Host", "X-Forwarded-Proto"},
	ingressNginx: {"X-Original-Url", "X-Original-Method"},
	forwardAuth:  {"X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"},
}

// checkDescribed holds for every description a dialect accepts: the
// request-target is origin-form, so the engine decides on a path.
func checkDescribed(t *testing.T, name string, d *described) {
	t.Helper()
	if !strings.HasPrefix(d.req.RequestURI, "/") {
		t.Fatalf("%s accepted request-target %q", name, d.req.RequestURI)
	}
	if d.req.URL == nil || d.req.Method == "" {
		t.Fatalf("%s accepted a description without URL or method: %+v", name, d.req)
	}
	if d.scheme != "http" && d.scheme != "https" {
		t.Fatalf("%s described scheme %q", name, d.scheme)
	}
}

// FuzzDescribeHeaders feeds arbitrary descriptions to the nginx,
// ingress-nginx and forward-auth readers: they never panic; what they
// accept has a path starting with '/'; a duplicated description header,
// X-Original-URL on /nginx and a disagreeing X-Original-URI on
// /ingress-nginx are never accepted.
func FuzzDescribeHeaders(f *testing.F) {
	f.Add("https://app.test/a?b", "/x", "GET", "app.test", "https", uint8(0), "/y")
	f.Add("http://", "", "", "", "", uint8(1), "")
	f.Add("HTTPS://h?q", "//a/../b", "PO ST", "[::1]:80", "http", uint8(2), "/a")
	f.Add("http://gw.test/open/x", "/api1/x", "delete", "gw.test", "ftp", uint8(3), "/api1/x")
	f.Fuzz(func(t *testing.T, url, uri, method, host, proto string, dup uint8, second string) {
		set := func(r *http.Request) {
			r.Header["X-Original-Url"] = []string{url}
			r.Header["X-Original-Uri"] = []string{uri}
			r.Header["X-Original-Method"] = []string{method}
			r.Header["X-Forwarded-Method"] = []string{method}
			r.Header["X-Forwarded-Uri"] = []string{uri}
			r.Header["X-Forwarded-Host"] = []string{host}
			r.Header["X-Forwarded-Proto"] = []string{proto}
		}
		for _, dl := range []*dialect{nginx, ingressNginx, forwardAuth} {
			r := httptest.NewRequest("GET", "/", nil)
			set(r)
			if dl == nginx {
				delete(r.Header, "X-Original-Url")
			}
			d := &described{}
			if _, ok := dl.describe(r, d); ok {
				checkDescribed(t, dl.name, d)
			}

			// The same with one description header sent twice.
			names := descriptionHeaders[dl]
			name := names[int(dup)%len(names)]
			r.Header[name] = append(r.Header[name], second)
			if _, ok := dl.describe(r, &described{}); ok {
				t.Fatalf("%s accepted %s twice: %q", dl.name, name, r.Header[name])
			}
		}

		// /nginx never reads a client's X-Original-URL, whatever it says.
		r := httptest.NewRequest("GET", "/", nil)
		set(r)
		if _, ok := nginx.describe(r, &described{}); ok {
			t.Fatalf("nginx accepted a request carrying X-Original-URL %q", url)
		}
		// /ingress-nginx accepts X-Original-URI only when it says the same.
		d := &described{}
		if _, ok := ingressNginx.describe(r, d); ok && uri != d.req.RequestURI {
			t.Fatalf("ingress-nginx accepted X-Original-URI %q with X-Original-URL %q", uri, url)
		}
	})
}

// FuzzDescribeEnvoy: whatever follows the /envoy prefix, the described
// request-target is origin-form and the query is the target's.
func FuzzDescribeEnvoy(f *testing.F) {
	f.Add("/api1/a%2Fb/../c?x=%2F&y")
	f.Add("?q=1")
	f.Add("")
	f.Add("x/y")
	f.Fuzz(func(t *testing.T, rest string) {
		target := envoyPrefix + rest
		if !isEnvoyTarget(target) {
			return
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = target
		d := &described{}
		if _, ok := describeEnvoy(r, d); !ok {
			return
		}
		checkDescribed(t, "envoy-http", d)
		if _, query, ok := strings.Cut(d.req.RequestURI, "?"); ok && d.url.RawQuery != query {
			t.Fatalf("query %q of target %q", d.url.RawQuery, d.req.RequestURI)
		}
	})
}

// FuzzDescribeCheck: Envoy's gRPC CheckRequest attributes and headers (map
// or header_map with raw values) never panic the conversion, and what is
// accepted has a method and a path starting with '/'; pseudo-headers never
// become headers.
func FuzzDescribeCheck(f *testing.F) {
	f.Add("GET", "/api1/x?y", "gw.test", "https", "authorization", "Bearer x", []byte(nil), true)
	f.Add("", "", "", "", ":path", "/open", []byte("raw"), false)
	f.Add("DELETE", "*", "h", "ftp", "x-forwarded-uri", "/open", []byte{0xff}, true)
	f.Fuzz(func(t *testing.T, method, path, host, scheme, key, value string, raw []byte, useMap bool) {
		hr := &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: host, Scheme: scheme}
		if useMap {
			hr.Headers = map[string]string{key: value, ":authority": host}
		} else {
			hr.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: key, Value: value, RawValue: raw},
				{Key: key, Value: value},
				{Key: ":path", Value: "/open"},
			}}
		}
		h := envoyHeaders(hr)
		for k := range h {
			if strings.HasPrefix(k, ":") {
				t.Fatalf("pseudo-header %q became a header", k)
			}
		}
		d := &described{}
		if _, ok := describeCheck(hr, h, d); ok {
			checkDescribed(t, "envoy-grpc", d)
		} else if method != "" && strings.HasPrefix(path, "/") {
			t.Fatalf("refused method %q path %q", method, path)
		}
		if _, ok := describeCheck(nil, h, &described{}); ok {
			t.Fatal("accepted a check request without HTTP attributes")
		}
	})
}
