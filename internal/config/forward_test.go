package config

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

func TestUpgradesConfig(t *testing.T) {
	for _, tt := range []struct {
		name, upgrades string
		want           []string
		problem        []string // substrings of the error; nil when valid
	}{
		{"default is websocket", "", []string{"websocket"}, nil},
		{"none", "upgrades: []", []string{}, nil},
		{"listed, lower-cased, deduplicated", "upgrades: [WebSocket, x-custom, websocket]", []string{"websocket", "x-custom"}, nil},
		{"h2c refused", "upgrades: [websocket, h2c]", nil, []string{"test.yaml:8:", "routes[0].upgrades[1]", `"h2c" cannot be allowed`}},
		{"H2C refused", "upgrades: [H2C]", nil, []string{"test.yaml:8:", `"H2C" cannot be allowed`}},
		{"h2 refused", "upgrades: [h2]", nil, []string{"test.yaml:8:", `"h2" cannot be allowed`}},
		{"not a token", `upgrades: ["web socket"]`, nil, []string{"test.yaml:8:", "not a protocol name"}},
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
			if tt.problem != nil {
				if err == nil {
					t.Fatal("config accepted, want an error")
				}
				for _, w := range tt.problem {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not mention %q:\n%v", w, err)
					}
				}
				return
			}
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

func TestUpstreamTLSProblems(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf, other := ca.Client(t, "a"), ca.Client(t, "b")
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	testutil.WriteFile(t, dir, "client.pem", leaf.CertPEM)
	testutil.WriteFile(t, dir, "client.key", leaf.KeyPEM)
	testutil.WriteFile(t, dir, "other.key", other.KeyPEM)
	testutil.WriteFile(t, dir, "not.pem", []byte("hello"))
	for _, tt := range []struct {
		name, to, tls string
		want          []string // substrings of the error; nil: valid
	}{
		{"valid", "https://up.test", "{ca_file: ca.pem, cert_file: client.pem, key_file: client.key, server_name: x}", nil},
		{"valid CA only", "[http://a.test, https://up.test]", "{ca_file: " + caFile + "}", nil},
		{"missing CA file", "https://up.test", "{ca_file: nope.pem}", []string{"test.yaml:8:", "routes[0].upstream_tls.ca_file", "nope.pem"}},
		{"CA not PEM", "https://up.test", "{ca_file: not.pem}", []string{"test.yaml:8:", "routes[0].upstream_tls.ca_file", "not.pem: no PEM certificate in it"}},
		{"cert without key", "https://up.test", "{cert_file: client.pem}", []string{"test.yaml:8:", "cert_file and key_file go together"}},
		{"key of another certificate", "https://up.test", "{cert_file: client.pem, key_file: other.key}", []string{"test.yaml:8:", "routes[0].upstream_tls.key_file", "other.key", "private key does not match"}},
		{"empty", "https://up.test", "{}", []string{"test.yaml:8:", "set ca_file"}},
		{"no https upstream", "http://up.test", "{ca_file: ca.pem}", []string{"test.yaml:8:", "applies to https upstreams"}},
		{"unknown key", "https://up.test", "{ca_file: ca.pem, client_ca: x}", []string{"test.yaml:8:", `unknown key "client_ca"`}},
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
			if s != nil {
				t.Cleanup(s.Close)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("config accepted, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("file contents in the error:\n%v", err)
			}
		})
	}
}
