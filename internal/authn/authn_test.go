package authn

import (
	"net/http/httptest"
	"testing"
)

func TestRemoveSessionCookies(t *testing.T) {
	c := &Chain{SessionCookie: "_sekisho", Cookie: "access_token"}
	tests := []struct {
		name string
		in   []string
		want []string // nil: no Cookie header left
	}{
		{"only chunks", []string{"_sekisho=a; _sekisho_1=b"}, nil},
		{"others kept in order", []string{"theme=dark; _sekisho=a;lang=ja ; _sekisho_1=b; _sekisho_x=keep"}, []string{"theme=dark; lang=ja; _sekisho_x=keep"}},
		{"lookalikes kept", []string{"_sekisho_=1; x_sekisho=2; _sekisho_1a=3"}, []string{"_sekisho_=1; x_sekisho=2; _sekisho_1a=3"}},
		{"several header lines", []string{"_sekisho=a", "b=2"}, []string{"b=2"}},
		{"no session cookie", []string{"a=1; b=2"}, []string{"a=1; b=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header["Cookie"] = append([]string(nil), tt.in...)
			c.RemoveSessionCookies(r)
			got := r.Header["Cookie"]
			if len(got) != len(tt.want) {
				t.Fatalf("Cookie = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("Cookie = %q, want %q", got, tt.want)
				}
			}
		})
	}
	// The token cookie is removed only when it was the credential used.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "access_token=t; keep=1")
	c.RemoveCredential(r, SourceCookie)
	if got := r.Header.Get("Cookie"); got != "keep=1" {
		t.Errorf("after removing the token cookie: %q", got)
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
