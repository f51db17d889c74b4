package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    []uint8
	}{
		{"equal weights are round-robin", []int{1, 1, 1}, []uint8{0, 1, 2}},
		{"nginx smooth example", []int{5, 1, 1}, []uint8{0, 0, 1, 0, 2, 0, 0}},
		{"reduced by gcd", []int{90, 10}, []uint8{0, 0, 0, 0, 0, 1, 0, 0, 0, 0}},
		{"zero weight never scheduled", []int{2, 0, 2}, []uint8{0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schedule(tt.weights)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("schedule(%v) = %v, want %v", tt.weights, got, tt.want)
			}
		})
	}
}

func TestWeightedSplit(t *testing.T) {
	heavy, light := named(t, "heavy"), named(t, "light")
	p := newPool(t, []Backend{
		{URL: mustURL(t, heavy.URL), Weight: 90},
		{URL: mustURL(t, light.URL), Weight: 10},
	}, Options{})

	const total, workers = 10000, 8
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			local := map[string]int{}
			for range total / workers {
				code, body := get(p, "/")
				if code != http.StatusOK {
					body = fmt.Sprintf("status %d", code)
				}
				local[body]++
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range local {
				counts[k] += v
			}
		})
	}
	wg.Wait()

	if counts["heavy"]+counts["light"] != total {
		t.Fatalf("answers %v, want %d from the two upstreams", counts, total)
	}
	if share := float64(counts["light"]) / total; share < 0.08 || share > 0.12 {
		t.Errorf("light share %.3f (%v), want 0.10 ± 0.02", share, counts)
	}
}

func TestRoundRobin(t *testing.T) {
	a, b, c := named(t, "a"), named(t, "b"), named(t, "c")
	p := newPool(t, backends(t, a.URL, b.URL, c.URL), Options{})

	var got []string
	for range 9 {
		code, body := get(p, "/")
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		got = append(got, body)
	}
	if want := strings.Repeat("abc", 3); strings.Join(got, "") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestEjectionAndRecovery(t *testing.T) {
	a := newSwitchable(t, "a") // down
	b := named(t, "b")
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	var errs errorRecorder
	p := newPool(t, backends(t, a.url(), b.URL), Options{
		EjectAfter: 2, Cooldown: 10 * time.Second, OnUpstreamError: errs.hook,
	})
	p.now = clock.Now

	// Round-robin a, b, a: the second refusal ejects a.
	for i, want := range []int{http.StatusBadGateway, http.StatusOK, http.StatusBadGateway} {
		if code, _ := get(p, "/"); code != want {
			t.Fatalf("request %d: status %d, want %d", i, code, want)
		}
	}
	if got, want := errs.get(), []string{a.addr + " connect", a.addr + " connect"}; !slices.Equal(got, want) {
		t.Errorf("upstream errors %v, want %v", got, want)
	}

	// Ejected: skipped even once it is back, until the cooldown ends.
	a.up()
	for i := range 6 {
		if code, body := get(p, "/"); code != http.StatusOK || body != "b" {
			t.Fatalf("request %d while a ejected: %d %q, want 200 from b", i, code, body)
		}
	}

	clock.Advance(10 * time.Second)
	seen := map[string]bool{}
	for range 2 {
		_, body := get(p, "/")
		seen[body] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("after cooldown served by %v, want both a and b", seen)
	}

	// The success reset the failure count: one more refusal does not eject.
	a.down()
	for range 2 {
		get(p, "/")
	}
	if !p.backends[0].available(p.now) {
		t.Error("a ejected after one failure following a success; want the count reset")
	}
}

func TestReEjectedAfterCooldownWhileStillDown(t *testing.T) {
	a := newSwitchable(t, "a") // stays down
	b := named(t, "b")
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	p := newPool(t, backends(t, a.url(), b.URL), Options{EjectAfter: 1, Cooldown: time.Minute})
	p.now = clock.Now

	get(p, "/") // a refuses: ejected
	clock.Advance(time.Minute)
	get(p, "/") // b
	get(p, "/") // a probed again, still refuses
	if p.backends[0].available(p.now) {
		t.Fatal("a available after failing its post-cooldown probe; want ejected again")
	}
}

func TestPanicModeWhenAllEjected(t *testing.T) {
	a := newSwitchable(t, "a")
	p := newPool(t, backends(t, a.url()), Options{EjectAfter: 1, Cooldown: time.Hour})

	if code, _ := get(p, "/"); code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 while down", code)
	}
	if p.backends[0].available(p.now) {
		t.Fatal("backend not ejected after EjectAfter failures")
	}
	a.up()
	if code, body := get(p, "/"); code != http.StatusOK || body != "a" {
		t.Errorf("got %d %q with every backend ejected, want 200 from a (panic mode)", code, body)
	}
}

func TestUpstreamDownFailsFastOthersUnaffected(t *testing.T) {
	down := newPool(t, backends(t, "http://"+closedAddr(t)), Options{})
	up := newPool(t, backends(t, named(t, "up").URL), Options{})
	gwDown, gwUp := gateway(t, down), gateway(t, up)

	const n = 20
	start := time.Now()
	var wg sync.WaitGroup
	codes := make(chan string, 2*n)
	for range n {
		wg.Go(func() { codes <- "down " + statusOf(t, gwDown.URL) })
		wg.Go(func() { codes <- "up " + statusOf(t, gwUp.URL) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(codes)

	for c := range codes {
		if c != "down 502" && c != "up 200" {
			t.Errorf("got %s", c)
		}
	}
	if elapsed > time.Second {
		t.Errorf("%d requests to a down upstream took %v, want well under a second", n, elapsed)
	}
}

func statusOf(t *testing.T, target string) string {
	t.Helper()
	resp, err := http.Get(target)
	if err != nil {
		t.Errorf("GET %s: %v", target, err)
		return "error"
	}
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

func BenchmarkPoolPick(b *testing.B) {
	bs := make([]Backend, 4)
	for i := range bs {
		bs[i] = Backend{URL: mustURL(b, fmt.Sprintf("http://10.0.0.%d:80", i+1)), Weight: 10 * (i + 1)}
	}
	p, err := New("bench", bs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if p.pick(0) < 0 {
				b.Fatal("no backend")
			}
		}
	})
}
