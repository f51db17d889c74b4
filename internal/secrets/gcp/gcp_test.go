package gcp_test

import (
	"context"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/secrets"
	"github.com/sekisho/sekisho/internal/secrets/gcp"
)

// Secret values the fake holds; no error or log line may contain one.
const (
	latestValue = "gcp-latest-s3cret-value"
	firstValue  = "gcp-first-s3cret-value"
	jsonValue   = `{"password":"gcp-js0n-value"}`
)

// fakeSecretManager is a FAKE Secret Manager: an in-process gRPC server
// implementing AccessSecretVersion only, because no emulator of Secret
// Manager exists. It proves what the official client sends and how
// sekisho reads the answers, not how Google's service behaves.
type fakeSecretManager struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer

	mu       sync.Mutex
	versions map[string]string // full version name → payload
	denied   map[string]bool   // secret name → PermissionDenied
	badSum   bool              // send a wrong checksum
	asked    []string
}

func (f *fakeSecretManager) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, req.GetName())
	secret, _, _ := strings.Cut(req.GetName(), "/versions/")
	if f.denied[secret] {
		return nil, status.Errorf(codes.PermissionDenied, "Permission 'secretmanager.versions.access' denied for resource '%s'", req.GetName())
	}
	data, ok := f.versions[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Secret Version [%s] not found.", req.GetName())
	}
	sum := int64(crc32.Checksum([]byte(data), crc32.MakeTable(crc32.Castagnoli)))
	if f.badSum {
		sum++
	}
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    req.GetName(),
		Payload: &secretmanagerpb.SecretPayload{Data: []byte(data), DataCrc32C: &sum},
	}, nil
}

// startFake serves the fake on a loopback port until the test ends.
func startFake(t *testing.T) (*fakeSecretManager, string, func()) {
	t.Helper()
	f := &fakeSecretManager{
		versions: map[string]string{
			"projects/p1/secrets/db/versions/latest":  latestValue,
			"projects/p1/secrets/db/versions/2":       latestValue,
			"projects/p1/secrets/db/versions/1":       firstValue,
			"projects/p1/secrets/app/versions/latest": jsonValue,
		},
		denied: map[string]bool{"projects/p1/secrets/locked": true},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	secretmanagerpb.RegisterSecretManagerServiceServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return f, l.Addr().String(), srv.Stop
}

// newProvider points the official client at addr over plaintext, without
// credentials (the fake checks none).
func newProvider(t *testing.T, addr string) *gcp.Provider {
	t.Helper()
	opts := gcp.OptionsFromEnv(os.Getenv)
	opts.ClientOptions = append(opts.ClientOptions,
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	p, err := gcp.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func ref(path string) secretref.Ref {
	return secretref.Ref{Raw: "sekisho+gcp-sm://" + path, Scheme: secretref.GCPSecretManager, Path: path}
}

func noValue(t *testing.T, s string) {
	t.Helper()
	for _, v := range []string{latestValue, firstValue, jsonValue, "gcp-js0n-value"} {
		if strings.Contains(s, v) {
			t.Errorf("%q holds the secret value %q", s, v)
		}
	}
}

// TestResolve (against the fake): latest by default, a version by path or
// by the reference's version, a JSON secret whole.
func TestResolve(t *testing.T) {
	f, addr, _ := startFake(t)
	p := newProvider(t, addr)
	versioned := ref("projects/p1/secrets/db")
	versioned.Version = "1"
	for _, tc := range []struct {
		ref       secretref.Ref
		want, got string
	}{
		{ref("projects/p1/secrets/db"), latestValue, "projects/p1/secrets/db/versions/latest"},
		{ref("projects/p1/secrets/db/versions/1"), firstValue, "projects/p1/secrets/db/versions/1"},
		{ref("projects/p1/secrets/db/versions/latest"), latestValue, "projects/p1/secrets/db/versions/latest"},
		{versioned, firstValue, "projects/p1/secrets/db/versions/1"},
		{ref("projects/p1/secrets/app"), jsonValue, "projects/p1/secrets/app/versions/latest"},
	} {
		got, err := p.Resolve(t.Context(), tc.ref)
		if err != nil {
			t.Fatalf("%+v: %v", tc.ref, err)
		}
		if string(got) != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.ref, got, tc.want)
		}
		f.mu.Lock()
		last := f.asked[len(f.asked)-1]
		f.mu.Unlock()
		if last != tc.got {
			t.Errorf("%+v: asked for %s, want %s", tc.ref, last, tc.got)
		}
	}
}

// TestErrors (against the fake): not found is ErrNotFound, a refusal is
// ErrAccessDenied naming the role, a wrong checksum is refused, a server
// that is gone says so; each names the reference and no value.
func TestErrors(t *testing.T) {
	f, addr, stop := startFake(t)
	p := newProvider(t, addr)
	check := func(r secretref.Ref, is error, says string) {
		t.Helper()
		_, err := p.Resolve(t.Context(), r)
		if err == nil || (is != nil && !errors.Is(err, is)) || !strings.Contains(err.Error(), says) || !strings.Contains(err.Error(), r.Raw) {
			t.Errorf("%s: got %v, want %v saying %q", r.Raw, err, is, says)
		}
		if err != nil {
			noValue(t, err.Error())
		}
	}
	check(ref("projects/p1/secrets/nope"), secrets.ErrNotFound, "not found")
	check(ref("projects/p1/secrets/db/versions/9"), secrets.ErrNotFound, "not found")
	check(ref("projects/p1/secrets/locked"), gcp.ErrAccessDenied, "roles/secretmanager.secretAccessor")

	f.mu.Lock()
	f.badSum = true
	f.mu.Unlock()
	check(ref("projects/p1/secrets/db"), nil, "checksum")

	stop()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	r := ref("projects/p1/secrets/db")
	_, err := p.Resolve(ctx, r)
	if err == nil || errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), r.Raw) ||
		!(strings.Contains(err.Error(), "could not be reached") || strings.Contains(err.Error(), "did not answer in time")) {
		t.Errorf("server gone: %v", err)
	}
}

