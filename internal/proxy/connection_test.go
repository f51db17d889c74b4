package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

// TestConnectionCannotRemoveSekishoHeaders: the headers the pool sets (the
// forwarding headers, the request id, and the identity headers the gateway
// recorded in the request info) are set after hop-by-hop removal, so a
// client naming them in Connection does not remove them.
func TestConnectionCannotRemoveSekishoHeaders(t *testing.T) {
	up := dumping(t)
	p := newPool(t, backends(t, up.URL), Options{})
	srv := gateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := reqinfo.From(r.Context())
		info.Identity.Set("X-Forwarded-User", "alice")
		info.Identity.Set("X-Sekisho-Assertion", "signed")
		p.ServeHTTP(w, r)
	}))
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /x HTTP/1.1\r\nHost: app.example.com\r\n"+
		"Connection: X-Forwarded-User, X-Sekisho-Assertion, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id\r\n"+
		"X-Sekisho-Assertion: forged\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := decodeSeen(t, body).Headers
	for k, v := range map[string]string{
		"X-Forwarded-User": "alice", "X-Sekisho-Assertion": "signed", "X-Forwarded-For": "127.0.0.1",
		"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Request-Id": testID,
	} {
		if g := got.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("upstream received %s = %q, want %q", k, g, v)
		}
	}
}
