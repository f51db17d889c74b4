// Package kumotest runs kumo, an AWS emulator written in Go, for tests:
// Secrets Manager, SSM Parameter Store and STS on one loopback port, so the
// AWS secret store is tested through the real aws-sdk-go-v2 against a real
// server rather than a model of it, the whole web-identity chain included
// (a token file and AWS_ROLE_ARN → STS AssumeRoleWithWebIdentity →
// temporary credentials → GetSecretValue).
//
// kumo checks no signatures, IAM policies or web-identity tokens: what the
// tests prove is what the SDK sends and what sekisho does with the answers,
// not AWS's access control.
//
// Start gives one test its own emulator (it is ready in well under a second)
// and stops it when the test ends. Env is the environment that points the
// SDK at it and nowhere else; Setenv applies it to the test's process.
//
// The emulator is built from source on first use (EnsureBinary): about 8
// CPU-minutes cold, once per machine. Under -short the tests that need it
// are skipped; otherwise an emulator that cannot be built or started fails
// the test.
package kumotest

import (
	"bytes"
	"context"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/sekisho/sekisho/internal/testutil"
)

// DefaultRegion is the region kumo writes into the ARNs it makes, and the
// AWS_REGION of Env.
const DefaultRegion = "eu-west-3"

// AccountID is the account in every ARN kumo makes.
const AccountID = "000000000000"

// RoleARN is the role Env's web-identity variant assumes.
const RoleARN = "arn:aws:iam::" + AccountID + ":role/sekisho-kumotest"

// readyTimeout bounds how long Start waits for /health (well under a
// second is usual).
const readyTimeout = 30 * time.Second

// Server is a running kumo. Its fields are read-only.
type Server struct {
	// URL is the emulator's address, http://127.0.0.1:PORT, for every
	// service.
	URL string
	// Region is the region in the ARNs it makes.
	Region string
	// Dir holds its log, kumo.log.
	Dir string

	proc *testutil.Process
	sm   *secretsmanager.Client
	ssm  *ssm.Client
}

