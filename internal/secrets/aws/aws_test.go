package aws_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/sekisho/sekisho/internal/kumotest"
	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/aws"
)

// Secret values the tests store; no error may contain one.
const (
	dbPassword   = "s3cr3t-db-password-value"
	oldPassword  = "0ld-db-password-value"
	apiKey       = "ak-3f9c1e77-value"
	jsonSecret   = `{"user":"app","password":"js0n-password-value"}`
	ssmPassword  = "ssm-s3cure-string-value"
	binaryMarker = "\x00\xffbinary-secret-value\x01"
)

var values = []string{dbPassword, oldPassword, apiKey, jsonSecret, "js0n-password-value", ssmPassword, binaryMarker}

// noValue fails the test when err's message holds a secret value.
func noValue(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, v := range values {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error %q holds the secret value %q", err, v)
		}
	}
}

// call is one request the recording proxy saw.
type call struct {
	op           string // X-Amz-Target or the query protocol's Action
	accessKey    string // from the SigV4 credential scope, "" when unsigned
	region       string
	sessionToken bool
	body         []byte
}

// recorder is a reverse proxy in front of kumo that notes every request,
// so a test sees what the SDK sent: which operation, signed with which
// access key for which region, and how many STS calls were made.
type recorder struct {
	URL   string
	mu    sync.Mutex
	calls []call
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	r := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		c := call{op: req.Header.Get("X-Amz-Target"), body: body, sessionToken: req.Header.Get("X-Amz-Security-Token") != ""}
		if c.op == "" {
			form, _ := url.ParseQuery(string(body))
			c.op = form.Get("Action")
		}
		// AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...
		if _, cred, ok := strings.Cut(req.Header.Get("Authorization"), "Credential="); ok {
			parts := strings.Split(cred, "/")
			if len(parts) >= 3 {
				c.accessKey, c.region = parts[0], parts[2]
			}
		}
		r.mu.Lock()
		r.calls = append(r.calls, c)
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *recorder) ops(op string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if strings.HasSuffix(c.op, op) {
			out = append(out, c)
		}
	}
	return out
}

// start runs kumo, points the SDK at it through a recorder with static
// credentials, and returns both.
func start(t *testing.T) (*kumotest.Server, *recorder, map[string]string) {
	t.Helper()
	kumo := kumotest.Start(t)
	rec := newRecorder(t, kumo.URL)
	env := kumo.Env()
	env["AWS_ENDPOINT_URL"], env["AWS_ENDPOINT_URL_STS"] = rec.URL, rec.URL
	return kumo, rec, env
}

