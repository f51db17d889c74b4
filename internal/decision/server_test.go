package decision

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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
	// renew issues a new server certificate with serial into the same files.
	renew func(serial int64)
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, dns []string) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "test"}, DNSNames: dns,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caCert = write("ca.crt", "CERTIFICATE", caDER)
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth, []string{"sekisho.test"})
	p.serverCert = write("server.crt", "CERTIFICATE", srvDER)
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	p.serverKey = write("server.key", "EC PRIVATE KEY", keyDER)
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	p.renew = func(serial int64) {
		der, key := issue(serial, x509.ExtKeyUsageServerAuth, []string{"sekisho.test"})
		kder, _ := x509.MarshalECPrivateKey(key)
		// Key first, then certificate: the reloader keeps the old pair
		// until the two match.
		write("server.key.new", "EC PRIVATE KEY", kder)
		write("server.crt.new", "CERTIFICATE", der)
		if err := os.Rename(filepath.Join(dir, "server.key.new"), p.serverKey); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "server.crt.new"), p.serverCert); err != nil {
			t.Fatal(err)
		}
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
	if got := serial(); got != 2 {
		t.Fatalf("served serial %d, want 2", got)
	}
	pki.renew(9)
	deadline := time.Now().Add(10 * time.Second)
	for serial() != 9 {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was never served")
		}
		time.Sleep(20 * time.Millisecond) // polling a file watcher in another goroutine
	}
}
