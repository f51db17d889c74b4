package decisionconf

import (
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestCheckKeys: each rule of the decision section reports at the key it
// is about, all problems at once, and a valid section builds the TLS the
// listeners serve.
func TestCheckKeys(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf, other := ca.Server(t, "localhost"), ca.Server(t, "localhost")
	cert := testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	key := testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	otherKey := testutil.WriteFile(t, dir, "other.key", other.KeyPEM)
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"plain", Config{Listen: ":0"}, nil},
		{"mtls", Config{GRPC: ":0", TLS: &TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile}}, nil},
		{"nothing", Config{}, []string{""}},
		{"addresses and cidr", Config{Listen: "9191", GRPC: "x", TrustedProxies: []string{"10.0.0.0/33"}}, []string{"listen", "grpc", "trusted_proxies"}},
		{"tls half", Config{Listen: ":0", TLS: &TLS{CertFile: cert}}, []string{"tls"}},
		{"tls files", Config{Listen: ":0", TLS: &TLS{CertFile: cert, KeyFile: otherKey, ClientCAFile: missing}}, []string{"tls.client_ca_file", "tls.key_file"}},
		{"cert missing, CA is a key", Config{Listen: ":0", TLS: &TLS{CertFile: missing, KeyFile: key, ClientCAFile: key}}, []string{"tls.client_ca_file", "tls.cert_file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := Check(&tt.cfg)
			var keys []string
			for _, p := range ps {
				keys = append(keys, p.Key)
				if strings.Contains(p.Msg, "BEGIN") || strings.Contains(p.Msg, string(leaf.KeyPEM[40:80])) {
					t.Errorf("problem quotes a file: %s", p)
				}
			}
			if !slices.Equal(keys, tt.want) {
				t.Fatalf("problem keys %q, want %q: %v", keys, tt.want, ps)
			}
			if tt.want != nil {
				return
			}
			b, _ := Build(&tt.cfg, nil)
			if b.Trust == nil {
				t.Error("no trust")
			}
			if tt.cfg.TLS != nil && (b.TLS == nil || b.Certs == nil || b.TLS.ClientAuth != tls.RequireAndVerifyClientCert) {
				t.Errorf("TLS not built for mTLS: %+v", b.TLS)
			}
		})
	}
}
