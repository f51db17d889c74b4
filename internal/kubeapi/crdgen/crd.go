package main

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/kubeapi"
)

// ShortName is what `kubectl get skroute` answers to.
const ShortName = "skroute"

// docs maps "pkgpath.Type.Field" to the field's doc comment.
type docs map[string]string

// fallback describes the route fields that have no doc comment in the Go
// source, in the words of docs/config.md. A field with neither is an
// error (TestEveryFieldDescribed), so a new field cannot ship undocumented.
var fallback = map[string]string{
	"config.Route.Name":              "The route's name; a resource is named NAMESPACE/NAME instead (not in the resource's spec).",
	"config.Route.UpstreamTLS":       "TLS towards the route's https upstreams. In a resource only server_name may be set: ca_file, cert_file and key_file name the gateway's own files, which a namespace must not read, and are refused.",
	"config.UpstreamTLS.KeyFile":     "The key of cert_file (PEM). Refused in resources.",
	"config.Route.Match":             "Selects the requests the route serves; every condition given must hold.",
	"config.Route.To":                "Upstream: a URL (http://svc:8080, https://..., h2c://svc:50051), service/NAME:PORT (a Service in the route's namespace), or a list of {url, weight} for canary splits (weight default 1, at least 0).",
	"config.Route.Timeout":           "Time to wait for the upstream's response headers, as a Go duration (30s, 1m30s); default 30s; then 504.",
	"config.Route.Retries":           "Extra attempts on another backend, default 1; only for idempotent methods whose request never reached an upstream (connection refused).",
	"config.Route.RewriteHost":       "Send the backend's host as Host (default: keep the client's).",
	"config.Route.AllowEncodedSlash": "Accept %2F and %5C in the path; they stay encoded (not separators) for matching and forwarding. Default: 400.",
	"config.Route.AllowPathParams":   "Accept ';' in the path (matrix parameters such as ;jsessionid=). Default: 400.",
	"config.Route.Public":            "true serves the route without authentication. A route must be public or have at least one allow rule, and a public route has no allow or deny rules.",
	"config.Route.PassCredentials":   "Forward the credential sekisho verified (Authorization, the token header or cookie) to the upstream; default: removed.",
	"config.Route.Allow":             "Rules of which one must match for a request to pass (after no deny rule matched). Every field set in a rule must hold (AND); within a list field any value is enough (OR).",
	"config.Route.Deny":              "Rules any one of which refuses the request, whatever allow says.",
	"config.Match.Host":              "Exact host (api.example.com) or wildcard (*.example.com: one or more labels below, not the apex). Matched lower-case, port and trailing dot ignored. Absent: any host.",
	"config.Match.Hosts":             "Several hosts, each like host.",
	"config.Match.Path":              "Exact canonical path. At most one of path, path_prefix and path_regex.",
	"config.Match.PathPrefix":        "Prefix on a segment boundary: /api1 (or /api1/) matches /api1, /api1/, /api1/x, never /api10; / matches all.",
	"config.Match.PathRegex":         "RE2 regular expression that must match the whole path.",
	"config.Match.Methods":           "Methods, e.g. [GET, HEAD]; absent: any. Compared upper-case.",
	"config.Match.Headers":           "{Header-Name: value}; each must be present with that value. Identity, credential and forwarding headers cannot be matched.",
	"config.Upstream.URL":            "The upstream's URL, or service/NAME:PORT.",
	"config.Upstream.Weight":         "Share of the traffic, default 1; 0 sends none.",
	"authz.ClaimMatch.Claim":         "The claim's name in the identity's token.",
	"authz.ClaimMatch.Equals":        "The claim equals this value.",
	"authz.ClaimMatch.Contains":      "The claim is a list holding this value.",
}

// loadDocs reads the doc comments of the struct fields of the packages of
// the given types, from their Go source.
func loadDocs(types ...reflect.Type) (docs, error) {
	d := docs{}
	seen := map[string]bool{}
	for _, t := range types {
		pkgPath := t.PkgPath()
		if seen[pkgPath] {
			continue
		}
		seen[pkgPath] = true
		bp, err := build.Import(pkgPath, ".", build.FindOnly)
		if err != nil {
			return nil, fmt.Errorf("find the source of %s: %w", pkgPath, err)
		}
		files, err := parseDir(bp.Dir)
		if err != nil {
			return nil, err
		}
		short := pkgPath[strings.LastIndexByte(pkgPath, '/')+1:]
		for _, f := range files {
			{
				ast.Inspect(f, func(n ast.Node) bool {
					ts, ok := n.(*ast.TypeSpec)
					if !ok {
						return true
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						return false
					}
					for _, fld := range st.Fields.List {
						text := fld.Doc.Text()
						if text == "" {
							text = fld.Comment.Text()
						}
						for _, name := range fld.Names {
							if text != "" {
								d[short+"."+ts.Name.Name+"."+name.Name] = text
							}
						}
					}
					return false
				})
			}
		}
	}
	return d, nil
}

