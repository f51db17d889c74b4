package echo_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/echo"
)

func roundTrip(t *testing.T, req *http.Request) (*http.Response, echo.Request) {
	t.Helper()
	resp, err := echo.Transport{}.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Body.Close()
	var got echo.Request
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return resp, got
}

func TestTransportDescribesRequest(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "http://app.example.com/a%2Fb/c%20d?x=1;y=%zz", strings.NewReader("body"))
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")

	resp, got := roundTrip(t, req)

	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("status %d, content type %q; want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	want := echo.Request{Method: "POST", Host: "app.example.com", Path: "/a%2Fb/c%20d", Query: "x=1;y=%zz"}
	if got.Method != want.Method || got.Host != want.Host || got.Path != want.Path || got.Query != want.Query {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if v := got.Headers["X-Multi"]; len(v) != 2 || v[0] != "one" || v[1] != "two" {
		t.Errorf("X-Multi = %q, want [one two]", v)
	}
}

func TestTransportHostFallsBackToURL(t *testing.T) {
	req, err := http.NewRequest(http.MethodGet, "http://upstream:8080/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = ""
	_, got := roundTrip(t, req)
	if got.Host != "upstream:8080" {
		t.Errorf("host = %q, want upstream:8080", got.Host)
	}
}

func TestTransportRedactsCredentials(t *testing.T) {
	const secret = "s3cr3t-value"
	tests := []struct{ name, header string }{
		{"authorization", "Authorization"},
		{"proxy authorization", "Proxy-Authorization"},
		{"cookie", "Cookie"},
		{"non-canonical key", "authorization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header[tt.header] = []string{"Bearer " + secret, secret}
			req.Header.Set("X-Visible", "kept")

			resp, err := echo.Transport{}.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), secret) {
				t.Fatalf("secret leaked in %s", raw)
			}
			var got echo.Request
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if v := got.Headers[tt.header]; len(v) != 2 || v[0] != "[redacted]" || v[1] != "[redacted]" {
				t.Errorf("%s = %q, want two [redacted]", tt.header, v)
			}
			if got.Headers.Get("X-Visible") != "kept" {
				t.Errorf("X-Visible = %q, want kept", got.Headers.Get("X-Visible"))
			}
			if req.Header[tt.header][1] != secret {
				t.Error("RoundTrip modified the caller's request headers")
			}
		})
	}
}
