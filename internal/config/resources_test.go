package config

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/reuse"
	"github.com/sekisho/sekisho/internal/snapshot"
)

func TestServiceUpstream(t *testing.T) {
	file := &compiler{}
	res := &compiler{scope: &resourceScope{namespace: "team-a"}}
	tests := []struct {
		name string
		c    *compiler
		raw  string
		want string // URL, or the start of the error
	}{
		{"file", file, "service/team-b/api:8080", "http://api.team-b.svc.cluster.local:8080"},
		{"resource", res, "service/api:80", "http://api.team-a.svc.cluster.local:80"},
		{"resource names another namespace", res, "service/team-b/api:80", `upstream "service/team-b/api:80": a route from a resource sends only to Services of its own namespace`},
		{"file without namespace", file, "service/api:80", `upstream "service/api:80": in the configuration file, name the namespace`},
		{"no port", res, "service/api", `upstream "service/api": want service/NAME:PORT`},
		{"port zero", res, "service/api:0", "upstream \"service/api:0\": the port must be a number"},
		{"port too big", res, "service/api:65536", "upstream \"service/api:65536\": the port must be a number"},
		{"named port", res, "service/api:http", "upstream \"service/api:http\": the port must be a number"},
		{"host injection", res, "service/api.evil.com:80", `upstream "service/api.evil.com:80": "api.evil.com" is not a Service name`},
		{"userinfo", res, "service/a@b:80", `upstream "service/a@b:80": "a@b" is not a Service name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := tt.c.serviceUpstream(tt.raw, DefaultClusterDomain)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = u.String()
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("serviceUpstream(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

// TestResourceRoutesServed checks that accepted resources are in the
// route table under NAMESPACE/NAME and left-out ones are not, and that
// resources are ignored without kube.resources.
func TestResourceRoutesServed(t *testing.T) {
	spec := []byte(`{"match":{"host":"example.com","path_prefix":"/a/"},"to":"service/api:8080","allow":[{"groups":["dev"]}]}`)
	bad := []byte(`{"match":{"host":"example.com","path_prefix":"/b/"},"to":"service/api:8080"}`)
	resources := func() []ResourceRoute {
		return []ResourceRoute{{Namespace: "team-a", Name: "api", Generation: 3, Spec: spec}, {Namespace: "team-a", Name: "bad", Generation: 1, Spec: bad}}
	}
	for _, tt := range []struct {
		name      string
		yaml      string
		wantRoute bool
	}{
		{"with kube.resources", "listen: {http: 127.0.0.1:0}\nkube: {resources: {}}\n", true},
		{"without", "listen: {http: 127.0.0.1:0}\nroutes: [{name: x, match: {path: /x}, to: http://127.0.0.1:9, public: true}]\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.yaml), "sekisho.yaml", t.TempDir(), Options{Resources: resources})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, name, ok := s.Routes.Match("example.com", "/a/x", "GET", nil)
			if got := ok && name == "team-a/api"; got != tt.wantRoute {
				t.Errorf("route team-a/api served = %v, want %v", got, tt.wantRoute)
			}
			if !tt.wantRoute {
				if len(s.Resources) != 0 {
					t.Errorf("Resources = %+v, want none", s.Resources)
				}
				return
			}
			if len(s.Resources) != 2 {
				t.Fatalf("Resources = %+v", s.Resources)
			}
			got := s.Resources[0]
			if !got.Accepted || got.Generation != 3 || got.Reason != "Accepted" {
				t.Errorf("api status = %+v", got)
			}
			if b := s.Resources[1]; b.Accepted || b.Reason != "Invalid" || !strings.Contains(b.Message, "has no allow rule") {
				t.Errorf("bad status = %+v", b)
			}
		})
	}
}

// FuzzResourceSpec feeds Route object specs, which any namespace with
// create rights writes, to the compiler: it must never panic, and a spec
// is either served or reported, never both nor neither.
func FuzzResourceSpec(f *testing.F) {
	for _, s := range []string{
		`{"match":{"host":"example.com","path_prefix":"/a/"},"to":"service/api:8080","allow":[{"groups":["dev"]}]}`,
		`{"match":{"host":"*.example.com"},"to":[{"url":"service/a:1","weight":2},"service/b:2"],"public":true}`,
		`{"name":"x","to":"http://x","upstream_tls":{"ca_file":"/etc/passwd"}}`,
		`{"match":{"path_regex":"^/(a|b"},"to":"service/api:1","deny":[{"when":"true"}],"allow":[{"emails":["a@b"]}]}`,
		`[]`, `null`, `"x"`, `{"timeout":"-1s","retries":-3,"upgrades":["h2c"]}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, spec []byte) {
		res := func() []ResourceRoute { return []ResourceRoute{{Namespace: "ns", Name: "r", Spec: spec}} }
		s, err := Parse([]byte("listen: {http: 127.0.0.1:0}\nkube: {resources: {}}\n"), "sekisho.yaml", dir, Options{Resources: res})
		if err != nil {
			t.Fatalf("a resource failed the whole compile: %v", err)
		}
		defer s.Close()
		if len(s.Resources) != 1 {
			t.Fatalf("Resources = %+v", s.Resources)
		}
		_, name, served := s.Routes.Match("example.com", "/a/", "GET", nil)
		if st := s.Resources[0]; !st.Accepted && served && name == "ns/r" {
			t.Fatalf("refused resource is served: %+v", st)
		}
	})
}

// BenchmarkCompileResources is the cost of one reload from Route objects:
// every change of one object compiles the file and all of them again.
func BenchmarkCompileResources(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			routes := make([]ResourceRoute, n)
			for i := range routes {
				spec := fmt.Sprintf(`{"match":{"host":"app%d.example.com","path_prefix":"/api/"},"to":"service/api:8080","allow":[{"groups":["dev"]}],"deny":[{"when":"!identity.mfa"}]}`, i)
				routes[i] = ResourceRoute{Namespace: "team-" + strconv.Itoa(i%10), Name: "r" + strconv.Itoa(i), Generation: 1, Spec: []byte(spec)}
			}
			opts := Options{Resources: func() []ResourceRoute { return routes }, Reuse: reuse.NewPool(reuse.Options{})}
			src := []byte("listen: {http: 127.0.0.1:0}\nkube: {resources: {}}\n")
			dir := b.TempDir()
			var prev *snapshot.Snapshot
			for b.Loop() {
				s, err := Parse(src, "sekisho.yaml", dir, opts)
				if err != nil {
					b.Fatal(err)
				}
				if prev != nil {
					prev.Close()
				}
				prev = s
			}
			if prev != nil {
				if got := prev.Routes.Len(); got != n {
					b.Fatalf("%d routes served, want %d", got, n)
				}
				prev.Close()
			}
		})
	}
}
