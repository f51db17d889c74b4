package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/testutil"
)

// TestBrokenRequestBodyIsClientError: when reading the client's body fails
// while forwarding it, the pool answers 400, logs at info and reports no
// upstream error, where an upstream failure is 502 and counted.
func TestBrokenRequestBodyIsClientError(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	errs := &errorRecorder{}
	up := named(t, "up")
	p := newPool(t, backends(t, up.URL), Options{
		Logger:          slog.New(slog.NewJSONHandler(logs, nil)),
		OnUpstreamError: errs.hook,
		Timeout:         5 * time.Second,
	})
	gw := gateway(t, p)

	conn, err := net.Dial("tcp", gw.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	raw := "POST /x HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3\r\nabc\r\nnot-hex\r\n"
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
	}
	if got := errs.get(); len(got) != 0 {
		t.Errorf("upstream errors reported: %q", got)
	}
	l := logs.String()
	if strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, `"level":"INFO","msg":"request body could not be read"`) {
		t.Errorf("logs:\n%s", l)
	}
	if !strings.Contains(l, testID) {
		t.Errorf("the log line does not carry the request id:\n%s", l)
	}
}

// BenchmarkProxyWithBody forwards a small POST body: the body wrapper that
// tells client from upstream errors lives in the request's reqinfo.Info,
// so it adds no allocation.
func BenchmarkProxyWithBody(b *testing.B) {
	p := benchPool(b)
	payload := []byte(`{"name":"bench"}`)
	r := httptest.NewRequest(http.MethodPost, "http://app.example.com/bench", nil)
	r = r.WithContext(reqinfo.With(context.Background(), testInfo(r)))
	w := &discardWriter{h: http.Header{}}
	body := &rewindable{}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		body.Reset(payload)
		r.Body, r.ContentLength = body, int64(len(payload))
		p.ServeHTTP(w, r)
	}
}

// rewindable is a request body reused across benchmark iterations.
type rewindable struct{ bytes.Reader }

func (*rewindable) Close() error { return nil }
