package listen

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestService: a Service serves its handler on the bound address, names
// itself in a bind error, and stops on Shutdown.
func TestService(t *testing.T) {
	s := &Service{Name: "test hook", Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.BoundAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	taken := &Service{Name: "second hook", Addr: s.BoundAddr(), Handler: http.NotFoundHandler()}
	if err := taken.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "second hook listener "+s.BoundAddr()) {
		t.Errorf("bind error %v, want one naming the listener and address", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.BoundAddr() + "/"); err == nil {
		t.Error("still serving after Shutdown")
	}
}
