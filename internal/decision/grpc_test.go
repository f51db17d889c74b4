package decision

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

func TestGRPCAllow(t *testing.T) {
	f := newFixture(t, Config{}, "credentials: {cookie: sekisho_token}")
	headers := map[string]string{
		":authority":          "gw.test",
		":path":               "/api1/x",
		":method":             "GET",
		"authorization":       "Bearer " + f.tokens.admin,
		"x-forwarded-user":    "mallory",
		"x-forwarded_email":   "mallory@example.com",
		"x-sekisho-assertion": "forged",
		"x-request-id":        "envoy-request-1",
		"user-agent":          "curl/8",
	}
	resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/api1/x", headers))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("denied: %v", resp)
	}
	ok := resp.GetOkResponse()
	for name, want := range map[string]string{"x-forwarded-user": "alice@example.com", "x-forwarded-email": "alice@example.com", "x-forwarded-groups": "admin,dev"} {
		if got, _ := headerOf(ok.GetHeaders(), name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s would be appended to the client's value", h.GetHeader().GetKey())
		}
	}
	remove := slices.Sorted(slices.Values(ok.GetHeadersToRemove()))
	if want := []string{"authorization", "x-forwarded_email", "x-http-method", "x-http-method-override", "x-method-override", "x-sekisho-assertion"}; !slices.Equal(remove, want) {
		t.Errorf("headers_to_remove = %q, want %q", remove, want)
	}

	t.Run("raw header map (encode_raw_headers)", func(t *testing.T) {
		req := envoyCheck("GET", "gw.test", "/api1/x", nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/api1/x")},
			{Key: "authorization", RawValue: []byte("Bearer " + f.tokens.admin)},
		}}
		resp, err := f.grpc.Check(t.Context(), req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("a credential cookie is dropped, the others kept", func(t *testing.T) {
		req := envoyCheck("GET", "gw.test", "/api1/x", map[string]string{"cookie": "theme=dark; sekisho_token=" + f.tokens.admin})
		resp, err := f.grpc.Check(t.Context(), req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("%v %v", resp, err)
		}
		if got, _ := headerOf(resp.GetOkResponse().GetHeaders(), "cookie"); got != "theme=dark" {
			t.Errorf("cookie rewritten to %q", got)
		}
	})
	t.Run("a route that passes credentials keeps them", func(t *testing.T) {
		resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/pass/x", map[string]string{"authorization": "Bearer " + f.tokens.admin}))
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("%v %v", resp, err)
		}
		if slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
			t.Error("the credential is removed although the route passes it")
		}
	})
	t.Run("the source address is the client", func(t *testing.T) {
		resp, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/office/x", map[string]string{"authorization": "Bearer " + f.tokens.admin}))
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("policy on request.client_ip did not see the source address: %v %v", resp, err)
		}
	})
}

func TestGRPCDeny(t *testing.T) {
	f := newFixture(t, Config{}, "")
	tests := []struct {
		name      string
		req       *authv3.CheckRequest
		code      codes.Code
		status    int
		challenge string
		route     string
	}{
		{"no credentials", envoyCheck("GET", "gw.test", "/api1/x", map[string]string{"x-request-id": "rid-7"}),
			codes.Unauthenticated, 401, `Bearer realm="sekisho"`, "api1"},
		{"not allowed", envoyCheck("GET", "gw.test", "/api1/x", map[string]string{"x-request-id": "rid-7", "authorization": "Bearer " + f.tokens.ops}),
			codes.PermissionDenied, 403, `Bearer realm="sekisho", error="insufficient_scope"`, "api1"},
		{"bad path", envoyCheck("GET", "gw.test", "/api1/../../x", map[string]string{"x-request-id": "rid-7"}),
			codes.InvalidArgument, 400, "", ""},
		{"no route", envoyCheck("GET", "gw.test", "/nope", map[string]string{"x-request-id": "rid-7"}),
			codes.NotFound, 404, "", ""},
		{"no HTTP attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}},
			codes.InvalidArgument, 400, "", ""},
		{"a path that is not a path", envoyCheck("GET", "gw.test", "http://gw.test/api1/x", map[string]string{"x-request-id": "rid-7"}),
			codes.InvalidArgument, 400, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.grpc.Check(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tt.code {
				t.Errorf("code %v, want %v", got, tt.code)
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != tt.status {
				t.Fatalf("status %v, want %d", d.GetStatus(), tt.status)
			}
			if got, _ := headerOf(d.GetHeaders(), "www-authenticate"); got != tt.challenge {
				t.Errorf("www-authenticate %q, want %q", got, tt.challenge)
			}
			var b struct {
				Status    int    `json:"status"`
				Route     string `json:"route"`
				RequestID string `json:"request_id"`
				Message   string `json:"message"`
			}
			if err := json.Unmarshal([]byte(d.GetBody()), &b); err != nil || b.Status != tt.status || b.Route != tt.route || b.Message == "" {
				t.Errorf("body %q: %v", d.GetBody(), err)
			}
			if rid := tt.req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]; rid != "" && b.RequestID != rid {
				t.Errorf("request id %q, want Envoy's %q", b.RequestID, rid)
			}
		})
	}
}

// TestGRPCConnectionNamesIdentity: a Connection header naming a header
// sekisho sets is refused over gRPC as over HTTP.
func TestGRPCConnectionNamesIdentity(t *testing.T) {
	f := newFixture(t, Config{}, "")
	check, err := f.grpc.Check(t.Context(), envoyCheck("GET", "gw.test", "/api1/x",
		map[string]string{"authorization": "Bearer " + f.tokens.admin, "connection": "keep-alive, X-Forwarded-Groups"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := check.GetDeniedResponse().GetStatus().GetCode(); got != http.StatusBadRequest ||
		!strings.Contains(check.GetDeniedResponse().GetBody(), "Connection header names X-Forwarded-Groups") {
		t.Errorf("got %v, want a 400 naming the header", check)
	}
}
