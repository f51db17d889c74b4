// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver as child processes on loopback ports, with a test CA, an
// admin client certificate and a service-account signing key, so that
// sekisho is tested against Kubernetes itself rather than a model of it
// (TokenReview webhooks, service-account tokens and their discovery,
// kubeconfig exec plugins). There is no controller-manager, scheduler or
// kubelet: objects are stored and served, nothing reconciles them.
//
// Start gives one test its own cluster. Starting one takes 4–8 s, so a
// package whose tests can share one uses Shared:
//
//	var kube kubetest.Shared // or with Options set
//
//	func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }
//
//	func TestX(t *testing.T) {
//		c := kube.Cluster(t) // started by the first test that asks
//		...
//	}
//
// Tests sharing a cluster must not step on each other's objects: each uses
// namespaces and names of its own.
//
// Anonymous requests are refused, so a verifier of service-account tokens
// fetches the discovery document (URL + /.well-known/openid-configuration)
// and the keys (URL + /openid/v1/jwks) with a token, a service account's
// own for instance; the issuer they name is ServiceAccountIssuer, not URL.
//
// The servers are built from source on first use (EnsureBinaries): about
// 15 minutes cold on 2 cores, once per machine. Under -short the tests that
// need a cluster are skipped; otherwise a server that cannot be built or
// started fails the test.
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sekisho/sekisho/internal/testutil"
)

// DefaultServiceAccountIssuer is the issuer of service-account tokens
// unless Options says otherwise: the one a kubeadm cluster uses.
const DefaultServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// readyTimeout bounds how long Start waits for /readyz (4–8 s is usual,
// more on a loaded machine).
const readyTimeout = 90 * time.Second

// Options configure the API server. The zero value is a cluster with RBAC,
// no anonymous access and client-certificate and service-account
// authentication only.
type Options struct {
	// TokenWebhookConfig, when set, is a kubeconfig file's contents for
	// --authentication-token-webhook-config-file: the API server then asks
	// that TokenReview webhook about bearer tokens it does not recognise
	// itself. TokenWebhookKubeconfig builds one.
	TokenWebhookConfig []byte
	// TokenWebhookVersion is the TokenReview API version sent to the
	// webhook: "v1" (the default) or "v1beta1".
	TokenWebhookVersion string
	// TokenWebhookCacheTTL is how long the API server caches the webhook's
	// answers. The default 0 caches nothing (kube-apiserver's own default
	// is 2 minutes), so a token the webhook refused is reviewed again on
	// the next request. kube-apiserver also caches every successful token
	// authentication for 10 s, whatever this says (no flag changes that):
	// a token the webhook stops accepting still works for up to 10 s.
	TokenWebhookCacheTTL time.Duration
	// ServiceAccountIssuer is the iss of service-account tokens and the
	// issuer of the discovery document; DefaultServiceAccountIssuer if
	// empty.
	ServiceAccountIssuer string
	// APIAudiences are the audiences the API server accepts in
	// service-account tokens (--api-audiences); the issuer if empty.
	APIAudiences []string
	// Args are more kube-apiserver flags, after (and so overriding) the
	// ones kubetest sets.
	Args []string
}

// Cluster is a running etcd and kube-apiserver. Its fields are read-only.
type Cluster struct {
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// CA issued the API server's serving certificate and is its client
	// CA: a certificate it issues is a user of the cluster (CN the name,
	// O the groups), and a webhook the API server calls may serve one.
	CA *testutil.CA
	// CAPEM is the CA certificate, PEM-encoded, and CAFile a file holding
	// it, for clients that verify the API server.
	CAPEM  []byte
	CAFile string
	// ServiceAccountIssuer is the issuer of the cluster's service-account
	// tokens (their iss claim).
	ServiceAccountIssuer string
	// Dir holds the cluster's files: certificates, keys, etcd's data and
	// the two servers' logs (etcd.log, kube-apiserver.log).
	Dir string

	admin     *testutil.Leaf
	etcd      *testutil.Process
	apiserver *testutil.Process

	clientOnce sync.Once
	client     kubernetes.Interface
}

// Start runs a cluster for the test and stops it, with its processes, when
// the test ends; if the test failed, the last lines of both servers' logs
// are logged. It builds the servers first if needed (EnsureBinaries, with
// progress on stderr) and skips the test under -short.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	skipShort(tb)
	bins, err := EnsureBinaries(tb.Context(), os.Stderr)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := start(tb, tb.Context(), bins, tb.TempDir(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(c.logTails(50))
		}
		if err := c.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

func skipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("kubetest: -short skips tests that run kube-apiserver")
	}
}