// parseDir parses the package's non-test Go files with their comments.
func parseDir(dir string) ([]*ast.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

// fieldInfo is one YAML key of a struct.
type fieldInfo struct {
	goName, key string
	typ         reflect.Type
}

// yamlFields lists t's keys as yaml.v3 decodes them (inline structs
// flattened), in declaration order.
func yamlFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			out = append(out, yamlFields(f.Type)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, fieldInfo{goName: f.Name, key: name, typ: f.Type})
	}
	return out
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	upstreamsType = reflect.TypeFor[config.Upstreams]()
)

// schemaBuilder turns Go types into structural OpenAPI schemas.
type schemaBuilder struct {
	docs    docs
	missing []string // fields without a description
}

func (b *schemaBuilder) describe(owner reflect.Type, f fieldInfo, siblings []fieldInfo) string {
	pkg := owner.PkgPath()
	id := pkg[strings.LastIndexByte(pkg, '/')+1:] + "." + owner.Name() + "." + f.goName
	if text, ok := fallback[id]; ok {
		return text
	}
	text, ok := b.docs[id]
	if !ok {
		b.missing = append(b.missing, id)
		return ""
	}
	// The comments name Go fields; a reader of the resource knows the keys.
	for _, s := range siblings {
		text = regexp.MustCompile(`\b`+s.goName+`\b`).ReplaceAllString(text, s.key)
	}
	return strings.Join(strings.Fields(text), " ")
}

// schema returns the schema of t, a field's type.
func (b *schemaBuilder) schema(t reflect.Type) apiextv1.JSONSchemaProps {
	switch t {
	case durationType:
		return apiextv1.JSONSchemaProps{Type: "string"}
	case upstreamsType:
		// A URL or a list of URLs and {url, weight}: structural schemas
		// have no union of types, so the shape is left to the compiler,
		// which reports it (a negative weight too) on the route's status:
		// CEL sees no field without a type, so no rule can check it.
		return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return b.schema(t.Elem())
	case reflect.String:
		return apiextv1.JSONSchemaProps{Type: "string"}
	case reflect.Bool:
		return apiextv1.JSONSchemaProps{Type: "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return apiextv1.JSONSchemaProps{Type: "integer"}
	case reflect.Interface:
		return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}
	case reflect.Slice:
		items := b.schema(t.Elem())
		return apiextv1.JSONSchemaProps{Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &items}}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic("crdgen: map key of " + t.String() + " is not a string")
		}
		v := b.schema(t.Elem())
		return apiextv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextv1.JSONSchemaPropsOrBool{Allows: true, Schema: &v}}
	case reflect.Struct:
		fields := yamlFields(t)
		s := apiextv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextv1.JSONSchemaProps{}}
		for _, f := range fields {
			p := b.schema(f.typ)
			p.Description = b.describe(t, f, fields)
			s.Properties[f.key] = p
		}
		return s
	}
	panic("crdgen: no schema for " + t.String())
}

// routeSpec is the schema of a Route's spec: config.Route without name,
// with the admission checks the compiler would make anyway, cheap enough
// for CEL. Only what the compiler enforces is checked, so an object the
// API server accepts fails only where the compiler would say more.
func (b *schemaBuilder) routeSpec() apiextv1.JSONSchemaProps {
	s := b.schema(reflect.TypeFor[config.Route]())
	delete(s.Properties, "name")
	s.Description = "A route of the configuration file, without name: the route is named NAMESPACE/NAME."
	s.XValidations = apiextv1.ValidationRules{
		{
			Rule:    "!has(self.public) || !self.public || ((!has(self.allow) || size(self.allow) == 0) && (!has(self.deny) || size(self.deny) == 0))",
			Message: "a public route (no authentication) has no allow or deny rules: they would never apply; remove public: true or the rules",
		},
		{
			Rule:    "(has(self.public) && self.public) || (has(self.allow) && size(self.allow) > 0)",
			Message: "a route needs an allow rule (without one it would deny every request), or public: true to serve it without authentication",
		},
		{
			Rule:    "has(self.match) && ((has(self.match.host) && self.match.host != '') || (has(self.match.hosts) && size(self.match.hosts) > 0))",
			Message: "a Route names its hosts (match.host or match.hosts): a route for any host would take paths of hosts other namespaces own",
		},
	}
	m := s.Properties["match"]
	m.XValidations = apiextv1.ValidationRules{{
		Rule:    "(has(self.path) && self.path != '' ? 1 : 0) + (has(self.path_prefix) && self.path_prefix != '' ? 1 : 0) + (has(self.path_regex) && self.path_regex != '' ? 1 : 0) <= 1",
		Message: "path, path_prefix and path_regex are exclusive; set at most one",
	}}
	s.Properties["match"] = m
	return s
}