// Start runs kumo for the test and stops it when the test ends; if the test
// failed, the end of its log is logged. It builds kumo first if needed
// (EnsureBinary, with progress on stderr) and skips the test under -short.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("kumotest: -short skips tests that run the AWS emulator")
	}
	bin, err := EnsureBinary(tb.Context(), os.Stderr)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Region: DefaultRegion, Dir: tb.TempDir()}
	for attempt := 0; ; attempt++ {
		err = s.start(tb.Context(), bin)
		if !errors.Is(err, errPortTaken) || attempt == 2 {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(s.logTail(30))
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	cfg := aws.Config{
		Region:       s.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("kumotest", "kumotest", ""),
		BaseEndpoint: aws.String(s.URL),
		// A test helper that fails at once says more than one that retries.
		RetryMaxAttempts: 1,
	}
	s.sm = secretsmanager.NewFromConfig(cfg)
	s.ssm = ssm.NewFromConfig(cfg)
	return s
}

// errPortTaken marks a kumo that exited because its port was taken.
var errPortTaken = errors.New("port already in use")

// start runs kumo on a free port and waits until /health answers.
func (s *Server) start(ctx context.Context, bin string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("kumotest: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	log, err := os.Create(filepath.Join(s.Dir, "kumo.log"))
	if err != nil {
		return fmt.Errorf("kumotest: %w", err)
	}
	defer log.Close() // the child has its own descriptor
	// It binds every address unless told otherwise.
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = serverEnv(s.Region)
	s.proc, err = testutil.StartProcess(cmd)
	if err != nil {
		return fmt.Errorf("kumotest: %w", err)
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.proc.Stop(0)
		return err
	}
	return nil
}

// serverEnv is kumo's environment: the test's without any KUMO_ or AWS_
// variable (KUMO_DATA_DIR would make it keep state between tests), and
// the region its ARNs name.
func serverEnv(region string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUMO_") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_DEFAULT_REGION="+region, "KUMO_LOG_LEVEL=warn")
}

// waitReady polls /health until it answers 200, failing when kumo exits
// first or readyTimeout passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
		if err != nil {
			return fmt.Errorf("kumotest: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-s.proc.Exited():
			if log, _ := os.ReadFile(filepath.Join(s.Dir, "kumo.log")); bytes.Contains(log, []byte("address already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("kumotest: kumo exited before it was ready: %v\n%s", s.proc.Err(), s.logTail(30))
		case <-ctx.Done():
			return fmt.Errorf("kumotest: kumo not ready within %s (%w); last answer: %s\n%s", readyTimeout, ctx.Err(), last, s.logTail(30))
		case <-tick.C: // an external process: poll it
		}
	}
}

// Stop kills kumo (its state is thrown away) and waits until it has
// exited. Start's cleanup calls it; a test calls it itself to see the store
// go away. Calling it again does nothing.
func (s *Server) Stop() error {
	if err := s.proc.Stop(0); err != nil {
		return fmt.Errorf("kumotest: stop: %w", err)
	}
	return nil
}

// logTail returns the last n lines of kumo's log, for a failure message.
func (s *Server) logTail(n int) string {
	data, err := os.ReadFile(filepath.Join(s.Dir, "kumo.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "kumo.log (end):\n" + strings.Join(lines, "\n")
}

// Secret is a secret as the emulator stored it.
type Secret struct {
	Name      string
	ARN       string
	VersionID string
}

// CreateSecret creates a secret holding value (a string: text or JSON);
// its one version is AWSCURRENT.
func (s *Server) CreateSecret(tb testing.TB, name, value string) Secret {
	tb.Helper()
	return s.create(tb, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
}

// CreateJSONSecret creates a secret holding the JSON object of fields.
func (s *Server) CreateJSONSecret(tb testing.TB, name string, fields map[string]string) Secret {
	tb.Helper()
	data, err := json.Marshal(fields)
	if err != nil {
		tb.Fatal(err)
	}
	return s.CreateSecret(tb, name, string(data))
}

// CreateBinarySecret creates a secret holding bytes (SecretBinary).
func (s *Server) CreateBinarySecret(tb testing.TB, name string, value []byte) Secret {
	tb.Helper()
	return s.create(tb, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretBinary: value})
}

func (s *Server) create(tb testing.TB, in *secretsmanager.CreateSecretInput) Secret {
	tb.Helper()
	out, err := s.sm.CreateSecret(tb.Context(), in)
	if err != nil {
		tb.Fatalf("kumotest: create secret %s: %v", aws.ToString(in.Name), err)
	}
	return Secret{Name: aws.ToString(out.Name), ARN: aws.ToString(out.ARN), VersionID: aws.ToString(out.VersionId)}
}

// PutSecretValue adds a version holding value to the secret name and
// makes it AWSCURRENT; the version that was current becomes AWSPREVIOUS.
// It returns the new version's id.
func (s *Server) PutSecretValue(tb testing.TB, name, value string) string {
	tb.Helper()
	out, err := s.sm.PutSecretValue(tb.Context(), &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
	if err != nil {
		tb.Fatalf("kumotest: put a value into secret %s: %v", name, err)
	}
	return aws.ToString(out.VersionId)
}

// PutParameter creates or overwrites the SSM parameter name, a
// SecureString, and returns its version.
func (s *Server) PutParameter(tb testing.TB, name, value string) int64 {
	tb.Helper()
	out, err := s.ssm.PutParameter(tb.Context(), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	})
	if err != nil {
		tb.Fatalf("kumotest: put parameter %s: %v", name, err)
	}
	return out.Version
}

// hermetic are the variables through which the SDK would find other
// credentials, endpoints, configuration or a CA bundle on the machine
// running the tests; Env unsets each one it does not set. AWS_CA_BUNDLE in
// particular is exported on some machines and breaks the SDK's HTTP
// client.
var hermetic = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS",
	"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
	"AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
	"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED",
}

// Env is the environment that points aws-sdk-go-v2 at the emulator and
// nowhere else, with static credentials: a map of every variable it
// touches, "" meaning unset. AWS_ENDPOINT_URL_STS is set as well as
// AWS_ENDPOINT_URL because the SDK's web-identity STS client ignores the
// global one. Change the map before applying it with Setenv or Environ.
func (s *Server) Env() map[string]string {
	env := make(map[string]string, len(hermetic))
	for _, k := range hermetic {
		env[k] = ""
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":            s.URL,
		"AWS_ENDPOINT_URL_STS":        s.URL,
		"AWS_REGION":                  s.Region,
		"AWS_ACCESS_KEY_ID":           "kumotest",
		"AWS_SECRET_ACCESS_KEY":       "kumotest",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		env[k] = v
	}
	return env
}

// WebIdentityEnv is Env without static credentials and with a web
// identity instead, as EKS gives a pod with IRSA: AWS_ROLE_ARN (RoleARN)
// and AWS_WEB_IDENTITY_TOKEN_FILE naming a file that holds token. The SDK
// then exchanges the token for temporary credentials at the emulator's
// STS (AssumeRoleWithWebIdentity); kumo checks neither the token nor the
// role.
func (s *Server) WebIdentityEnv(tb testing.TB, token string) map[string]string {
	tb.Helper()
	env := s.Env()
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "", ""
	env["AWS_ROLE_ARN"] = RoleARN
	env["AWS_ROLE_SESSION_NAME"] = "kumotest"
	env["AWS_WEB_IDENTITY_TOKEN_FILE"] = testutil.WriteFile(tb, tb.TempDir(), "token", []byte(token))
	return env
}

// Setenv applies env (from Env) to the test's process for the rest of the
// test: "" unsets a variable. Like t.Setenv, it cannot be used in parallel
// tests.
func Setenv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v) // restores the old value when the test ends
		if v == "" {
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Environ is the process's environment with env (from Env) applied, for
// a child process's exec.Cmd.Env: "" unsets a variable.
func Environ(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}
