package listen

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRedirectToHTTPS(t *testing.T) {
	tests := []struct {
		name, port, req string
		wantStatus      int
		wantLocation    string
	}{
		{"default port omitted", "443", "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", 301, "https://example.com/p?q=1"},
		{"other port kept", "8443", "GET /p HTTP/1.1\r\nHost: example.com:80\r\n\r\n", 301, "https://example.com:8443/p"},
		{"escaped path and raw query verbatim", "443", "GET /a%2Fb/%61?x=1&y=%20&z HTTP/1.1\r\nHost: example.com\r\n\r\n", 301, "https://example.com/a%2Fb/%61?x=1&y=%20&z"},
		{"scheme-relative target stays on our host", "443", "GET //evil.example/x HTTP/1.1\r\nHost: example.com\r\n\r\n", 301, "https://example.com//evil.example/x"},
		{"absolute-form target uses validated host", "443", "GET http://Other.Example/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n", 301, "https://other.example/x?y"},
		{"host lower-cased, trailing dot dropped", "443", "GET / HTTP/1.1\r\nHost: WWW.Example.com.\r\n\r\n", 301, "https://www.example.com/"},
		{"IPv6 with port", "8443", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 301, "https://[::1]:8443/"},
		{"IPv6 default port", "443", "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", 301, "https://[::1]/"},
		{"asterisk target", "443", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", 308, "https://example.com/*"},
		{"empty label", "443", "GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", 400, ""},
		{"bad port", "443", "GET / HTTP/1.1\r\nHost: example.com:99999\r\n\r\n", 400, ""},
		{"userinfo", "443", "GET / HTTP/1.1\r\nHost: evil@example.com\r\n\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.req)))
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			redirectToHTTPS(tt.port).ServeHTTP(w, r)
			if w.Code != tt.wantStatus || w.Header().Get("Location") != tt.wantLocation {
				t.Fatalf("got %d Location %q, want %d %q", w.Code, w.Header().Get("Location"), tt.wantStatus, tt.wantLocation)
			}
			if tt.wantStatus == http.StatusBadRequest && !strings.Contains(w.Body.String(), "invalid Host header") {
				t.Fatalf("400 body %q does not say why", w.Body.String())
			}
		})
	}
}
