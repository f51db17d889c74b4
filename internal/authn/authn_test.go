package authn

import (
	"net/http/httptest"
	"slices"
	"testing"
)

func TestUpstreamCookies(t *testing.T) {
	c := &Chain{SessionCookie: "_sekisho", Cookie: "access_token"}
	tests := []struct {
		name     string
		in       []string
		consumed Source
		want     []string // nil: no Cookie header left
		changed  bool
	}{
		{"only chunks", []string{"_sekisho=a; _sekisho_1=b"}, SourceNone, nil, true},
		{"others kept in order", []string{"theme=dark; _sekisho=a;lang=ja ; _sekisho_1=b; _sekisho_x=keep"}, SourceNone, []string{"theme=dark; lang=ja; _sekisho_x=keep"}, true},
		{"lookalikes kept", []string{"_sekisho_=1; x_sekisho=2; _sekisho_1a=3"}, SourceNone, []string{"_sekisho_=1; x_sekisho=2; _sekisho_1a=3"}, false},
		{"several header lines", []string{"_sekisho=a", "b=2"}, SourceNone, []string{"b=2"}, true},
		{"no session cookie", []string{"a=1; b=2"}, SourceNone, []string{"a=1; b=2"}, false},
		{"spacing kept when nothing is dropped", []string{"a=1;b=2"}, SourceNone, []string{"a=1;b=2"}, false},
		// The token cookie is removed only when it was the credential used.
		{"token cookie consumed", []string{"access_token=t; keep=1"}, SourceCookie, []string{"keep=1"}, true},
		{"token cookie not consumed", []string{"access_token=t; keep=1"}, SourceAuthorization, []string{"access_token=t; keep=1"}, false},
		{"token and session cookies", []string{"access_token=t; _sekisho=a", "keep=1; _sekisho_1=b"}, SourceCookie, []string{"keep=1"}, true},
		{"no Cookie header", nil, SourceCookie, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]string(nil), tt.in...)
			got, changed := c.UpstreamCookies(in, tt.consumed)
			if changed != tt.changed || !slices.Equal(got, tt.want) {
				t.Fatalf("UpstreamCookies = %q, %v; want %q, %v", got, changed, tt.want, tt.changed)
			}
			if !slices.Equal(in, tt.in) {
				t.Fatalf("the request's lines were changed to %q", in)
			}
		})
	}
}

func TestCredentialHeader(t *testing.T) {
	c := &Chain{Header: "x-api-key", Cookie: "access_token"}
	for src, want := range map[Source]string{
		SourceAuthorization: "Authorization",
		SourceHeader:        "X-Api-Key", // the request's map key
		SourceCookie:        "",
		SourceSession:       "",
		SourceNone:          "",
	} {
		if got := c.CredentialHeader(src); got != want {
			t.Errorf("CredentialHeader(%v) = %q, want %q", src, got, want)
		}
	}
}

func TestCredential(t *testing.T) {
	c := &Chain{Header: "X-Api-Key", Cookie: "access_token"}
	tests := []struct {
		name    string
		headers map[string]string
		token   string
		src     Source
	}{
		{"bearer", map[string]string{"Authorization": "Bearer abc"}, "abc", SourceAuthorization},
		{"bearer case", map[string]string{"Authorization": "BEARER abc"}, "abc", SourceAuthorization},
		{"basic is not a credential", map[string]string{"Authorization": "Basic abc"}, "", SourceNone},
		{"header", map[string]string{"X-Api-Key": "k"}, "k", SourceHeader},
		{"cookie", map[string]string{"Cookie": "access_token=c"}, "c", SourceCookie},
		{"bearer wins", map[string]string{"Authorization": "Bearer a", "X-Api-Key": "k"}, "a", SourceAuthorization},
		{"none", nil, "", SourceNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			tok, src := c.Credential(r)
			if tok != tt.token || src != tt.src {
				t.Errorf("Credential = %q %v, want %q %v", tok, src, tt.token, tt.src)
			}
		})
	}
}