func newProvider(t *testing.T, env map[string]string) *aws.Provider {
	t.Helper()
	kumotest.Setenv(t, env)
	p, err := aws.New(t.Context(), aws.OptionsFromEnv(os.Getenv))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sm(path string) secretref.Ref {
	return secretref.Ref{Raw: "sekisho+aws-sm://" + path, Scheme: secretref.AWSSecretsManager, Path: path}
}

func ssmRef(path string) secretref.Ref {
	return secretref.Ref{Raw: "sekisho+aws-ssm://" + path, Scheme: secretref.AWSParameterStore, Path: path}
}

// TestSecretsManager: every way of naming a secret and its versions gives
// the right bytes, through the SDK against kumo.
func TestSecretsManager(t *testing.T) {
	kumo, _, env := start(t)
	db := kumo.CreateSecret(t, "prod/db", oldPassword)
	current := kumo.PutSecretValue(t, "prod/db", dbPassword)
	kumo.CreateSecret(t, "prod/app", jsonSecret)
	kumo.CreateBinarySecret(t, "prod/blob", []byte(binaryMarker))
	p := newProvider(t, env)
	withVersion := func(r secretref.Ref, id, stage string) secretref.Ref {
		r.Version, r.Stage = id, stage
		r.Raw += "?v"
		return r
	}
	partialARN := strings.TrimSuffix(db.ARN, db.ARN[strings.LastIndex(db.ARN, "-"):])
	for _, tc := range []struct {
		name string
		ref  secretref.Ref
		want string
	}{
		{"name", sm("prod/db"), dbPassword},
		{"ARN", sm(db.ARN), dbPassword},
		{"partial ARN", sm(partialARN), dbPassword},
		{"stage AWSCURRENT", withVersion(sm("prod/db"), "", "AWSCURRENT"), dbPassword},
		{"stage AWSPREVIOUS", withVersion(sm("prod/db"), "", "AWSPREVIOUS"), oldPassword},
		{"old version id", withVersion(sm("prod/db"), db.VersionID, ""), oldPassword},
		{"current version id", withVersion(sm("prod/db"), current, ""), dbPassword},
		{"JSON, whole", sm("prod/app"), jsonSecret},
		{"binary", sm("prod/blob"), binaryMarker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Resolve(t.Context(), tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if !strings.Contains(partialARN, ":secret:prod/db") || partialARN == db.ARN {
		t.Errorf("partial ARN %q of %q", partialARN, db.ARN)
	}
}

// TestParameterStore: a SecureString comes back decrypted, by a name with
// a leading slash and without.
func TestParameterStore(t *testing.T) {
	kumo, rec, env := start(t)
	kumo.PutParameter(t, "/prod/db/password", ssmPassword)
	kumo.PutParameter(t, "plain-name", apiKey)
	p := newProvider(t, env)
	for name, want := range map[string]string{"/prod/db/password": ssmPassword, "plain-name": apiKey} {
		got, err := p.Resolve(t.Context(), ssmRef(name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	for _, c := range rec.ops("GetParameter") {
		if !bytes.Contains(c.body, []byte(`"WithDecryption":true`)) {
			t.Errorf("GetParameter without decryption: %s", c.body)
		}
	}
}

// TestWebIdentity is the IRSA chain: no static keys, AWS_ROLE_ARN and a
// token file; the SDK exchanges the token at STS once and signs every
// request with the temporary credentials, however many secrets are
// resolved and however many at once.
func TestWebIdentity(t *testing.T) {
	kumo, rec, _ := start(t)
	const token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cHJvZDphcHAifQ.sig"
	env := kumo.WebIdentityEnv(t, token)
	env["AWS_ENDPOINT_URL"], env["AWS_ENDPOINT_URL_STS"] = rec.URL, rec.URL
	for i := range 10 {
		kumo.CreateSecret(t, fmt.Sprintf("prod/s%d", i), dbPassword)
	}
	kumo.PutParameter(t, "/prod/p", ssmPassword)
	p := newProvider(t, env)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 10 {
		wg.Go(func() {
			got, err := p.Resolve(t.Context(), sm(fmt.Sprintf("prod/s%d", i)))
			if err == nil && string(got) != dbPassword {
				err = fmt.Errorf("s%d: got %q", i, got)
			}
			errs <- err
		})
	}
	wg.Wait()
	// Then one by one: the cached credentials serve these too.
	for _, r := range []secretref.Ref{ssmRef("/prod/p"), sm("prod/s0")} {
		_, err := p.Resolve(t.Context(), r)
		errs <- err
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	sts := rec.ops("AssumeRoleWithWebIdentity")
	if len(sts) != 1 {
		t.Fatalf("%d AssumeRoleWithWebIdentity calls; want 1 for all references", len(sts))
	}
	if !bytes.Contains(sts[0].body, []byte(token)) || !bytes.Contains(sts[0].body, []byte(url.QueryEscape(kumotest.RoleARN))) {
		t.Errorf("STS call without the token file's token or the role: %s", sts[0].body)
	}
	gets := append(rec.ops("GetSecretValue"), rec.ops("GetParameter")...)
	if len(gets) != 12 {
		t.Fatalf("%d reads; want 12", len(gets))
	}
	for _, c := range gets {
		if c.accessKey == "" || c.accessKey == "kumotest" || !c.sessionToken || c.region != kumotest.DefaultRegion {
			t.Errorf("%s signed with key %q (session token %v) for region %q; want STS's temporary credentials for %s", c.op, c.accessKey, c.sessionToken, c.region, kumotest.DefaultRegion)
		}
	}
}

// TestRegion: a reference without a region, in an environment without
// one, fails saying to set AWS_REGION and why; an ARN's region, or the
// reference's own, is used instead of the environment's.
func TestRegion(t *testing.T) {
	kumo, rec, env := start(t)
	db := kumo.CreateSecret(t, "prod/db", dbPassword)
	env["AWS_REGION"] = ""
	p := newProvider(t, env)

	_, err := p.Resolve(t.Context(), sm("prod/db"))
	if !errors.Is(err, aws.ErrNoRegion) {
		t.Fatalf("no region: got %v, want ErrNoRegion", err)
	}
	for _, want := range []string{"sekisho+aws-sm://prod/db", "set AWS_REGION", "STS", "global"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n := len(rec.ops("")); n != 0 {
		t.Errorf("%d requests sent without a region", n)
	}

	got, err := p.Resolve(t.Context(), sm(db.ARN))
	if err != nil || string(got) != dbPassword {
		t.Fatalf("by ARN without AWS_REGION: %q, %v", got, err)
	}
	withRegion := sm("prod/db")
	withRegion.Region = "ap-northeast-1"
	if _, err := p.Resolve(t.Context(), withRegion); err != nil {
		t.Fatal(err)
	}
	gets := rec.ops("GetSecretValue")
	if len(gets) != 2 || gets[0].region != kumotest.DefaultRegion || gets[1].region != "ap-northeast-1" {
		t.Errorf("regions signed for: %+v; want the ARN's, then the reference's", gets)
	}
}

// TestRegionFromARNOverEnvironment: the ARN's region wins over AWS_REGION
// (the secret lives there).
func TestRegionFromARNOverEnvironment(t *testing.T) {
	kumo, rec, env := start(t)
	db := kumo.CreateSecret(t, "prod/db", dbPassword)
	env["AWS_REGION"] = "us-east-1"
	p := newProvider(t, env)
	if _, err := p.Resolve(t.Context(), sm(db.ARN)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resolve(t.Context(), sm("prod/db")); err != nil {
		t.Fatal(err)
	}
	gets := rec.ops("GetSecretValue")
	if len(gets) != 2 || gets[0].region != kumotest.DefaultRegion || gets[1].region != "us-east-1" {
		t.Errorf("regions signed for: %+v; want the ARN's, then AWS_REGION", gets)
	}
}

func withRegion(r secretref.Ref, region string) secretref.Ref {
	r.Region = region
	return r
}

// TestBadReferences are refused before any request: a region that
// contradicts the ARN, an ARN of another service, a version stage on a
// parameter, a parameter version that is not a number.
func TestBadReferences(t *testing.T) {
	p, err := aws.New(t.Context(), aws.Options{Region: "eu-west-3", ConfigOptions: []func(*config.LoadOptions) error{
		config.WithBaseEndpoint("http://127.0.0.1:1"), // nothing listens: a request would fail otherwise
		config.WithCredentialsProvider(awssdk.AnonymousCredentials{}),
		config.WithSharedConfigFiles([]string{os.DevNull}), config.WithSharedCredentialsFiles([]string{os.DevNull}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	conflict := sm("arn:aws:secretsmanager:eu-west-3:000000000000:secret:prod/db")
	conflict.Region = "us-east-1"
	stage := ssmRef("/prod/p")
	stage.Stage = "AWSPREVIOUS"
	version := ssmRef("/prod/p")
	version.Version = "latest"
	for _, tc := range []struct {
		ref  secretref.Ref
		want string
	}{
		{conflict, "differs from the ARN's region"},
		{withRegion(sm("prod/db"), "eu-west-3.evil.example/x"), "not an AWS region"},
		{sm("arn:aws:secretsmanager:EU:0:secret:x"), "not an AWS region"},
		{sm("arn:aws:ssm:eu-west-3:000000000000:parameter/prod/p"), "names a ssm resource"},
		{ssmRef("arn:aws:secretsmanager:eu-west-3:000000000000:secret:x"), "names a secretsmanager resource"},
		{sm("arn:aws:secretsmanager"), "not a valid ARN"},
		{sm("arn:aws:secretsmanager:eu-west-3:0:rotation:x"), "needs a secretsmanager one"},
		{sm("prod/db:3"), "not a valid secretsmanager name"},
		{sm(""), "not a valid secretsmanager name"},
		{ssmRef("/prod/p:3"), "not a valid ssm name"},
		{ssmRef("/prod/p with space"), "not a valid ssm name"},
		{stage, "no version stages"},
		{version, "a number from 1"},
		{secretref.Ref{Raw: "sekisho+vault://secret/x", Scheme: secretref.Vault, Path: "secret/x"}, "does not serve"},
	} {
		_, err := p.Resolve(t.Context(), tc.ref)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.ref.Raw) {
			t.Errorf("%+v: got %v, want an error naming the reference and saying %q", tc.ref, err, tc.want)
		}
	}
}

// TestNotFound: a missing secret, version or parameter is ErrNotFound,
// naming the reference.
func TestNotFound(t *testing.T) {
	kumo, _, env := start(t)
	kumo.CreateSecret(t, "prod/db", dbPassword)
	p := newProvider(t, env)
	noVersion := sm("prod/db")
	noVersion.Version = "00000000-0000-0000-0000-000000000000"
	noVersion.Raw += "?version-id=" + noVersion.Version
	for _, ref := range []secretref.Ref{sm("prod/nope"), noVersion, ssmRef("/prod/nope")} {
		_, err := p.Resolve(t.Context(), ref)
		if !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), ref.Raw) {
			t.Errorf("%s: got %v, want ErrNotFound naming the reference", ref.Raw, err)
		}
		noValue(t, err)
	}
}

// TestStoreDown: with kumo stopped, the error says the store could not be
// reached, and is not ErrNotFound (retrying may help).
func TestStoreDown(t *testing.T) {
	kumo := kumotest.Start(t)
	env := kumo.Env() // no recording proxy: it would answer 502 for kumo
	kumo.CreateSecret(t, "prod/db", dbPassword)
	p := newProvider(t, env)
	if _, err := p.Resolve(t.Context(), sm("prod/db")); err != nil {
		t.Fatal(err)
	}
	if err := kumo.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []secretref.Ref{sm("prod/db"), ssmRef("/prod/p")} {
		_, err := p.Resolve(t.Context(), ref)
		if err == nil || errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "could not be reached") || !strings.Contains(err.Error(), ref.Raw) {
			t.Errorf("%s with the store down: %v", ref.Raw, err)
		}
		noValue(t, err)
	}
}

// TestWebIdentitySTSDown: when STS cannot be reached, the error says
// credentials could not be had, and holds neither the token nor a value.
func TestWebIdentitySTSDown(t *testing.T) {
	kumo := kumotest.Start(t)
	const token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig"
	p := newProvider(t, kumo.WebIdentityEnv(t, token))
	if err := kumo.Stop(); err != nil {
		t.Fatal(err)
	}
	r := sm("prod/db")
	_, err := p.Resolve(t.Context(), r)
	if err == nil || !strings.Contains(err.Error(), "could not get AWS credentials") || !strings.Contains(err.Error(), r.Raw) || errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("STS down: %v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error holds the web-identity token: %v", err)
	}
}

// TestNoCredentials: with no credentials anywhere in the chain, the error
// says so rather than blaming the store.
func TestNoCredentials(t *testing.T) {
	_, rec, env := start(t)
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "", ""
	p := newProvider(t, env)
	r := sm("prod/db")
	_, err := p.Resolve(t.Context(), r)
	if err == nil || !strings.Contains(err.Error(), "could not get AWS credentials") || !strings.Contains(err.Error(), r.Raw) {
		t.Fatalf("no credentials: %v", err)
	}
	if n := len(rec.ops("")); n != 0 {
		t.Errorf("%d requests sent without credentials", n)
	}
}

// hostRecorder is an HTTP client that sends nothing: it notes the host of
// each request and fails it.
type hostRecorder struct {
	mu    sync.Mutex
	hosts []string
}

func (h *hostRecorder) Do(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, req.URL.Host)
	h.mu.Unlock()
	return nil, errors.New("hostRecorder sends nothing")
}

// TestRegionalSTS: with a web identity and AWS_REGION, the SDK exchanges
// the token at that region's STS endpoint, never the global
// sts.amazonaws.com, and reads the secret in that region.
func TestRegionalSTS(t *testing.T) {
	env := (&kumotest.Server{Region: "eu-west-3"}).WebIdentityEnv(t, "a-token")
	env["AWS_ENDPOINT_URL"], env["AWS_ENDPOINT_URL_STS"] = "", "" // AWS's own endpoints
	kumotest.Setenv(t, env)
	rec := &hostRecorder{}
	opts := aws.OptionsFromEnv(os.Getenv)
	opts.ConfigOptions = append(opts.ConfigOptions, config.WithHTTPClient(rec), config.WithRetryMaxAttempts(1))
	p, err := aws.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resolve(t.Context(), sm("prod/db")); err == nil || !strings.Contains(err.Error(), "could not get AWS credentials") {
		t.Fatalf("got %v, want the STS exchange to fail", err)
	}
	if len(rec.hosts) != 1 || rec.hosts[0] != "sts.eu-west-3.amazonaws.com" {
		t.Errorf("requests to %q; want one to sts.eu-west-3.amazonaws.com", rec.hosts)
	}
}

// BenchmarkResolveTen is a process's start: a new provider (so a new web
// identity exchange at STS) resolving ten secrets in parallel from kumo.
func BenchmarkResolveTen(b *testing.B) {
	kumo := kumotest.Start(b)
	env := kumo.WebIdentityEnv(b, "a-token")
	for k, v := range env {
		b.Setenv(k, v)
		if v == "" {
			os.Unsetenv(k)
		}
	}
	for i := range 10 {
		kumo.CreateSecret(b, fmt.Sprintf("bench/s%d", i), dbPassword)
	}
	for b.Loop() {
		p, err := aws.New(b.Context(), aws.OptionsFromEnv(os.Getenv))
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				if _, err := p.Resolve(b.Context(), sm(fmt.Sprintf("bench/s%d", i))); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
}

// fakeAWS is a fake AWS JSON endpoint (not kumo, which checks no
// permissions and keeps one version of a parameter): it answers every
// request with status and body, and notes the request bodies.
func fakeAWS(t *testing.T, status int, body string) (string, *[]string) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &seen
}

func fakeProvider(t *testing.T, endpoint string) *aws.Provider {
	t.Helper()
	p, err := aws.New(t.Context(), aws.Options{Region: "eu-west-3", ConfigOptions: []func(*config.LoadOptions) error{
		config.WithBaseEndpoint(endpoint),
		config.WithCredentialsProvider(awssdk.NewCredentialsCache(staticCreds{})),
		config.WithSharedConfigFiles([]string{os.DevNull}), config.WithSharedCredentialsFiles([]string{os.DevNull}),
		config.WithRetryMaxAttempts(1),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type staticCreds struct{}

func (staticCreds) Retrieve(context.Context) (awssdk.Credentials, error) {
	return awssdk.Credentials{AccessKeyID: "fake", SecretAccessKey: "fake", Source: "test"}, nil
}

// TestAccessDenied (against a fake endpoint): a refusal is ErrAccessDenied
// and names the permission the role needs.
func TestAccessDenied(t *testing.T) {
	endpoint, _ := fakeAWS(t, http.StatusBadRequest, `{"__type":"AccessDeniedException","message":"User: arn:aws:sts::1:assumed-role/app/x is not authorized to perform: secretsmanager:GetSecretValue"}`)
	p := fakeProvider(t, endpoint)
	for ref, permission := range map[secretref.Ref]string{sm("prod/db"): "secretsmanager:GetSecretValue", ssmRef("/prod/p"): "ssm:GetParameter"} {
		_, err := p.Resolve(t.Context(), ref)
		if !errors.Is(err, aws.ErrAccessDenied) || errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), permission) || !strings.Contains(err.Error(), ref.Raw) {
			t.Errorf("%s: got %v, want ErrAccessDenied naming %s", ref.Raw, err, permission)
		}
	}
}

// TestParameterVersion (against a fake endpoint: kumo keeps one version
// of a parameter): ?version=N asks GetParameter for NAME:N, and an answer
// of another version is refused rather than handed over.
func TestParameterVersion(t *testing.T) {
	ref := ssmRef("/prod/p")
	ref.Version = "3"
	ref.Raw += "?version=3"
	for _, tc := range []struct {
		answered int
		wantErr  string
	}{{3, ""}, {4, "asked for version 3, SSM answered version 4"}} {
		endpoint, seen := fakeAWS(t, http.StatusOK, fmt.Sprintf(`{"Parameter":{"Name":"/prod/p","Type":"SecureString","Value":%q,"Version":%d}}`, ssmPassword, tc.answered))
		got, err := fakeProvider(t, endpoint).Resolve(t.Context(), ref)
		if len(*seen) != 1 || !strings.Contains((*seen)[0], `"Name":"/prod/p:3"`) {
			t.Errorf("requests %q; want one for /prod/p:3", *seen)
		}
		switch {
		case tc.wantErr == "" && (err != nil || string(got) != ssmPassword):
			t.Errorf("version %d: %q, %v", tc.answered, got, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("version %d: got %v, want %q", tc.answered, err, tc.wantErr)
		}
		noValue(t, err)
	}
}

// FuzzRegion: whatever a reference's path and region, choosing a region
// never panics and never sends a request for a reference it refuses.
func FuzzRegion(f *testing.F) {
	for _, seed := range [][2]string{
		{"prod/db", ""}, {"arn:aws:secretsmanager:eu-west-3:0:secret:x", ""}, {"arn:aws:secretsmanager:eu-west-3:0:secret:x", "us-east-1"},
		{"arn:aws:ssm::0:parameter/x", ""}, {"arn:", "x"}, {"arn:aws:secretsmanager:::::", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	endpoint := "http://127.0.0.1:1" // nothing listens
	p, err := aws.New(context.Background(), aws.Options{ConfigOptions: []func(*config.LoadOptions) error{
		config.WithBaseEndpoint(endpoint), config.WithCredentialsProvider(awssdk.AnonymousCredentials{}),
		config.WithSharedConfigFiles([]string{os.DevNull}), config.WithSharedCredentialsFiles([]string{os.DevNull}), config.WithRetryMaxAttempts(1),
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, region string) {
		ref := secretref.Ref{Raw: "sekisho+aws-sm://fuzz", Scheme: secretref.AWSSecretsManager, Path: path, Region: region}
		_, err := p.Resolve(context.Background(), ref)
		if err == nil {
			t.Fatal("resolved with nothing listening")
		}
		if !strings.Contains(err.Error(), ref.Raw) {
			t.Errorf("error %q does not name the reference", err)
		}
		// Either refused before any request, with a reason, or sent (to
		// nothing) for a well-formed name and region.
		refused := false
		for _, why := range []string{"not a valid", "not an AWS region", "differs from the ARN", "needs a secretsmanager one", "no AWS region"} {
			refused = refused || strings.Contains(err.Error(), why)
		}
		if !refused && !strings.Contains(err.Error(), "could not be reached") {
			t.Errorf("path %q region %q: unexpected error %v", path, region, err)
		}
	})
}