// statusSchema is what the watcher writes: the Accepted condition and the
// generation it was computed for.
func statusSchema() apiextv1.JSONSchemaProps {
	str := func(desc string) apiextv1.JSONSchemaProps {
		return apiextv1.JSONSchemaProps{Type: "string", Description: desc}
	}
	cond := apiextv1.JSONSchemaProps{
		Type:     "object",
		Required: []string{"type", "status", "reason", "message", "lastTransitionTime"},
		Properties: map[string]apiextv1.JSONSchemaProps{
			"type": str("Accepted: whether the route is served."),
			"status": {Type: "string", Description: "True, False or Unknown.", Enum: []apiextv1.JSON{
				{Raw: []byte(`"True"`)}, {Raw: []byte(`"False"`)}, {Raw: []byte(`"Unknown"`)}}},
			"reason":             str(strings.Join([]string{kubeapi.ReasonAccepted, kubeapi.ReasonInvalid, kubeapi.ReasonConflicted}, ", ") + "."),
			"message":            str("Why, with the field path of the problem (spec.allow[0].when: ...), or the route that won a conflict."),
			"observedGeneration": {Type: "integer", Format: "int64", Minimum: ptr(0.0), Description: "The metadata.generation the condition was computed for."},
			"lastTransitionTime": {Type: "string", Format: "date-time", Description: "When status last changed."},
		},
	}
	return apiextv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextv1.JSONSchemaProps{
			"observedGeneration": {Type: "integer", Format: "int64", Description: "The metadata.generation the status was computed for."},
			"conditions": {
				Type:         "array",
				Description:  "The Accepted condition: True when the route is served, False with reason Invalid or Conflicted and a message when it is not.",
				XListType:    ptr("map"),
				XListMapKeys: []string{"type"},
				Items:        &apiextv1.JSONSchemaPropsOrArray{Schema: &cond},
			},
		},
	}
}

// RouteCRD builds the CustomResourceDefinition of routes.sekisho.io from
// config.Route and the doc comments of its source. It returns the fields
// left without a description, which the caller treats as an error.
func RouteCRD() (*apiextv1.CustomResourceDefinition, []string, error) {
	d, err := loadDocs(reflect.TypeFor[config.Route](), reflect.TypeFor[authz.Rule]())
	if err != nil {
		return nil, nil, err
	}
	b := &schemaBuilder{docs: d}
	spec := b.routeSpec()
	crd := &apiextv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: kubeapi.RouteResource + "." + kubeapi.Group},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: kubeapi.Group,
			Scope: apiextv1.NamespaceScoped,
			Names: apiextv1.CustomResourceDefinitionNames{
				Plural:     kubeapi.RouteResource,
				Singular:   strings.ToLower(kubeapi.RouteKind),
				Kind:       kubeapi.RouteKind,
				ListKind:   kubeapi.RouteKind + "List",
				ShortNames: []string{ShortName},
				Categories: []string{"sekisho"},
			},
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name:    kubeapi.Version,
				Served:  true,
				Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type:        "object",
					Description: "A route served by sekisho: requests matching spec.match are authenticated, authorized by spec.allow and spec.deny, and sent to spec.to.",
					Required:    []string{"spec"},
					Properties: map[string]apiextv1.JSONSchemaProps{
						"apiVersion": {Type: "string"},
						"kind":       {Type: "string"},
						"metadata":   {Type: "object"},
						"spec":       spec,
						"status":     statusSchema(),
					},
				}},
				Subresources: &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextv1.CustomResourceColumnDefinition{
					{Name: "Hosts", Type: "string", JSONPath: ".spec.match.host"},
					{Name: "Accepted", Type: "string", JSONPath: `.status.conditions[?(@.type=="` + kubeapi.ConditionAccepted + `")].status`},
					{Name: "Reason", Type: "string", JSONPath: `.status.conditions[?(@.type=="` + kubeapi.ConditionAccepted + `")].reason`},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
			}},
		},
	}
	return crd, b.missing, nil
}

// RouteCRDYAML is the CRD as the committed files hold it.
func RouteCRDYAML() ([]byte, error) {
	crd, missing, err := RouteCRD()
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no description for %s: add a doc comment to the Go field, or an entry to fallback", strings.Join(missing, ", "))
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return nil, fmt.Errorf("encode the CRD: %w", err)
	}
	// status: {} of the CRD object itself and creationTimestamp: null are
	// server-side fields; leave them out of a file people apply.
	out = []byte(strings.Replace(string(out), "  creationTimestamp: null\n", "", 1))
	if i := strings.LastIndex(string(out), "\nstatus:\n"); i >= 0 {
		out = out[:i+1]
	}
	header := "# Generated by go run ./internal/kubeapi/crdgen from the Go types of the\n# configuration file (config.Route). Do not edit.\n"
	return append([]byte(header), out...), nil
}

func ptr[T any](v T) *T { return &v }
