package serve

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/sekisho/sekisho/internal/inject"
	"github.com/sekisho/sekisho/internal/testutil"
)

// TestInjectorReload: sekisho serve runs the injector from kube.injector
// over TLS; a reload changes the init container's image at once, and a
// changed listener is reported as needing a restart.
func TestInjectorReload(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Server(t, "127.0.0.1")
	cert := testutil.WriteFile(t, dir, "tls.crt", leaf.CertPEM)
	key := testutil.WriteFile(t, dir, "tls.key", leaf.KeyPEM)
	// The client is built, never used: the pod below needs no API reads.
	kubeconfig := testutil.WriteFile(t, dir, "kubeconfig", []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`))
	base := fmt.Sprintf(`admin: {listen: 127.0.0.1:0}
kube:
  injector:
    listen: 127.0.0.1:0
    tls: {cert_file: %s, key_file: %s}
    kubeconfig: %s
    image: IMAGE
`, cert, key, kubeconfig)
	inst, logs := startInstance(t, strings.Replace(base, "IMAGE", "sekisho:one", 1))
	if inst.Injector == nil || inst.Server != nil {
		t.Fatalf("an injector-only file: injector %v, gateway listener %v", inst.Injector, inst.Server)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	url := "https://" + inst.Injector.Addr() + inject.Path
	initImage := func() string {
		t.Helper()
		body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"CREATE","namespace":"ns",
"resource":{"group":"","version":"v1","resource":"pods"},
"object":{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"app","image":"app","command":["/app"],"env":[{"name":"T","value":"sekisho+file:///t"}]}]}}}}`
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
			t.Fatal(err)
		}
		if rev.Response == nil || !rev.Response.Allowed {
			t.Fatalf("response %+v", rev.Response)
		}
		var ops []struct {
			Path  string
			Value json.RawMessage
		}
		if err := json.Unmarshal(rev.Response.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if op.Path == "/spec/initContainers" {
				var cs []struct{ Image string }
				if err := json.Unmarshal(op.Value, &cs); err != nil {
					t.Fatal(err)
				}
				return cs[0].Image
			}
		}
		t.Fatalf("no init container in %s", rev.Response.Patch)
		return ""
	}
	if got := initImage(); got != "sekisho:one" {
		t.Fatalf("init image %q", got)
	}
	for _, tt := range []struct{ name, src, image, restart string }{
		{"image", strings.Replace(base, "IMAGE", "sekisho:two", 1), "sekisho:two", ""},
		{"listener", strings.Replace(strings.Replace(base, "IMAGE", "sekisho:three", 1), "listen: 127.0.0.1:0\n    tls", "listen: 127.0.0.1:1\n    tls", 1), "sekisho:three", "kube.injector (listen, tls, kubeconfig)"},
	} {
		inst.opts.DefaultConfig = []byte(tt.src)
		before := len(logs.String())
		if err := inst.Reload(); err != nil {
			t.Fatalf("%s: Reload: %v", tt.name, err)
		}
		if got := initImage(); got != tt.image {
			t.Errorf("%s: init image %q after reload, want %q", tt.name, got, tt.image)
		}
		got := restartWarnings(t, logs.String()[before:])
		if (tt.restart == "") != (len(got) == 0) || (tt.restart != "" && got[0] != tt.restart) {
			t.Errorf("%s: restart warnings %q, want %q", tt.name, got, tt.restart)
		}
	}
}
