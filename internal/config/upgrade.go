package config

import (
	"net/http"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// defaultUpgrades are the protocols a route accepts in an Upgrade header
// when it does not say: WebSocket, which the proxy relays as an opaque
// stream after the route's policy allowed the handshake.
var defaultUpgrades = []string{"websocket"}

// Messages for refused upgrades. They never repeat what the client sent.
const (
	msgH2CUpgrade   = "Upgrading to HTTP/2 (h2c) is not accepted: use HTTP/2 over TLS, or HTTP/1.1."
	msgOtherUpgrade = "This route does not accept the protocol upgrade requested (only WebSocket, unless configured)."
)

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

// RefuseUpgrade checks the protocols a request asks to switch to (its
// Upgrade header) against the route's upgrades. It returns a message for
// the client when one of them is not allowed, and "" when the request asks
// for no upgrade or only allowed ones. Every listed protocol must be
// allowed, whatever Connection says, so no proxy or upstream in between can
// pick a refused one. Requests without an Upgrade header cost one map
// lookup.
func (r *CompiledRoute) RefuseUpgrade(h http.Header) string {
	values, ok := h["Upgrade"]
	if !ok {
		return ""
	}
	msg := ""
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = strings.Trim(tok, " \t")
			if tok == "" {
				continue
			}
			name, _, _ := strings.Cut(tok, "/") // protocol-name ["/" protocol-version]
			if strings.EqualFold(name, "h2c") || strings.EqualFold(name, "h2") {
				return msgH2CUpgrade
			}
			if !r.allowsUpgrade(name) {
				msg = msgOtherUpgrade // keep looking: h2c has its own message
			}
		}
	}
	return msg
}

func (r *CompiledRoute) allowsUpgrade(name string) bool {
	for _, p := range r.Upgrades {
		if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}
