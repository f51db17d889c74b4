package decision

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestEnvoyExample keeps examples/integrations/envoy.yaml loadable: there is
// no Envoy binary here, so the bootstrap is decoded with go-control-plane's
// types (unknown fields and types are errors), every embedded typed config
// is unpacked, and all of it passes Envoy's own validation rules.
func TestEnvoyExample(t *testing.T) {
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(yamlToJSON(t, "envoy.yaml"), &bs); err != nil {
		t.Fatalf("envoy.yaml is not an Envoy v3 bootstrap: %v", err)
	}
	if err := validateDeep(&bs); err != nil {
		t.Fatalf("envoy.yaml does not validate: %v", err)
	}

	clusters := map[string]bool{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	var grpcAuthz, httpAuthz int
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					t.Fatal(err)
				}
				if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
					t.Errorf("%s: Envoy must normalize the path it forwards, as sekisho does", l.GetName())
				}
				for _, hf := range hcm.GetHttpFilters() {
					var ea extauthzv3.ExtAuthz
					if hf.GetTypedConfig().UnmarshalTo(&ea) != nil {
						continue
					}
					if ea.GetFailureModeAllow() {
						t.Errorf("%s: failure_mode_allow lets requests through when sekisho is down", l.GetName())
					}
					switch {
					case ea.GetGrpcService() != nil:
						grpcAuthz++
						if c := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName(); !clusters[c] {
							t.Errorf("gRPC ext_authz names cluster %q, which is not defined", c)
						}
					case ea.GetHttpService() != nil:
						httpAuthz++
						hs := ea.GetHttpService()
						if hs.GetPathPrefix() != envoyPrefix {
							t.Errorf("HTTP ext_authz path_prefix %q, want %q", hs.GetPathPrefix(), envoyPrefix)
						}
						if c := hs.GetServerUri().GetCluster(); !clusters[c] {
							t.Errorf("HTTP ext_authz names cluster %q, which is not defined", c)
						}
					}
				}
			}
		}
	}
	if grpcAuthz != 1 || httpAuthz != 1 {
		t.Errorf("found %d gRPC and %d HTTP ext_authz filters, want one of each", grpcAuthz, httpAuthz)
	}
}

// validateDeep runs the generated validation rules on m and on every
// google.protobuf.Any inside it, unpacked to its real type.
func validateDeep(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		visit := func(msg protoreflect.Message) bool {
			inner := msg.Interface()
			if a, ok := inner.(*anypb.Any); ok {
				unpacked, uerr := a.UnmarshalNew()
				if uerr != nil {
					err = uerr
					return false
				}
				inner = unpacked
			}
			err = validateDeep(inner)
			return err == nil
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				if !visit(v.List().Get(i).Message()) {
					return false
				}
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { return visit(mv.Message()) })
			}
		default:
			return visit(v.Message())
		}
		return err == nil
	})
	return err
}

// TestKubernetesExamples checks that the manifests for the integrations
// without a binary here parse and point at the endpoints sekisho serves.
func TestKubernetesExamples(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"istio.yaml", []string{"envoyExtAuthzGrpc", "envoyExtAuthzHttp", "pathPrefix: /envoy", "action: CUSTOM", "port: 9192", "port: 9191"}},
		{"emissary.yaml", []string{"kind: AuthService", "protocol_version: v3", "path_prefix: /envoy"}},
		{"ingress-nginx.yaml", []string{"nginx.ingress.kubernetes.io/auth-url: http://sekisho-decision.sekisho.svc.cluster.local:9191/ingress-nginx\n", "auth-response-headers", "auth-signin"}},
		{"traefik.yaml", []string{"forwardAuth", "/forward-auth", "authResponseHeaders", "authResponseHeadersRegex", "trustForwardHeader: false"}},
		{"gateway-api.yaml", []string{"type: ExternalAuth", "protocol: GRPC", "protocol: HTTP", "path: /envoy"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "..", "examples", "integrations", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			dec := yaml.NewDecoder(strings.NewReader(string(b)))
			docs := 0
			for {
				var doc map[string]any
				if err := dec.Decode(&doc); err != nil {
					if err.Error() == "EOF" {
						break
					}
					t.Fatalf("document %d: %v", docs, err)
				}
				docs++
			}
			if docs == 0 {
				t.Fatal("no YAML document")
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s does not contain %q", tt.file, w)
				}
			}
		})
	}
}

// yamlToJSON reads an example and converts it to JSON for protojson.
func yamlToJSON(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "integrations", name))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return j
}

// TestTraefikExampleClearsEverySpelling checks traefik.yaml's header rules
// with Go's regexp, the engine Traefik compiles authResponseHeadersRegex
// with (Traefik itself is not run here): every spelling of an identity
// header a client could forge is deleted before the request reaches the app,
// and every forwarding header is either cleared by the example or replaced
// by Traefik's entry point.
func TestTraefikExampleClearsEverySpelling(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "integrations", "traefik.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth struct {
					AuthResponseHeaders      []string `yaml:"authResponseHeaders"`
					AuthResponseHeadersRegex string   `yaml:"authResponseHeadersRegex"`
				} `yaml:"forwardAuth"`
				Headers struct {
					CustomRequestHeaders map[string]string `yaml:"customRequestHeaders"`
				} `yaml:"headers"`
			} `yaml:"middlewares"`
			Routers map[string]struct {
				Middlewares []string `yaml:"middlewares"`
			} `yaml:"routers"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	fa := conf.HTTP.Middlewares["sekisho"].ForwardAuth
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	if err != nil {
		t.Fatal(err)
	}
	copied := func(name string) bool {
		for _, h := range fa.AuthResponseHeaders {
			if strings.EqualFold(h, name) {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(spoofed); i += 2 {
		// Go canonicalizes names before Traefik sees them.
		name := http.CanonicalHeaderKey(spoofed[i])
		if !copied(name) && !re.MatchString(name) {
			t.Errorf("a client's %s reaches the app", spoofed[i])
		}
	}
	for _, keep := range []string{"Authorization", "Cookie", "Accept", "X-Forwarded-For", "X-Request-Id", "X-Forwarded-Proto"} {
		if re.MatchString(keep) {
			t.Errorf("authResponseHeadersRegex deletes %s", keep)
		}
	}

	// Traefik's entry point replaces these for clients outside
	// forwardedHeaders.trustedIPs (its forwarded headers).
	entryPoint := map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Forwarded-Port": true, "X-Forwarded-Server": true, "X-Real-Ip": true}
	clearing := conf.HTTP.Middlewares["sekisho-clear"].Headers.CustomRequestHeaders
	cleared := map[string]bool{}
	for name, v := range clearing {
		if v != "" {
			t.Errorf("sekisho-clear sets %s to %q; an empty value deletes it", name, v)
		}
		cleared[http.CanonicalHeaderKey(name)] = true
	}
	for i := 0; i < len(forgedForwarding); i += 2 {
		name := http.CanonicalHeaderKey(forgedForwarding[i])
		if !cleared[name] && !entryPoint[name] && !re.MatchString(name) {
			t.Errorf("a client's %s reaches the app", forgedForwarding[i])
		}
	}
	if got := conf.HTTP.Routers["app"].Middlewares; strings.Join(got, ",") != "sekisho-clear,sekisho" {
		t.Errorf("the app router's middlewares are %q, want sekisho-clear before sekisho", got)
	}
}
