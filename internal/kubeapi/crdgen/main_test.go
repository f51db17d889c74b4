package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sekisho/sekisho/internal/kubeapi"
	"github.com/sekisho/sekisho/internal/kubetest"
	"github.com/sekisho/sekisho/internal/toolbin"
)

var update = flag.Bool("update", false, "rewrite the committed CRD files")

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

// TestGenerated fails when a committed copy of the CRD differs from what
// the generator writes from the Go types (go test -update rewrites them).
func TestGenerated(t *testing.T) {
	root, err := toolbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := write(root); err != nil {
			t.Fatal(err)
		}
	}
	want, err := RouteCRDYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range Outputs {
		got, err := os.ReadFile(filepath.Join(root, out))
		if err != nil {
			t.Errorf("%v: run go run ./internal/kubeapi/crdgen", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generated CRD: run go run ./internal/kubeapi/crdgen (or go test ./internal/kubeapi/crdgen -update)", out)
		}
	}
}

// TestEveryFieldDescribed: every key of the spec has a description (from
// the Go doc comment or the fallback table), so kubectl explain tells
// what each does; and the spec has every key of config.Route except name.
func TestEveryFieldDescribed(t *testing.T) {
	crd, missing, err := RouteCRD()
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("fields without a description: %v", missing)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	for _, key := range []string{"match", "to", "timeout", "retries", "rewrite_host", "allow_encoded_slash", "allow_path_params", "public", "pass_credentials", "upstream_tls", "upgrades", "api", "allow", "deny", "allow_extension_methods", "allow_method_override"} {
		p, ok := spec.Properties[key]
		if !ok {
			t.Errorf("spec has no %s", key)
		} else if p.Description == "" {
			t.Errorf("spec.%s has no description", key)
		}
	}
	if _, ok := spec.Properties["name"]; ok {
		t.Error("spec has name; a resource is named by its metadata")
	}
	rule := spec.Properties["allow"].Items.Schema
	for key, p := range rule.Properties {
		if p.Description == "" || strings.Contains(p.Description, "ClientIPs") {
			t.Errorf("allow[].%s: description %q; want one in the resource's own key names", key, p.Description)
		}
	}
	if got := spec.Properties["timeout"].Type; got != "string" {
		t.Errorf("timeout type %q; want string (a Go duration)", got)
	}
	if got := spec.Properties["match"].Properties["headers"].AdditionalProperties; got == nil || got.Schema.Type != "string" {
		t.Errorf("match.headers additionalProperties %+v; want strings", got)
	}
}

// route is a Route object with spec.
func route(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(kubeapi.Group + "/" + kubeapi.Version)
	u.SetKind(kubeapi.RouteKind)
	u.SetName(name)
	return u
}

