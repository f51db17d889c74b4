package tokenreview

import (
	"bytes"
	"strings"
	"testing"

	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/listen"
	"github.com/sekisho/sekisho/internal/testutil"
)

func TestKubeconfig(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "webhook.example")
	client := ca.Client(t, "kube-apiserver")
	leafOnly := testutil.WriteFile(t, dir, "leaf.crt", leaf.CertPEM)
	chain := testutil.WriteFile(t, dir, "chain.crt", append(append([]byte{}, leaf.CertPEM...), ca.PEM...))
	key := testutil.WriteFile(t, dir, "leaf.key", leaf.KeyPEM)
	caFile := testutil.WriteFile(t, dir, "ca.crt", ca.PEM)
	clientCert := testutil.WriteFile(t, dir, "client.crt", client.CertPEM)
	clientKey := testutil.WriteFile(t, dir, "client.key", client.KeyPEM)
	withTLS := func(cert, clientCA string) *listen.ServerTLS {
		return &listen.ServerTLS{CertFile: cert, KeyFile: key, ClientCAFile: clientCA}
	}
	for _, tt := range []struct {
		name       string
		cfg        Config
		o          KubeconfigOptions
		wantServer string
		wantCA     []byte
		wantClient bool
		wantErr    string
	}{
		{name: "loopback plain", cfg: Config{Listen: "127.0.0.1:8443"}, wantServer: "http://127.0.0.1:8443/tokenreview"},
		{name: "tls, CA from the chain", cfg: Config{Listen: "10.0.0.5:8443", TLS: withTLS(chain, "")}, wantServer: "https://10.0.0.5:8443/tokenreview", wantCA: ca.PEM},
		{name: "tls, CA given, server given", cfg: Config{Listen: ":8443", TLS: withTLS(leafOnly, caFile)}, o: KubeconfigOptions{Server: "https://sekisho.auth.svc:8443", CAFile: caFile, ClientCertFile: clientCert, ClientKeyFile: clientKey}, wantServer: "https://sekisho.auth.svc:8443/tokenreview", wantCA: ca.PEM, wantClient: true},
		{name: "ipv6", cfg: Config{Listen: "[::1]:8443"}, wantServer: "http://[::1]:8443/tokenreview"},
		{name: "no host", cfg: Config{Listen: ":8443", TLS: withTLS(chain, "")}, wantErr: "give --server https://HOST:8443"},
		{name: "unspecified host", cfg: Config{Listen: "0.0.0.0:8443", TLS: withTLS(chain, "")}, wantErr: "names no host"},
		{name: "leaf without its CA", cfg: Config{Listen: "10.0.0.5:8443", TLS: withTLS(leafOnly, "")}, wantErr: "give that CA with --ca-file"},
		{name: "client CA without client cert", cfg: Config{Listen: "10.0.0.5:8443", TLS: withTLS(chain, caFile)}, wantErr: "--client-cert and --client-key"},
		{name: "half a client pair", cfg: Config{Listen: "127.0.0.1:1"}, o: KubeconfigOptions{ClientCertFile: clientCert}, wantErr: "together"},
		{name: "bad server", cfg: Config{Listen: "127.0.0.1:1"}, o: KubeconfigOptions{Server: "ftp://x"}, wantErr: "is not an http(s)"},
		{name: "http server for a tls webhook", cfg: Config{Listen: "10.0.0.5:8443", TLS: withTLS(chain, "")}, o: KubeconfigOptions{Server: "http://x:1"}, wantErr: "serves https"},
		{name: "CA file is a key", cfg: Config{Listen: "10.0.0.5:8443", TLS: withTLS(chain, "")}, o: KubeconfigOptions{CAFile: key}, wantErr: "holds no PEM CERTIFICATE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Kubeconfig(tt.cfg, tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kc clientcmdv1.Config
			if err := yaml.UnmarshalStrict(out, &kc); err != nil {
				t.Fatalf("not a kubeconfig: %v\n%s", err, out)
			}
			c := kc.Clusters[0].Cluster
			if c.Server != tt.wantServer || !bytes.Equal(c.CertificateAuthorityData, tt.wantCA) {
				t.Fatalf("cluster %s CA %q, want %s", c.Server, c.CertificateAuthorityData, tt.wantServer)
			}
			u := kc.AuthInfos[0].AuthInfo
			if tt.wantClient != (len(u.ClientCertificateData) > 0 && len(u.ClientKeyData) > 0) {
				t.Fatalf("client certificate in kubeconfig: %v, want %v", len(u.ClientCertificateData) > 0, tt.wantClient)
			}
			if kc.CurrentContext == "" || kc.Contexts[0].Context.Cluster != kc.Clusters[0].Name {
				t.Fatalf("contexts: %+v", kc.Contexts)
			}
		})
	}
}
