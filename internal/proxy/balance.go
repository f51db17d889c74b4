package proxy

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// backend is one upstream with its passive health state.
type backend struct {
	name   string // host:port or "builtin:echo": what logs, metrics and reqinfo call it
	kind   string // URL scheme as configured
	scheme string // scheme of the outbound URL; "" for builtin
	host   string // host of the outbound URL, as configured
	rt     http.RoundTripper
	lean   *leanTransport // plain HTTP/1.1 requests to http backends; nil when off

	fails        atomic.Int64 // consecutive connect failures
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when never ejected or recovered
}

// available reports whether b may be picked. now is only consulted for a
// backend that has been ejected, keeping the clock off the common path.
func (b *backend) available(now func() time.Time) bool {
	until := b.ejectedUntil.Load()
	return until == 0 || now().UnixNano() >= until
}

// schedule precomputes one cycle of nginx's smooth weighted round-robin over
// weights, reduced by their greatest common divisor. Walking it with an
// atomic counter gives the weighted spread without a lock, and interleaves
// backends instead of sending bursts to the heaviest one.
func schedule(weights []int) ([]uint8, error) {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	if g == 0 {
		return nil, errors.New("all backend weights are 0")
	}
	total := 0
	for _, w := range weights {
		total += w / g
	}
	current := make([]int, len(weights))
	out := make([]uint8, 0, total)
	for len(out) < total {
		best := -1
		for i, w := range weights {
			if w == 0 {
				continue
			}
			current[i] += w / g
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		out = append(out, uint8(best))
	}
	return out, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pick returns the index of the next backend not in tried, preferring ones
// that are not ejected. When every candidate is ejected it returns one anyway
// (panic mode): a wrong ejection must not turn into a full outage. It returns
// -1 when every backend with weight has been tried.
func (p *Pool) pick(tried uint64) int {
	n := uint64(len(p.schedule))
	start := p.next.Add(1) - 1
	fallback := -1
	for k := range n {
		i := int(p.schedule[(start+k)%n])
		if tried&(1<<i) != 0 {
			continue
		}
		if p.backends[i].available(p.now) {
			return i
		}
		if fallback < 0 {
			fallback = i
		}
	}
	return fallback
}

// succeeded resets b's failure count: any answer proves it reachable.
func (p *Pool) succeeded(b *backend) {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
	if b.ejectedUntil.Load() != 0 {
		b.ejectedUntil.Store(0)
	}
}

// connectFailed counts a refused or unreachable connection and ejects b for
// the cooldown once the count reaches the threshold. Every further failure
// restarts the cooldown, so a backend still down after its cooldown is
// ejected again by its first failed probe.
func (p *Pool) connectFailed(b *backend) {
	n := b.fails.Add(1)
	if n < p.ejectAfter {
		return
	}
	wasAvailable := b.available(p.now)
	b.ejectedUntil.Store(p.now().Add(p.cooldown).UnixNano())
	if wasAvailable {
		p.log.Warn("upstream ejected", "route", p.route, "upstream", b.name,
			"failures", n, "cooldown", p.cooldown)
	}
}
