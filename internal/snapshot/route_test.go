package snapshot

import (
	"net/http"
	"testing"
)

func TestRefuseUpgrade(t *testing.T) {
	rt := &Route{Upgrades: []string{"websocket", "x-custom"}}
	for _, tt := range []struct {
		name   string
		values []string // Upgrade header values; nil: no header
		want   string
	}{
		{"no header", nil, ""},
		{"websocket", []string{"websocket"}, ""},
		{"case and version", []string{"WebSocket", "X-Custom/1.1"}, ""},
		{"empty tokens", []string{" , websocket,,"}, ""},
		{"h2c", []string{"h2c"}, msgH2CUpgrade},
		{"h2c after an allowed one", []string{"websocket, H2C"}, msgH2CUpgrade},
		{"h2c after an unlisted one", []string{"x-other", "h2c"}, msgH2CUpgrade},
		{"h2", []string{"h2/1"}, msgH2CUpgrade},
		{"unlisted", []string{"x-other"}, msgOtherUpgrade},
		{"unlisted among listed", []string{"websocket, TLS/1.2"}, msgOtherUpgrade},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.values != nil {
				h["Upgrade"] = tt.values
			}
			if got := rt.RefuseUpgrade(h); got != tt.want {
				t.Errorf("RefuseUpgrade(%q) = %q, want %q", tt.values, got, tt.want)
			}
		})
	}
	h := http.Header{"Accept": {"*/*"}}
	if n := testing.AllocsPerRun(100, func() { rt.RefuseUpgrade(h) }); n != 0 {
		t.Errorf("RefuseUpgrade allocates %v times for a request without Upgrade", n)
	}
}