// start runs etcd and kube-apiserver with their files in dir and waits
// until the API server is ready. tb is used only by the test PKI helpers,
// which fail it on errors that do not happen. A server that cannot take
// the free port it was given (another process took it in between) is
// retried on new ports.
func start(tb testing.TB, ctx context.Context, bins Binaries, dir string, opts Options) (*Cluster, error) {
	tb.Helper()
	c := &Cluster{Dir: dir, CA: testutil.NewCA(tb), ServiceAccountIssuer: opts.ServiceAccountIssuer}
	if c.ServiceAccountIssuer == "" {
		c.ServiceAccountIssuer = DefaultServiceAccountIssuer
	}
	c.CAPEM = c.CA.PEM
	c.CAFile = testutil.WriteFile(tb, dir, "ca.crt", c.CAPEM)
	c.admin = c.CA.Client(tb, "kubetest-admin", "system:masters")
	serving := c.CA.Server(tb, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
	testutil.WriteFile(tb, dir, "apiserver.crt", serving.CertPEM)
	testutil.WriteFile(tb, dir, "apiserver.key", serving.KeyPEM)
	if err := writeServiceAccountKey(dir); err != nil {
		return nil, err
	}
	if opts.TokenWebhookConfig != nil {
		testutil.WriteFile(tb, dir, "token-webhook.kubeconfig", opts.TokenWebhookConfig)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.run(ctx, bins, opts); !errors.Is(err, errPortTaken) {
			break
		}
	}
	return c, err
}

// errPortTaken marks a server that exited because its port was taken.
var errPortTaken = errors.New("port already in use")

// run starts both servers on free ports; on error it stops whatever it
// started.
func (c *Cluster) run(ctx context.Context, bins Binaries, opts Options) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, c.logTails(50))
			_ = c.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL, err := c.runEtcd(ctx, bins.Etcd, ports[0], ports[1])
	if err != nil {
		return err
	}
	return c.runAPIServer(ctx, bins.APIServer, etcdURL, ports[2], opts)
}

// runEtcd starts etcd with a fresh data directory and waits until it is
// healthy; it returns its client URL.
func (c *Cluster) runEtcd(ctx context.Context, bin string, clientPort, peerPort int) (string, error) {
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	data := filepath.Join(c.Dir, "etcd-data")
	if err := os.RemoveAll(data); err != nil { // a failed attempt's
		return "", fmt.Errorf("kubetest: %w", err)
	}
	var err error
	c.etcd, err = c.startServer(bin, "etcd.log",
		"--name=kubetest", "--data-dir="+data,
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		// The data is thrown away with the test.
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return "", err
	}
	if err := c.waitReady(ctx, c.etcd, "etcd.log", etcdURL+"/health", http.DefaultClient); err != nil {
		return "", fmt.Errorf("kubetest: etcd: %w", err)
	}
	return etcdURL, nil
}

// runAPIServer starts kube-apiserver on port and waits until /readyz
// answers.
func (c *Cluster) runAPIServer(ctx context.Context, bin, etcdURL string, port int, opts Options) error {
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.Dir, "certs"),
		"--tls-cert-file=" + filepath.Join(c.Dir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(c.Dir, "apiserver.key"),
		"--client-ca-file=" + c.CAFile,
		"--service-account-issuer=" + c.ServiceAccountIssuer,
		"--service-account-key-file=" + filepath.Join(c.Dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(c.Dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		// The default reconciler writes the kubernetes Service's endpoints
		// from the advertise address, and refuses a loopback one.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if len(opts.APIAudiences) > 0 {
		args = append(args, "--api-audiences="+strings.Join(opts.APIAudiences, ","))
	}
	if opts.TokenWebhookConfig != nil {
		version := opts.TokenWebhookVersion
		if version == "" {
			version = "v1"
		}
		args = append(args,
			"--authentication-token-webhook-config-file="+filepath.Join(c.Dir, "token-webhook.kubeconfig"),
			"--authentication-token-webhook-version="+version,
			"--authentication-token-webhook-cache-ttl="+opts.TokenWebhookCacheTTL.String())
	}
	args = append(args, opts.Args...)
	var err error
	c.apiserver, err = c.startServer(bin, "kube-apiserver.log", args...)
	if err != nil {
		return err
	}
	admin, err := rest.HTTPClientFor(c.AdminConfig())
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	defer admin.CloseIdleConnections()
	if err := c.waitReady(ctx, c.apiserver, "kube-apiserver.log", c.URL+"/readyz", admin); err != nil {
		return fmt.Errorf("kubetest: kube-apiserver: %w", err)
	}
	return nil
}

// startServer starts bin in a process group of its own, its output going
// to logName in the cluster's directory. The server keeps the test's
// working directory, which is how scripts/test.sh tells the servers of
// this checkout's tests from others on the machine.
func (c *Cluster) startServer(bin, logName string, args ...string) (*testutil.Process, error) {
	log, err := os.Create(filepath.Join(c.Dir, logName))
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	return testutil.StartProcess(cmd)
}

// waitReady polls url until it answers 200, failing when the process
// exits first or readyTimeout passes.
func (c *Cluster) waitReady(ctx context.Context, p *testutil.Process, logName, url string, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := readShort(resp)
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s\n%s", url, resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-p.Exited():
			if log, _ := os.ReadFile(filepath.Join(c.Dir, logName)); bytes.Contains(log, []byte("address already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("exited before it was ready: %v", p.Err())
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s (%w); last answer: %s", readyTimeout, ctx.Err(), last)
		case <-tick.C: // an external process: poll it
		}
	}
}

// readShort reads the start of a response body, for an error message.
func readShort(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 4096))
}

