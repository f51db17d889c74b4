package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("sekisho_up 1\n")) })
	h := Handler(Options{Ready: ready.Load, Metrics: metrics})
	get := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if c, _ := get(h, "/healthz"); c != 200 {
		t.Errorf("/healthz = %d", c)
	}
	if c, _ := get(h, "/readyz"); c != 503 {
		t.Errorf("/readyz before ready = %d, want 503", c)
	}
	ready.Store(true)
	if c, _ := get(h, "/readyz"); c != 200 {
		t.Errorf("/readyz when ready = %d", c)
	}
	if c, b := get(h, "/metrics"); c != 200 || !strings.Contains(b, "sekisho_up") {
		t.Errorf("/metrics = %d %q", c, b)
	}
	if c, _ := get(h, "/debug/pprof/"); c != 404 {
		t.Errorf("pprof without the flag = %d, want 404", c)
	}
	if c, _ := get(Handler(Options{Pprof: true}), "/debug/pprof/"); c != 200 {
		t.Errorf("pprof with the flag = %d, want 200", c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", rec.Code)
	}
}
