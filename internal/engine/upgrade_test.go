package engine

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/sekisho/sekisho/internal/configtest"
)

// TestUpgradeRule: the decision service and the gateway refuse the same
// upgrades, because both decide with Evaluate: h2c never, other protocols
// only where the route lists them, WebSocket by default.
func TestUpgradeRule(t *testing.T) {
	snap := configtest.New(t).Snapshot(`
listen: {http: "127.0.0.1:0"}
routes:
  - name: open
    match: {path_prefix: /}
    to: builtin:echo
    public: true
  - name: custom
    match: {path_prefix: /custom}
    to: builtin:echo
    public: true
    upgrades: [x-custom]
`)
	for _, tt := range []struct {
		target, upgrade string
		want            Outcome
	}{
		{"/x", "", Allowed},
		{"/x", "websocket", Allowed},
		{"/x", "h2c", BadRequest},
		{"/x", "x-custom", BadRequest},
		{"/custom/x", "x-custom", Allowed},
		{"/custom/x", "websocket", BadRequest},
		{"/custom/x", "h2c", BadRequest},
	} {
		r := httptest.NewRequest("GET", tt.target, nil)
		r.Header.Set("Connection", "Upgrade")
		if tt.upgrade != "" {
			r.Header.Set("Upgrade", tt.upgrade)
		}
		res := Evaluate(context.Background(), snap, r, Options{})
		if res.Outcome != tt.want {
			t.Errorf("%s Upgrade %q: outcome %v (%s), want %v", tt.target, tt.upgrade, res.Outcome, res.Message, tt.want)
		}
	}
}
