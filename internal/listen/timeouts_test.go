package listen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readUntilClosed reads conn until the server closes it and fails if that
// takes longer than within; it returns what was read.
func readUntilClosed(t *testing.T, conn net.Conn, within time.Duration) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestSlowHeadersAreCut(t *testing.T) {
	// The client's patience (3s) is shorter than the default (10s), so the
	// test fails if the configured timeout is not applied.
	s := start(t, Config{HTTP: "127.0.0.1:0", ReadHeaderTimeout: 300 * time.Millisecond}, http.HandlerFunc(ok))

	slow, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET / HT"); err != nil {
		t.Fatal(err)
	}

	// Other clients are served while the slow one stalls.
	resp, err := http.Get("http://" + s.HTTPAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d while a slow client stalls", resp.StatusCode)
	}

	start := time.Now()
	if got := readUntilClosed(t, slow, 3*time.Second); strings.Contains(got, "200 OK") {
		t.Fatalf("slow client got an answer: %q", got)
	}
	t.Logf("slow client cut after %v", time.Since(start))
}

func TestIdleKeepAliveIsClosed(t *testing.T) {
	s := start(t, Config{HTTP: "127.0.0.1:0", IdleTimeout: 200 * time.Millisecond}, http.HandlerFunc(ok))
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := readUntilClosed(t, conn, 3*time.Second); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("got %q, want a 200 then close", got)
	}
}

func TestHugeHeadersGet431(t *testing.T) {
	s := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(ok))
	tests := []struct {
		name string
		size int
		want int
	}{
		{"within default limit", 32 << 10, http.StatusOK},
		{"100 KiB", 100 << 10, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bigHeaderStatus(t, s.HTTPAddr(), tt.size); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
}

// TestMaxHeaderBytesSlack: net/http lets the request line and headers take
// max_header_bytes plus 4096 bytes before answering 431, as docs/config.md
// says; HTTP2HeaderListSize pads the HTTP/2 limit the way net/http does.
func TestMaxHeaderBytesSlack(t *testing.T) {
	const limit = 8 << 10
	s := start(t, Config{HTTP: "127.0.0.1:0", MaxHeaderBytes: limit}, http.HandlerFunc(ok))
	for _, tt := range []struct {
		name string
		size int
		want int
	}{
		{"within the value", limit / 2, http.StatusOK},
		{"over the value, within the slack", limit + 3000, http.StatusOK},
		{"over the value and the slack", limit + 5000, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := bigHeaderStatus(t, s.HTTPAddr(), tt.size); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
	if got, want := HTTP2HeaderListSize(limit), uint32(limit+320); got != want {
		t.Errorf("HTTP2HeaderListSize(%d) = %d, want %d", limit, got, want)
	}
	if got, want := HTTP2HeaderListSize(0), uint32(DefaultMaxHeaderBytes+320); got != want {
		t.Errorf("HTTP2HeaderListSize(0) = %d, want %d", got, want)
	}
}

// bigHeaderStatus sends a GET to addr with one header of size bytes and
// returns the status.
func bigHeaderStatus(t *testing.T, addr string, size int) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", size))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
