package kumotest

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/sekisho/sekisho/internal/testutil"
)

// TestSpec: the binary is kumo's command, from the release tools/kumo pins.
func TestSpec(t *testing.T) {
	s, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bins) != 1 || s.Bins[0].Name != "kumo" || s.Bins[0].Pkg != "github.com/sivchari/kumo/cmd/kumo" || s.CacheEnv != CacheEnv || s.Dir != "tools/kumo" {
		t.Fatalf("spec %+v", s)
	}
}

// TestEnv: the SDK environment points every service, STS included, at the
// emulator, and unsets what would reach the machine's own configuration
// (AWS_CA_BUNDLE, profiles, other credentials); Environ and Setenv apply
// it, "" unsetting.
func TestEnv(t *testing.T) {
	s := &Server{URL: "http://127.0.0.1:1", Region: DefaultRegion}
	env := s.Env()
	for k, want := range map[string]string{
		"AWS_ENDPOINT_URL": s.URL, "AWS_ENDPOINT_URL_STS": s.URL, "AWS_REGION": DefaultRegion,
		"AWS_CA_BUNDLE": "", "AWS_PROFILE": "", "AWS_ROLE_ARN": "", "AWS_CONFIG_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		if got, ok := env[k]; !ok || got != want {
			t.Errorf("%s = %q (set %v), want %q", k, got, ok, want)
		}
	}
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	t.Setenv("AWS_PROFILE", "someone-elses")
	t.Setenv("KUMOTEST_KEEP", "1")
	environ := Environ(env)
	for _, kv := range environ {
		if strings.HasPrefix(kv, "AWS_CA_BUNDLE=") || strings.HasPrefix(kv, "AWS_PROFILE=") {
			t.Errorf("Environ keeps %s", kv)
		}
	}
	if !slices.Contains(environ, "KUMOTEST_KEEP=1") || !slices.Contains(environ, "AWS_ENDPOINT_URL="+s.URL) {
		t.Errorf("Environ = %q", environ)
	}
	Setenv(t, env)
	if _, ok := os.LookupEnv("AWS_CA_BUNDLE"); ok {
		t.Error("Setenv left AWS_CA_BUNDLE set")
	}
	if os.Getenv("AWS_ENDPOINT_URL_STS") != s.URL {
		t.Error("Setenv did not set AWS_ENDPOINT_URL_STS")
	}
}

// TestStartStop: kumo answers once Start returns, on loopback, and Stop
// leaves neither the process nor the port.
func TestStartStop(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL)
	}
	resp, err := http.Get(s.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %s", resp.Status)
	}
	// The helpers store what they say.
	s.CreateJSONSecret(t, "app", map[string]string{"user": "u"})
	s.CreateBinarySecret(t, "blob", []byte{0, 1})
	first := s.CreateSecret(t, "db", "v1")
	second := s.PutSecretValue(t, "db", "v2")
	if v := s.PutParameter(t, "/p", "x"); v != 1 {
		t.Errorf("first parameter version %d", v)
	}
	for _, tc := range []struct{ id, stage, want string }{
		{"app", "", `{"user":"u"}`}, {"blob", "", "\x00\x01"}, {"db", "", "v2"}, {"db", "AWSPREVIOUS", "v1"},
		{"db", first.VersionID, "v1"}, {"db", second, "v2"},
	} {
		in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(tc.id)}
		if strings.HasPrefix(tc.stage, "AWS") {
			in.VersionStage = aws.String(tc.stage)
		} else if tc.stage != "" {
			in.VersionId = aws.String(tc.stage)
		}
		out, err := s.sm.GetSecretValue(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		got := aws.ToString(out.SecretString)
		if out.SecretBinary != nil {
			got = string(out.SecretBinary)
		}
		if got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.id, tc.stage, got, tc.want)
		}
	}
	env := s.WebIdentityEnv(t, "a-token")
	if env["AWS_ACCESS_KEY_ID"] != "" || env["AWS_ROLE_ARN"] != RoleARN {
		t.Errorf("web identity env %v", env)
	}
	if data, err := os.ReadFile(env["AWS_WEB_IDENTITY_TOKEN_FILE"]); err != nil || string(data) != "a-token" {
		t.Errorf("token file: %q, %v", data, err)
	}
	pid := s.proc.Pid()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if testutil.Running(pid) {
		t.Errorf("kumo (pid %d) still running after Stop", pid)
	}
	if resp, err := http.Get(s.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Error("kumo still answers after Stop")
	}
}