// TestBadReferences are refused before any request.
func TestBadReferences(t *testing.T) {
	f, addr, _ := startFake(t)
	p := newProvider(t, addr)
	twoVersions := ref("projects/p1/secrets/db/versions/1")
	twoVersions.Version = "2"
	badVersion := ref("projects/p1/secrets/db")
	badVersion.Version = "0"
	stage := ref("projects/p1/secrets/db")
	stage.Stage = "AWSCURRENT"
	for _, tc := range []struct {
		ref  secretref.Ref
		want string
	}{
		{ref("p1/db"), "not a Secret Manager secret"},
		{ref("projects/p1/secrets/db/versions/"), "not a Secret Manager secret"},
		{ref("projects/p1/secrets/db/versions/0"), "not a Secret Manager secret"},
		{ref("projects/p1/secrets/../db"), "not a Secret Manager secret"},
		{ref("projects/p1/secrets/db?x=1"), "not a Secret Manager secret"},
		{twoVersions, "two versions"},
		{badVersion, "a number or latest"},
		{stage, "no stage"},
		{secretref.Ref{Raw: "sekisho+file:///x", Scheme: secretref.File, Path: "/x"}, "does not serve"},
	} {
		_, err := p.Resolve(t.Context(), tc.ref)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.ref.Raw) {
			t.Errorf("%+v: got %v, want %q", tc.ref, err, tc.want)
		}
	}
	if len(f.asked) != 0 {
		t.Errorf("requests sent for bad references: %q", f.asked)
	}
}

// TestNoPayloadInLogs: the client logs whole responses when
// GOOGLE_SDK_GO_LOGGING_LEVEL=debug; sekisho's provider silences it, so
// the secret never reaches stderr.
func TestNoPayloadInLogs(t *testing.T) {
	_, addr, _ := startFake(t)
	t.Setenv("GOOGLE_SDK_GO_LOGGING_LEVEL", "debug")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	p := newProvider(t, addr)
	got, err := p.Resolve(t.Context(), ref("projects/p1/secrets/db"))
	os.Stderr = stderr
	w.Close()
	logged := <-out
	if err != nil || string(got) != latestValue {
		t.Fatalf("%q, %v", got, err)
	}
	noValue(t, logged)
	// Logged protos show bytes in base64.
	if b64 := base64.StdEncoding.EncodeToString([]byte(latestValue)); strings.Contains(logged, b64) {
		t.Errorf("stderr holds the secret in base64: %s", logged)
	}
}

// FuzzName: whatever the path and version, Name never panics, and what
// it accepts is a version name of the documented shape.
func FuzzName(f *testing.F) {
	for _, s := range []string{"projects/p/secrets/s", "projects/p/secrets/s/versions/3", "projects/example.com:p/secrets/s/versions/latest", "projects//secrets/s", "projects/p/secrets/s/versions/0"} {
		f.Add(s, "")
		f.Add(s, "2")
	}
	f.Fuzz(func(t *testing.T, path, version string) {
		name, err := gcp.Name(secretref.Ref{Raw: "sekisho+gcp-sm://fuzz", Scheme: secretref.GCPSecretManager, Path: path, Version: version})
		if err != nil {
			if !strings.Contains(err.Error(), "sekisho+gcp-sm://fuzz") {
				t.Errorf("error %q does not name the reference", err)
			}
			return
		}
		if !strings.HasPrefix(name, "projects/") || strings.Count(name, "/") != 5 || strings.Contains(name, "..") || strings.ContainsAny(name, "?#% \n") {
			t.Errorf("Name(%q, %q) = %q", path, version, name)
		}
		if !strings.HasPrefix(name, path) {
			t.Errorf("Name(%q, %q) = %q does not extend the path", path, version, name)
		}
	})
}