// freePorts returns n distinct loopback ports nothing listens on now.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: find a free port: %w", err)
		}
		defer l.Close() // held until all are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServiceAccountKey writes the key pair that signs service-account
// tokens: RSA, as in kubeadm clusters, so tokens are RS256.
func writeServiceAccountKey(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("kubetest: service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("kubetest: service-account key: %w", err)
	}
	for name, block := range map[string]*pem.Block{
		"sa.key": {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		"sa.pub": {Type: "PUBLIC KEY", Bytes: pub},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}
	return nil
}

// Stop kills both servers (SIGKILL to each process group: the cluster's
// state is thrown away) and waits until they have exited. Start's cleanup
// calls it; a test calls it itself to see the API server go away. Calling
// it again does nothing.
func (c *Cluster) Stop() error {
	var err error
	for _, p := range []*testutil.Process{c.apiserver, c.etcd} {
		if p != nil {
			err = errors.Join(err, p.Stop(0))
		}
	}
	if err != nil {
		return fmt.Errorf("kubetest: stop: %w", err)
	}
	return nil
}

// logTails returns the last n lines of each server's log, for a failure
// message.
func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		data, err := os.ReadFile(filepath.Join(c.Dir, name))
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", len(lines), filepath.Join(c.Dir, name), strings.Join(lines, "\n"))
	}
	return b.String()
}

// AdminConfig is a client configuration for the cluster's administrator:
// a client certificate in group system:masters, which RBAC lets do
// anything. Client rate limiting is off: tests are the only callers.
func (c *Cluster) AdminConfig() *rest.Config {
	cfg := c.baseConfig()
	cfg.CertData, cfg.KeyData = c.admin.CertPEM, c.admin.KeyPEM
	return cfg
}

// BearerConfig is a client configuration that presents token as a bearer
// token and no client certificate: requests made with it are
// authenticated as whoever the API server (or its token webhook) says the
// token belongs to.
func (c *Cluster) BearerConfig(token string) *rest.Config {
	cfg := c.baseConfig()
	cfg.BearerToken = token
	return cfg
}

func (c *Cluster) baseConfig() *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM},
		QPS:             -1,
		Timeout:         30 * time.Second,
	}
}

// Client is a clientset for the administrator (AdminConfig).
func (c *Cluster) Client() kubernetes.Interface {
	c.clientOnce.Do(func() {
		cs, err := kubernetes.NewForConfig(c.AdminConfig())
		if err != nil {
			panic(fmt.Sprintf("kubetest: admin client: %v", err)) // the configuration is built above
		}
		c.client = cs
	})
	return c.client
}

// EnsureServiceAccount creates the namespace and the service account in it
// unless they exist. There is no controller-manager, so not even a
// namespace's "default" service account is created on its own.
func (c *Cluster) EnsureServiceAccount(ctx context.Context, namespace, name string) error {
	cs := c.Client()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: create namespace %s: %w", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: create service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// TokenFor returns a service-account token for namespace/name from the
// TokenRequest API, as a pod's projected token is made. The audiences are
// the token's aud (the API server's own when empty); ttl is its lifetime,
// at least 10 minutes (the API server's minimum), or 0 for the server's
// default of an hour. The service account must exist (EnsureServiceAccount).
func (c *Cluster) TokenFor(ctx context.Context, namespace, name string, audiences []string, ttl time.Duration) (string, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}}
	if ttl > 0 {
		secs := int64(ttl / time.Second)
		req.Spec.ExpirationSeconds = &secs
	}
	resp, err := c.Client().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("kubetest: token for %s/%s: %w", namespace, name, err)
	}
	return resp.Status.Token, nil
}

// WriteKubeconfig writes a kubeconfig file at path whose one context
// points at the cluster (verified with its CA) as user, for programs that
// read a kubeconfig, such as kubectl with an exec credential plugin
// (user.Exec). A nil user is the administrator's client certificate.
func (c *Cluster) WriteKubeconfig(path string, user *clientcmdapi.AuthInfo) error {
	if user == nil {
		user = &clientcmdapi.AuthInfo{ClientCertificateData: c.admin.CertPEM, ClientKeyData: c.admin.KeyPEM}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.CAPEM}
	cfg.AuthInfos["kubetest"] = user
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest"}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubetest: write kubeconfig: %w", err)
	}
	return nil
}

// TokenWebhookKubeconfig is a kubeconfig for Options.TokenWebhookConfig:
// the API server posts TokenReviews to url (the webhook's full URL,
// https), verifying its certificate with caPEM. The API server presents
// no client certificate.
func TokenWebhookKubeconfig(url string, caPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["webhook"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["kube-apiserver"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "webhook", AuthInfo: "kube-apiserver"}
	cfg.CurrentContext = "webhook"
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("kubetest: webhook kubeconfig: %w", err)
	}
	return out, nil
}
