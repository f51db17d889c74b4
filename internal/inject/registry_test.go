package inject

import (
	"context"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
)

// countingRegistry is a real in-process registry that counts requests by
// method and kind (manifests, blobs) and can require basic auth for the
// repository "private".
type countingRegistry struct {
	mu     sync.Mutex
	counts map[string]int
	user   string // "" for anonymous access to "private"
	h      http.Handler
}

func (c *countingRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.user != "" && strings.HasPrefix(r.URL.Path, "/v2/private/") {
		if u, p, ok := r.BasicAuth(); !ok || u+":"+p != c.user {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	kind := "other"
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		kind = "manifests"
	case strings.Contains(r.URL.Path, "/blobs/"):
		kind = "blobs"
	}
	c.mu.Lock()
	c.counts[r.Method+" "+kind]++
	c.mu.Unlock()
	c.h.ServeHTTP(w, r)
}

func (c *countingRegistry) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

func startRegistry(t *testing.T) (*countingRegistry, string) {
	t.Helper()
	c := &countingRegistry{counts: map[string]int{}, h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

var anon = authn.NewMultiKeychain()

func TestRegistryPlatforms(t *testing.T) {
	_, host := startRegistry(t)
	// arm64 first: a look-up that takes Manifests[0] gets it wrong for amd64.
	differ := pushIndex(t, host, "differ", []platImage{
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, ImageConfig{Entrypoint: []string{"/arm"}}},
		{v1.Platform{OS: "unknown", Architecture: "unknown"}, ImageConfig{Entrypoint: []string{"/attestation"}}},
		{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/amd"}, Cmd: []string{"x"}}},
	})
	agree := pushIndex(t, host, "agree", []platImage{
		{v1.Platform{OS: "linux", Architecture: "arm64"}, ImageConfig{Entrypoint: []string{"/app"}}},
		{v1.Platform{OS: "unknown", Architecture: "unknown"}, ImageConfig{Entrypoint: []string{"/attestation"}}},
		{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/app"}}},
	})
	r := &Registry{PlainHTTP: []string{host}}
	for _, tc := range []struct {
		name      string
		image     string
		platforms []Platform
		want      []string
		err       string
	}{
		{"amd64", differ, []Platform{{OS: "linux", Arch: "amd64"}}, []string{"/amd"}, ""},
		{"arm64", differ, []Platform{{OS: "linux", Arch: "arm64"}}, []string{"/arm"}, ""},
		{"arch only", differ, []Platform{{Arch: "amd64"}}, []string{"/amd"}, ""},
		{"any platform, disagreeing", differ, nil, nil, "runs a different ENTRYPOINT/CMD on linux/arm64/v8 than on linux/amd64"},
		{"two node platforms, disagreeing", differ, []Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}}, nil, "runs a different ENTRYPOINT/CMD"},
		{"any platform, agreeing", agree, nil, []string{"/app"}, ""},
		{"no such platform", differ, []Platform{{OS: "windows", Arch: "amd64"}}, nil, "has no manifest for windows/amd64"},
		{"no such image", host + "/nothing:v1", nil, nil, `image "` + host + `/nothing:v1"`},
		{"bad reference", "UPPER/Case::", nil, nil, "UPPER/Case::"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Config(context.Background(), tc.image, tc.platforms, anon)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got.Entrypoint, tc.want) {
				t.Fatalf("Config = %+v, %v; want entrypoint %q", got, err, tc.want)
			}
		})
	}
}

func TestRegistryCache(t *testing.T) {
	reg, host := startRegistry(t)
	img := pushIndex(t, host, "app", []platImage{{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/one"}}}})
	now := time.Unix(1_000_000, 0)
	r := &Registry{PlainHTTP: []string{host}, TagTTL: time.Minute, now: func() time.Time { return now }}
	amd := []Platform{{OS: "linux", Arch: "amd64"}}
	lookup := func(want string) map[string]int {
		t.Helper()
		reg.take()
		got, err := r.Config(context.Background(), img, amd, anon)
		if err != nil || !slices.Equal(got.Entrypoint, []string{want}) {
			t.Fatalf("Config = %+v, %v; want %s", got, err, want)
		}
		return reg.take()
	}
	if n := lookup("/one"); n["GET blobs"] != 1 {
		t.Fatalf("first look-up: %v, want one config blob", n)
	}
	if n := lookup("/one"); len(n) != 0 {
		t.Fatalf("within the tag's TTL: %v, want no request", n)
	}
	now = now.Add(2 * time.Minute)
	if n := lookup("/one"); n["HEAD manifests"] != 1 || n["GET blobs"] != 0 || n["GET manifests"] != 0 {
		t.Fatalf("after the TTL: %v, want only the tag resolved again (config kept by digest)", n)
	}
	// The tag moves: the new digest's config is read.
	pushIndex(t, host, "app", []platImage{{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/two"}}}})
	now = now.Add(2 * time.Minute)
	if n := lookup("/two"); n["GET blobs"] != 1 {
		t.Fatalf("moved tag: %v, want the new config read", n)
	}
}

func TestPullSecrets(t *testing.T) {
	reg, host := startRegistry(t)
	img := pushIndex(t, host, "private", []platImage{{v1.Platform{OS: "linux", Architecture: "amd64"}, ImageConfig{Entrypoint: []string{"/p"}}}})
	reg.user = "puller:s3cret"
	auth := base64.StdEncoding.EncodeToString([]byte("puller:s3cret"))
	good := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"http://` + host + `/v2/":{"auth":"` + auth + `"}}}`)}}
	other := &corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"elsewhere.example":{"username":"a","password":"b"}}`)}}
	r := &Registry{PlainHTTP: []string{host}}
	for _, tc := range []struct {
		name    string
		secrets []*corev1.Secret
		ok      bool
	}{
		{"none", nil, false},
		{"another registry's", []*corev1.Secret{other}, false},
		{"the registry's, after another", []*corev1.Secret{other, good}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := newPullSecretKeychain(tc.secrets)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Config(context.Background(), img, nil, kc)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error holds the password: %v", err)
			}
		})
	}
	bad := &corev1.Secret{Type: corev1.SecretTypeOpaque}
	bad.Name = "opaque"
	if _, err := newPullSecretKeychain([]*corev1.Secret{bad}); err == nil || !strings.Contains(err.Error(), `"opaque"`) {
		t.Fatalf("opaque secret: %v", err)
	}
}
