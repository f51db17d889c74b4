package listen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

// shortPark makes connections park after 50ms for the test's length.
func shortPark(t *testing.T) {
	t.Helper()
	old := parkAfter
	parkAfter = 50 * time.Millisecond
	t.Cleanup(func() { parkAfter = old })
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, what, cond)
}

// parkedServer starts a plain listener that parks connections idle for a
// moment, serving echoPath, and dials it; the connection is closed when
// the test ends.
func parkedServer(t *testing.T) (*Server, net.Conn) {
	t.Helper()
	shortPark(t)
	s := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(echoPath))
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn
}

func echoPath(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
}

// get sends one request on conn and returns the response body.
func get(t *testing.T, conn net.Conn, br *bufio.Reader, path string) string {
	t.Helper()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	return readBody(t, br)
}

func readBody(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIdleConnectionParksAndServesAgain: an idle keep-alive connection is
// taken from net/http (its goroutine ends) and its next requests, plain
// or with a body, are answered on the same connection.
func TestIdleConnectionParksAndServesAgain(t *testing.T) {
	s, conn := parkedServer(t)
	br := bufio.NewReader(conn)
	for i := range 3 {
		if got := get(t, conn, br, fmt.Sprint("/", i)); got != fmt.Sprintf("GET /%d ", i) {
			t.Fatalf("request %d: %q", i, got)
		}
		waitFor(t, "parked", func() bool { return s.park.parkedNow() == 1 })
	}
	if _, err := io.WriteString(conn, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, br); got != "POST /b hello" {
		t.Fatalf("after parking: %q", got)
	}
	if n := s.park.parks.Load(); n != 3 {
		t.Errorf("parked %d times, want 3", n)
	}
}

// TestParkingFreesTheConnectionGoroutine: 200 parked connections hold no
// net/http goroutine (each holds one small one of its own).
func TestParkingFreesTheConnectionGoroutine(t *testing.T) {
	shortPark(t)
	s := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(ok))
	before := runtime.NumGoroutine()
	const n = 200
	for range n {
		conn, err := net.Dial("tcp", s.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		get(t, conn, bufio.NewReader(conn), "/")
	}
	waitFor(t, "all parked", func() bool { return s.park.parkedNow() == n })
	var buf [1 << 20]byte
	stacks := string(buf[:runtime.Stack(buf[:], true)])
	if c := strings.Count(stacks, "net/http.(*conn).serve"); c != 0 {
		t.Errorf("%d net/http connection goroutines remain for parked connections", c)
	}
	if g := runtime.NumGoroutine() - before; g > n+5 {
		t.Errorf("%d goroutines for %d parked connections", g, n)
	}
}

// TestPipelinedRequestsAreNotLost: a request sent in the same packet as
// the previous one is buffered inside net/http; that connection must not
// be parked (it would lose it).
func TestPipelinedRequestsAreNotLost(t *testing.T) {
	_, conn := parkedServer(t)
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGE"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GET /1 ", "GET /2 "} {
		if got := readBody(t, br); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	time.Sleep(3 * parkAfter) // the time it would take to park; nothing to poll for
	if _, err := io.WriteString(conn, "T /3 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, br); got != "GET /3 " {
		t.Fatalf("the third, split request: %q", got)
	}
}

// TestParkedConnectionIdleTimeout: a parked connection is still closed at
// the idle timeout.
func TestParkedConnectionIdleTimeout(t *testing.T) {
	shortPark(t)
	s := start(t, Config{HTTP: "127.0.0.1:0", IdleTimeout: 500 * time.Millisecond}, http.HandlerFunc(ok))
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	get(t, conn, bufio.NewReader(conn), "/")
	waitFor(t, "parked", func() bool { return s.park.parkedNow() == 1 })
	start := time.Now()
	readUntilClosed(t, conn, 3*time.Second)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed %v after parking, before the idle timeout", d)
	}
	waitFor(t, "unparked", func() bool { return s.park.parkedNow() == 0 })
}

// TestShutdownClosesParkedConnections: draining does not wait for parked
// connections, and closes them.
func TestShutdownClosesParkedConnections(t *testing.T) {
	shortPark(t)
	s := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(ok))
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	get(t, conn, bufio.NewReader(conn), "/")
	waitFor(t, "parked", func() bool { return s.park.parkedNow() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	readUntilClosed(t, conn, 3*time.Second)
}

// TestH2CConnectionsDoNotPark: an HTTP/2 prior-knowledge connection stays
// with net/http's HTTP/2 server however long it is idle.
func TestH2CConnectionsDoNotPark(t *testing.T) {
	shortPark(t)
	s := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(echoPath))
	client := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	defer client.CloseIdleConnections()
	for i := range 2 {
		resp, err := client.Get("http://" + s.HTTPAddr() + "/h2")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("request %d: %s, want HTTP/2", i, resp.Proto)
		}
		time.Sleep(3 * parkAfter) // the time it would take to park; nothing to poll for
		if n := s.park.parks.Load(); n != 0 {
			t.Fatalf("an HTTP/2 connection was parked")
		}
	}
}

func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

// TestHijackedConnectionsDoNotPark: a connection a handler took over (a
// WebSocket) is the handler's, however long it is quiet.
func TestHijackedConnectionsDoNotPark(t *testing.T) {
	shortPark(t)
	s := start(t, Config{HTTP: "127.0.0.1:0"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(conn, brw) // echo until the client closes
	}))
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for i := range 2 {
		time.Sleep(3 * parkAfter) // the time it would take to park; nothing to poll for
		msg := fmt.Sprint("ping", i)
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	if n := s.park.parks.Load(); n != 0 {
		t.Errorf("a hijacked connection was parked %d times", n)
	}
}
