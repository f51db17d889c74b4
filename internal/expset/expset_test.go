package expset

import (
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testutil"
)

func TestSetBoundedAndExpiring(t *testing.T) {
	clk := testutil.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	s := New(2, clk.Now)
	t0 := clk.Now()
	if s.Add("past", t0) || s.Has("past") {
		t.Error("an already-expired member was kept")
	}
	s.Add("a", t0.Add(time.Hour))
	s.Add("b", t0.Add(3*time.Hour))
	if !s.Add("c", t0.Add(2*time.Hour)) {
		t.Error("a full set of live members did not report an eviction")
	}
	if s.Has("a") || !s.Has("b") || !s.Has("c") {
		t.Errorf("after eviction: a=%v b=%v c=%v; want the soonest-expiring (a) dropped", s.Has("a"), s.Has("b"), s.Has("c"))
	}
	clk.Advance(2*time.Hour + time.Second)
	if s.Has("c") {
		t.Error("an expired member is still reported")
	}
	if s.Add("d", t0.Add(4*time.Hour)) {
		t.Error("evicted a live member while an expired one could go")
	}
	if !s.Has("b") || !s.Has("d") || s.Len() != 2 {
		t.Errorf("after expiry: b=%v d=%v len=%d", s.Has("b"), s.Has("d"), s.Len())
	}
}

func TestAddNewOnce(t *testing.T) {
	clk := testutil.NewClock(time.Now())
	s := New(10, clk.Now)
	until := clk.Now().Add(time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := s.AddNew("k", until); ok {
				mu.Lock()
				added++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if added != 1 {
		t.Fatalf("AddNew succeeded %d times for one key, want once", added)
	}
	clk.Advance(time.Minute)
	if ok, _ := s.AddNew("k", clk.Now().Add(time.Minute)); !ok {
		t.Error("AddNew refused a key whose membership had expired")
	}
}
