package config

import (
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
