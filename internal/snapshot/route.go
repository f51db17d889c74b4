package snapshot

import (
	"net/http"
	"strings"

	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/proxy"
)

// Route is what the engine and the gateway need once a request matched a
// route.
type Route struct {
	Name              string
	Public            bool
	AllowEncodedSlash bool
	// PassCredentials forwards the credential sekisho verified; by default
	// it is removed so upstreams never receive tokens they did not ask for.
	PassCredentials bool
	// Policy decides; nil only for public routes.
	Policy *authz.Policy
	// NoLoginRedirect routes (api: true) never redirect a browser to sign
	// in: an unauthenticated request gets 401.
	NoLoginRedirect bool
	// AllowPathParams accepts ';' in the path (matrix parameters).
	AllowPathParams bool
	// AllowExtensionMethods accepts methods other than the standard ones;
	// without it they are refused (400), so an unusual method cannot reach
	// an upstream that might treat it as a standard one.
	AllowExtensionMethods bool
	// AllowMethodOverride decides a POST with one method-override header
	// as the overriding method (see engine.Evaluate); without it override
	// headers are stripped before forwarding.
	AllowMethodOverride bool
	// Upstream forwards the request; nil for decision-only routes.
	Upstream *proxy.Pool
	// Upgrades are the protocol names (lower case) a request may ask to
	// switch to with an Upgrade header; see RefuseUpgrade.
	Upgrades []string
}

// Messages for refused upgrades. They never repeat what the client sent.
const (
	msgH2CUpgrade   = "Upgrading to HTTP/2 (h2c) is not accepted: use HTTP/2 over TLS, or HTTP/1.1."
	msgOtherUpgrade = "This route does not accept the protocol upgrade requested (only WebSocket, unless configured)."
)

// RefuseUpgrade checks the protocols a request asks to switch to (its
// Upgrade header) against the route's upgrades. It returns a message for
// the client when one of them is not allowed, and "" when the request asks
// for no upgrade or only allowed ones. Every listed protocol must be
// allowed, whatever Connection says, so no proxy or upstream in between can
// pick a refused one. Requests without an Upgrade header cost one map
// lookup.
func (r *Route) RefuseUpgrade(h http.Header) string {
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

func (r *Route) allowsUpgrade(name string) bool {
	for _, p := range r.Upgrades {
		if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}
