package httperr

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

func TestWantsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                  false,
		"application/json":                  true,
		"text/html,application/xhtml+xml":   false,
		"application/json, text/html":       true,
		"text/html;q=0.9, application/json": false,
		"*/*":                               false,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", accept)
		if got := WantsJSON(r); got != want {
			t.Errorf("WantsJSON(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestWrite(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(reqinfo.With(r.Context(), &reqinfo.Info{ID: "rid-1", Route: "api<1>"}))

	rec := httptest.NewRecorder()
	WriteActions(rec, r, 403, "No <b>entry</b>.", Action{Label: "Sign out", URL: "/.sekisho/sign_out", Method: "POST"})
	body := rec.Body.String()
	if rec.Code != 403 || rec.Header().Get("Cache-Control") != "no-store" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("HTML answer: %d %v", rec.Code, rec.Header())
	}
	for _, want := range []string{"api&lt;1&gt;", "rid-1", "No &lt;b&gt;entry&lt;/b&gt;.", `<form method="post" action="/.sekisho/sign_out">`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q (escaped):\n%s", want, body)
		}
	}

	rec = httptest.NewRecorder()
	r.Header.Set("Accept", "application/json")
	Write(rec, r, 502, "Upstream unavailable.")
	var b Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Status != 502 || b.Route != "api<1>" || b.RequestID != "rid-1" || b.Error != "Bad Gateway" {
		t.Fatalf("JSON answer: %v %+v", err, b)
	}

	rec = httptest.NewRecorder()
	Write(rec, httptest.NewRequest("HEAD", "/", nil), 404, "x")
	if rec.Code != 404 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d body bytes", rec.Code, rec.Body.Len())
	}
}