// TestCRDOnAPIServer applies the committed CRD to a real kube-apiserver
// and creates routes: valid ones are stored, each kind of invalid one is
// refused by the CEL rule with its message.
func TestCRDOnAPIServer(t *testing.T) {
	c := kube.Cluster(t)
	ctx := t.Context()
	root, err := toolbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, Outputs[0]))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Objects(data)
	if err != nil || len(objs) != 1 {
		t.Fatalf("CRD file: %d objects, %v", len(objs), err)
	}
	a, err := kubetest.NewApplier(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, objs[0], "", false); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitEstablished(ctx, objs[0].GetName()); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureServiceAccount(ctx, "crd-test", "default"); err != nil {
		t.Fatal(err)
	}

	allowAlice := []any{map[string]any{"emails": []any{"alice@example.com"}, "when": "request.method == 'GET'"}}
	tests := []struct {
		name string
		spec map[string]any
		want string // "" accepted, else part of the refusal
	}{
		{"full", map[string]any{
			"match":   map[string]any{"host": "app.example.com", "path_prefix": "/api", "methods": []any{"GET"}, "headers": map[string]any{"X-Tenant": "a"}},
			"to":      "service/app:8080",
			"timeout": "15s", "retries": 2, "rewrite_host": true, "upgrades": []any{"websocket"},
			"allow": allowAlice,
			"deny":  []any{map[string]any{"paths": []any{"/api/admin"}, "claims": []any{map[string]any{"claim": "level", "equals": 3}}}},
		}, ""},
		{"weighted", map[string]any{
			"match": map[string]any{"host": "canary.example.com"},
			"to":    []any{map[string]any{"url": "service/v1:80", "weight": 90}, map[string]any{"url": "service/v2:80", "weight": 10}, "service/v3:80"},
			"allow": allowAlice,
		}, ""},
		{"public", map[string]any{"match": map[string]any{"host": "www.example.com"}, "to": "service/www:80", "public": true}, ""},
		{"empty-path-is-unset", map[string]any{"match": map[string]any{"host": "x.example.com", "path": "", "path_prefix": "/x"}, "to": "service/x:80", "public": true}, ""},
		{"two-paths", map[string]any{"match": map[string]any{"path": "/a", "path_regex": "/b.*"}, "to": "service/x:80", "public": true},
			"path, path_prefix and path_regex are exclusive; set at most one"},
		// to has no type in the schema (a URL or a list), and CEL sees no
		// untyped field: a negative weight is stored, and the compiler
		// refuses it on the route's status.
		{"negative-weight", map[string]any{"match": map[string]any{"hosts": []any{"x.example.com"}}, "to": []any{map[string]any{"url": "service/x:80", "weight": -1}}, "public": true}, ""},
		{"public-with-rules", map[string]any{"to": "service/x:80", "public": true, "allow": allowAlice},
			"a public route (no authentication) has no allow or deny rules"},
		{"no-allow", map[string]any{"to": "service/x:80", "deny": allowAlice},
			"a route needs an allow rule"},
		{"no-host", map[string]any{"match": map[string]any{"path": "/x"}, "to": "service/x:80", "public": true},
			"a Route names its hosts"},
		{"empty-hosts", map[string]any{"match": map[string]any{"host": "", "hosts": []any{}}, "to": "service/x:80", "public": true},
			"a Route names its hosts"},
		{"unknown-field", map[string]any{"to": "service/x:80", "public": true, "pubic": true},
			`unknown field "spec.pubic"`},
		{"wrong-type", map[string]any{"to": "service/x:80", "public": "yes"},
			"spec.public: Invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := route(tt.name, tt.spec)
			r, err := a.Resource(obj, "crd-test")
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Create(ctx, obj, createOpts)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("create: %v; want it stored", err)
			case tt.want != "" && err == nil:
				t.Errorf("create succeeded; want a refusal saying %q", tt.want)
			case tt.want != "" && (!apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("create: %v; want 422/400 saying %q", err, tt.want)
			case err != nil:
				t.Logf("refused: %v", err)
			}
		})
	}
}

// createOpts refuse unknown fields, as kubectl apply does by default.
var createOpts = metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}

// TestDocsListEveryField fails when docs/resources.md does not name a
// field of the spec (as `match.path_prefix`, `allow[].claims[].equals`):
// the reference must grow with config.Route. Rules are listed once, under
// allow[]; deny[] has the same fields.
func TestDocsListEveryField(t *testing.T) {
	root, err := toolbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "resources.md"))
	if err != nil {
		t.Fatal(err)
	}
	crd, _, err := RouteCRD()
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, s apiextv1.JSONSchemaProps)
	walk = func(prefix string, s apiextv1.JSONSchemaProps) {
		for key, p := range s.Properties {
			path := prefix + key
			if !strings.Contains(string(doc), "`"+path+"`") {
				t.Errorf("docs/resources.md does not list `%s`", path)
			}
			if path == "deny" {
				continue
			}
			if p.Items != nil && p.Items.Schema != nil {
				walk(path+"[].", *p.Items.Schema)
			} else {
				walk(path+".", p)
			}
		}
	}
	walk("", crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"])
}
