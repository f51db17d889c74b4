package serve

import (
	"context"
	"runtime/metrics"
	"testing"
)

func TestShouldTrim(t *testing.T) {
	tests := []struct {
		name        string
		free, inUse uint64
		want        bool
	}{
		{"after a burst", 150 << 20, 27 << 20, true},
		{"small heap, little free", 10 << 20, 5 << 20, false},
		{"free is the collector's headroom", 100 << 20, 60 << 20, false},
		{"just at the bound", trimFree, 1 << 20, true},
		{"below the bound", trimFree - 1, 0, false},
	}
	for _, tt := range tests {
		if got := shouldTrim(tt.free, tt.inUse); got != tt.want {
			t.Errorf("%s: shouldTrim(%d, %d) = %v, want %v", tt.name, tt.free, tt.inUse, got, tt.want)
		}
	}
}

// TestTrimMetricsExist: the runtime still reports the two figures the trim
// reads (a renamed metric reads as KindBad, and the trim would stop).
func TestTrimMetricsExist(t *testing.T) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	for _, x := range s {
		if x.Value.Kind() != metrics.KindUint64 {
			t.Errorf("%s: kind %v, want uint64", x.Name, x.Value.Kind())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	trimMemory(ctx) // returns once ctx is done
}
