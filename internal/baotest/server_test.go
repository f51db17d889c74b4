package baotest

import (
	"errors"
	"net/http"
	"testing"

	bao "github.com/openbao/openbao/api/v2"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestServer: a dev server answers on loopback with KV v2 at secret/;
// writes make versions; a read token reads its path only; a revoked one
// nothing; Stop ends the process and its port.
func TestServer(t *testing.T) {
	s := Start(t)
	if v := s.Put(t, KVMount, "app", map[string]any{"k": "one"}); v != 1 {
		t.Fatalf("first version %d", v)
	}
	if v := s.Put(t, KVMount, "app", map[string]any{"k": "two"}); v != 2 {
		t.Fatalf("second version %d", v)
	}
	s.Put(t, KVMount, "other", map[string]any{"k": "x"})
	tok := s.ReadToken(t, KVMount, "app")
	c, err := s.Client(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	old, err := c.KVv2(KVMount).GetVersion(t.Context(), "app", 1)
	if err != nil || old.Data["k"] != "one" {
		t.Fatalf("version 1: %v, %v", old, err)
	}
	if _, err := c.KVv2(KVMount).Get(t.Context(), "other"); status(err) != http.StatusForbidden {
		t.Fatalf("other path: %v; want 403", err)
	}
	s.Revoke(t, tok.Accessor)
	if _, err := c.KVv2(KVMount).Get(t.Context(), "app"); status(err) != http.StatusForbidden {
		t.Fatalf("revoked token: %v; want 403", err)
	}
	pid := s.proc.Pid()
	s.Stop()
	if testutil.Running(pid) {
		t.Error("bao still runs after Stop")
	}
	if _, err := s.Root.Sys().Health(); err == nil {
		t.Error("the server still answers after Stop")
	}
}

func status(err error) int {
	var re *bao.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
