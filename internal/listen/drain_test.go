package listen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// blockingHandler signals entered when a request arrives and holds it until
// release is closed or the request is cut.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	cut     chan struct{}
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}, 1), release: make(chan struct{}), cut: make(chan struct{}, 1)}
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.entered <- struct{}{}
	select {
	case <-h.release:
		_, _ = io.WriteString(w, "done")
	case <-r.Context().Done():
		h.cut <- struct{}{}
	}
}

type result struct {
	status int
	body   string
	err    error
}

func getAsync(url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		// A fresh transport: the request must not reuse a pooled connection.
		c := &http.Client{Transport: &http.Transport{}}
		resp, err := c.Get(url)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

// waitRefused polls until the listener is closed (dials are refused).
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections during shutdown", addr)
		}
		time.Sleep(10 * time.Millisecond) // polling the kernel's listener state
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	h := newBlockingHandler()
	s, err := Start(context.Background(), Config{HTTP: "127.0.0.1:0", Logger: discardLogger()}, h)
	if err != nil {
		t.Fatal(err)
	}
	got := getAsync("http://" + s.HTTPAddr() + "/")
	<-h.entered

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()

	waitRefused(t, s.HTTPAddr())
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}

	close(h.release)
	r := <-got
	if r.err != nil || r.status != http.StatusOK || r.body != "done" {
		t.Fatalf("in-flight request: %+v, want 200 done", r)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// A second call is harmless and reports the same outcome.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCutsRequest(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := tlsFiles(t, ca, 1)
	h := newBlockingHandler()
	s, err := Start(context.Background(), Config{HTTPS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Logger: discardLogger()}, h)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		resp, err := httpsClient(ca.pool).Get("https://" + s.HTTPSAddr() + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		got <- err
	}()
	<-h.entered

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	waitRefused(t, s.HTTPSAddr())
	cancel() // the drain deadline passes with the request still running

	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	<-h.cut
	if err := <-got; err == nil {
		t.Fatal("request past the drain deadline completed, want it cut")
	}
}

func TestServeFailureIsReported(t *testing.T) {
	s := &Server{log: discardLogger(), errc: make(chan error, 2)}
	s.serve(func() error { return http.ErrServerClosed })
	select {
	case err := <-s.Err():
		t.Fatalf("orderly close reported as failure: %v", err)
	default:
	}
	boom := errors.New("accept: too many open files")
	s.serve(func() error { return boom })
	if err := <-s.Err(); !errors.Is(err, boom) {
		t.Fatalf("Err() = %v, want %v", err, boom)
	}
}
