package config

import (
	"net/http"
	"slices"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestUpgradesConfig: the upgrades a route allows. The refused ones are
// goldens in testdata: upgrades-*.
func TestUpgradesConfig(t *testing.T) {
	for _, tt := range []struct {
		name, upgrades string
		want           []string
	}{
		{"default is websocket", "", []string{"websocket"}},
		{"none", "upgrades: []", []string{}},
		{"listed, lower-cased, deduplicated", "upgrades: [WebSocket, x-custom, websocket]", []string{"websocket", "x-custom"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := `
listen: {http: ":0"}
routes:
  - name: app
    match: {path_prefix: /}
    to: builtin:echo
    public: true
    ` + tt.upgrades + "\n"
			s, err := parse(t, src)
			if err != nil {
				t.Fatal(err)
			}
			rt, _, _ := s.Routes.Match("x", "/", "GET", nil)
			if !slices.Equal(rt.Upgrades, tt.want) {
				t.Errorf("Upgrades = %q, want %q", rt.Upgrades, tt.want)
			}
		})
	}
}

func TestRefuseUpgrade(t *testing.T) {
	rt := &CompiledRoute{Upgrades: []string{"websocket", "x-custom"}}
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

// TestUpstreamTLSProblems: upstream TLS files that exist and match are
// accepted, relative to the config's directory or absolute. The refused
// settings are goldens in testdata: upstream-tls-*.
func TestUpstreamTLSProblems(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Client(t, "a")
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	testutil.WriteFile(t, dir, "client.pem", leaf.CertPEM)
	testutil.WriteFile(t, dir, "client.key", leaf.KeyPEM)
	for _, tt := range []struct{ name, to, tls string }{
		{"valid", "https://up.test", "{ca_file: ca.pem, cert_file: client.pem, key_file: client.key, server_name: x}"},
		{"valid CA only", "[http://a.test, https://up.test]", "{ca_file: " + caFile + "}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := `
listen: {http: ":0"}
routes:
  - name: app
    match: {path_prefix: /}
    to: ` + tt.to + `
    public: true
    upstream_tls: ` + tt.tls + "\n"
			s, err := Parse([]byte(src), "test.yaml", dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		})
	}
}
