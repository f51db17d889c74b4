package baotest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bao "github.com/openbao/openbao/api/v2"

	"github.com/sekisho/sekisho/internal/testutil"
)

// readyTimeout bounds how long Start waits for /v1/sys/health (under a
// second is usual, more on a loaded machine).
const readyTimeout = 60 * time.Second

// Server is a running `bao server -dev`: in memory, unsealed, with KV
// version 2 mounted at secret/. Its fields are read-only.
type Server struct {
	// Addr is the server's address, http://127.0.0.1:PORT, for BAO_ADDR.
	Addr string
	// RootToken is the dev server's root token: tests set the server up
	// with it and give the code under test tokens of their own.
	RootToken string
	// Root is a client holding RootToken.
	Root *bao.Client
	// CAFile is, for a server started with TLS, the PEM file of the CA
	// that issued its certificate (for BAO_CACERT); "" otherwise.
	CAFile string

	proc *testutil.Process
	log  *testutil.SyncBuffer
}

// Options configure a dev server.
type Options struct {
	// TLS serves https with a certificate from a CA the server makes
	// (bao server -dev-tls); Server.CAFile holds the CA.
	TLS bool
}

// Start runs a dev server for the test and stops it when the test ends;
// if the test failed, the server's log is logged. It builds bao first if
// needed (EnsureBinary, with progress on stderr) and skips the test under
// -short. A server starts in well under a second, so each test has its own.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith is Start with options.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("baotest: -short skips tests that run OpenBao")
	}
	bin, err := EnsureBinary(tb.Context(), os.Stderr)
	if err != nil {
		tb.Fatal(err)
	}
	var s *Server
	// A port picked free may be taken before bao binds it: try new ones.
	for attempt := 0; attempt < 3; attempt++ {
		s, err = start(tb.Context(), bin, tb.TempDir(), opts)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("bao server log:\n%s", s.log.String())
		}
		s.Stop()
	})
	return s
}

var errPortTaken = errors.New("port already in use")

func start(ctx context.Context, bin, home string, opts Options) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	s := &Server{Addr: "http://" + addr, RootToken: "root-" + hex.EncodeToString(token), log: &testutil.SyncBuffer{}}
	args := []string{"server", "-dev",
		"-dev-listen-address=" + addr,
		"-dev-root-token-id=" + s.RootToken,
		// Else the dev server writes the root token to ~/.vault-token.
		"-dev-no-store-token",
		"-log-level=info"}
	if opts.TLS {
		certs := filepath.Join(home, "tls")
		if err := os.MkdirAll(certs, 0o700); err != nil {
			return nil, fmt.Errorf("baotest: %w", err)
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certs)
		s.Addr = "https://" + addr
		s.CAFile = filepath.Join(certs, "vault-ca.pem")
	}
	cmd := exec.Command(bin, args...)
	// Nothing of the test's environment (BAO_ADDR, VAULT_TOKEN, a proxy)
	// reaches the server; HOME is the test's own.
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	s.proc, err = testutil.StartProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("baotest: %w", err)
	}
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		if strings.Contains(s.log.String(), "address already in use") {
			return nil, fmt.Errorf("baotest: %s: %w", addr, errPortTaken)
		}
		return nil, fmt.Errorf("baotest: %w\nbao server log:\n%s", err, s.log.String())
	}
	s.Root, err = s.Client(s.RootToken)
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls /v1/sys/health until the server answers 200 (active,
// unsealed), it exits, or the deadline passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		if s.CAFile != "" && client.Transport == nil {
			// The server writes its CA before it listens.
			if pool, err := caPool(s.CAFile); err == nil {
				client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Addr+"/v1/sys/health", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("bao exited before it was ready: %v", s.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("bao not ready at %s: %w", s.Addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop kills the server (its state is in memory and thrown away). Tests
// call it to see what a client does when OpenBao is gone; calling it again
// does nothing.
func (s *Server) Stop() {
	_ = s.proc.Stop(0)
}

// Client returns an API client for the server that holds token, and
// nothing from the process environment (BAO_TOKEN, BAO_NAMESPACE).
func (s *Server) Client(token string) (*bao.Client, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	if s.CAFile != "" {
		pool, err := caPool(s.CAFile)
		if err != nil {
			return nil, err
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	cfg := &bao.Config{Address: s.Addr, HttpClient: hc, MaxRetries: 0}
	c, err := bao.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("baotest: client: %w", err)
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("baotest: pick a free port: %w", err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

func caPool(file string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("baotest: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("baotest: no certificate in %s", file)
	}
	return pool, nil
}
