package config

import (
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// defaultUpgrades are the protocols a route accepts in an Upgrade header
// when it does not say: WebSocket, which the proxy relays as an opaque
// stream after the route's policy allowed the handshake.
var defaultUpgrades = []string{"websocket"}

// upgrades compiles a route's upgrades: list. An h2c (or h2) upgrade is a
// configuration error rather than an option: the upstream would speak
// HTTP/2 on the connection afterwards, and every later request on it would
// reach the upstream without passing sekisho's routing or policy.
func (c *compiler) upgrades(r *Route, at []any) []string {
	if r.Upgrades == nil {
		return defaultUpgrades
	}
	out := make([]string, 0, len(r.Upgrades))
	for i, p := range r.Upgrades {
		name := strings.ToLower(strings.TrimSpace(p))
		switch {
		case name == "h2c" || name == "h2":
			c.addf(append(at, "upgrades", i), "%q cannot be allowed: after an HTTP/2 upgrade, requests on the connection would reach the upstream without being routed or authorized by sekisho", p)
			continue
		case !httpguts.ValidHeaderFieldName(name):
			c.addf(append(at, "upgrades", i), "%q is not a protocol name (a token such as websocket)", p)
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}
