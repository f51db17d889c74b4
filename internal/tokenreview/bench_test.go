package tokenreview

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkReview is one review of a cached JWT through the handler, in
// process: decode, the verified-token cache, the mapping rules, encode and
// the JSON log line.
func BenchmarkReview(b *testing.B) {
	f := start(b, "")
	f.srv.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	body := reviewBody(b, V1, f.env.Token("cognito:groups", []string{"admin"}))
	h := f.srv.Handler()
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, Path, rd)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		h.ServeHTTP(w, req)
	}
	if !bytes.Contains(w.last, []byte(`"authenticated":true`)) {
		b.Fatalf("answer: %s", w.last)
	}
}

type discardWriter struct {
	h    http.Header
	last []byte
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.last = append(w.last[:0], p...)
	return len(p), nil
}

// BenchmarkReviewLoopback is what kube-apiserver sees: reviews of cached
// tokens over HTTPS with a client certificate on loopback, from 8
// keep-alive connections. It reports the throughput and the 99th
// percentile latency.
func BenchmarkReviewLoopback(b *testing.B) {
	f, ca, _ := tlsFixture(b)
	f.srv.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	client := ca.Client(b, "kube-apiserver")
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}},
		MaxIdleConnsPerHost: 64,
	}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	tokens := [][]byte{
		reviewBody(b, V1, f.env.Token("cognito:groups", []string{"admin"})),
		reviewBody(b, V1, apiToken),
	}
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(4) // 4 × GOMAXPROCS clients
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		i := 0
		for pb.Next() {
			i++
			t0 := time.Now()
			resp, err := hc.Post(f.url, "application/json", bytes.NewReader(tokens[i%len(tokens)]))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
		mu.Lock()
		all = append(all, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "reviews/s")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
