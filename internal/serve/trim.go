package serve

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A burst of connections or requests leaves memory the Go heap no longer
// uses but keeps: the runtime returns it to the system only at the pace of
// its background scavenger, and 10,000 connections served at once then
// parked left about 150 MB resident for minutes. Operators size pods by
// resident memory, so sekisho gives such memory back promptly: when the
// free, unreturned part of the heap is large both in bytes and next to what
// is in use, it asks the runtime to return it, at most once per trimEvery.
const (
	trimCheck = 5 * time.Second
	trimEvery = 30 * time.Second
	trimFree  = 64 << 20 // bytes free and not returned, at least
)

// trimMemory checks the heap every trimCheck until ctx ends.
func trimMemory(ctx context.Context) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	tick := time.NewTicker(trimCheck)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			metrics.Read(samples)
			if shouldTrim(samples[0].Value.Uint64(), samples[1].Value.Uint64()) && now.Sub(last) >= trimEvery {
				debug.FreeOSMemory()
				last = now
			}
		}
	}
}

// shouldTrim: free is heap memory free and not yet returned to the
// system, inUse the memory of live and not yet swept objects. Free memory
// the heap is about to need again (free no larger than twice what is in
// use: the collector's own headroom) is kept.
func shouldTrim(free, inUse uint64) bool {
	return free >= trimFree && free > 2*inUse
}
