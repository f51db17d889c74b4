package decision

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/testutil"
)

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	pki := newPKI(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listener", Config{}, "set listen (HTTP) and/or grpc"},
		{"listen is not host:port", Config{Listen: "9191"}, `listen: "9191" is not host:port`},
		{"grpc is not host:port", Config{GRPC: "localhost"}, `grpc: "localhost" is not host:port`},
		{"bad CIDR", Config{Listen: ":0", TrustedProxies: []string{"10.0.0.0/33"}}, `trusted_proxies: trusted proxy "10.0.0.0/33"`},
		{"key without cert", Config{Listen: ":0", TLS: &TLS{KeyFile: pki.serverKey}}, "cert_file and key_file are both required"},
		{"missing cert file", Config{Listen: ":0", TLS: &TLS{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: pki.serverKey}}, "nope.crt"},
		{"missing client CA", Config{Listen: ":0", TLS: &TLS{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: filepath.Join(dir, "ca.pem")}}, "client_ca_file"},
		{"client CA is not PEM", Config{Listen: ":0", TLS: &TLS{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: notPEM}}, "no PEM certificate"},
	}
	current := func() *snapshot.Snapshot { return nil }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, current, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Listen: ":0"}, nil, nil); err == nil {
		t.Error("New accepted no snapshot source")
	}
}

func TestStartBindErrorNamesTheAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for _, cfg := range []Config{{Listen: addr}, {Listen: "127.0.0.1:0", GRPC: addr}} {
		dec, err := New(cfg, func() *snapshot.Snapshot { return nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Start(t.Context()); err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("Start = %v, want an error naming %s", err, addr)
		}
		if h, g := dec.Addrs(); h != "" || g != "" {
			t.Errorf("a failed Start left listeners behind: %q %q", h, g)
		}
	}
}

// TestMTLS serves both listeners over TLS with client certificates, from
// an address range the trusted proxies do not cover: a verified client is
// trusted, a client without a certificate cannot connect at all.
func TestMTLS(t *testing.T) {
	f := newFixture(t, Config{}, "")
	pki := newPKI(t)
	cfg := Config{
		Listen: "127.0.0.1:0", GRPC: "127.0.0.1:0",
		TrustedProxies: []string{"10.0.0.0/8"},
		TLS:            &TLS{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caCert},
	}
	dec, err := New(cfg, func() *snapshot.Snapshot { return f.snap }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dec.Shutdown(context.Background()) })
	httpAddr, grpcAddr := dec.Addrs()

	withCert := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, ServerName: "sekisho.test"}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: withCert}}
	req, _ := http.NewRequest("GET", "https://"+httpAddr+"/forward-auth", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Host", "gw.test")
	req.Header.Set("X-Forwarded-Uri", "/api1/x")
	req.Header.Set("Authorization", "Bearer "+f.tokens.admin)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Forwarded-User") != "alice@example.com" {
		t.Fatalf("a verified client got %d", resp.StatusCode)
	}

	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, ServerName: "sekisho.test"}}}
	if resp, err := noCert.Get("https://" + httpAddr + "/forward-auth"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}

	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check, err := authv3.NewAuthorizationClient(conn).Check(t.Context(),
		envoyCheck("GET", "gw.test", "/api1/x", map[string]string{"authorization": "Bearer " + f.tokens.admin}))
	if err != nil || check.GetStatus().GetCode() != 0 {
		t.Fatalf("gRPC over mTLS: %v %v", check, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dec.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", httpAddr); err == nil {
		t.Error("the HTTP listener is still open after Shutdown")
	}
}

// pki is a CA with a server certificate (files) and a client certificate.
type pki struct {
	caCert, serverCert, serverKey string
	pool                          *x509.CertPool
	client                        tls.Certificate
	// serial is the serial number of the server certificate in the files.
	serial int64
	// renew issues a new server certificate into the same files.
	renew func()
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	p := &pki{pool: ca.Pool(), client: ca.Client(t, "proxy").TLS}
	p.caCert = testutil.WriteFile(t, dir, "ca.crt", ca.PEM)
	srv := ca.Server(t, "sekisho.test")
	p.serverCert = testutil.WriteFile(t, dir, "server.crt", srv.CertPEM)
	p.serverKey = testutil.WriteFile(t, dir, "server.key", srv.KeyPEM)
	p.serial = srv.TLS.Leaf.SerialNumber.Int64()
	p.renew = func() {
		srv := ca.Server(t, "sekisho.test")
		// Key first, then certificate: the reloader keeps the old pair
		// until the two match.
		for _, f := range []struct {
			name string
			data []byte
		}{{"server.key", srv.KeyPEM}, {"server.crt", srv.CertPEM}} {
			tmp := testutil.WriteFile(t, dir, f.name+".new", f.data)
			if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
				t.Fatal(err)
			}
		}
		p.serial = srv.TLS.Leaf.SerialNumber.Int64()
	}
	return p
}

// TestTLSCertificateReload: a renewed certificate file is served without a
// restart, like the gateway's.
func TestTLSCertificateReload(t *testing.T) {
	f := newFixture(t, Config{}, "")
	pki := newPKI(t)
	dec, err := New(Config{Listen: "127.0.0.1:0", TLS: &TLS{CertFile: pki.serverCert, KeyFile: pki.serverKey}},
		func() *snapshot.Snapshot { return f.snap }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dec.Shutdown(context.Background()) })
	httpAddr, _ := dec.Addrs()
	serial := func() int64 {
		conn, err := tls.Dial("tcp", httpAddr, &tls.Config{RootCAs: pki.pool, ServerName: "sekisho.test"})
		if err != nil {
			return -1
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != pki.serial {
		t.Fatalf("served serial %d, want %d", got, pki.serial)
	}
	pki.renew()
	deadline := time.Now().Add(10 * time.Second)
	for serial() != pki.serial {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was never served")
		}
		time.Sleep(20 * time.Millisecond) // polling a file watcher in another goroutine
	}
}
