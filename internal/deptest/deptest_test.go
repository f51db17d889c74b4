package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// mod is the module path; the tables name packages relative to it.
const mod = "github.com/sekisho/sekisho"

// stages are sekisho's request-path packages in dependency order: a package
// must not depend, directly or through other packages, on a package of a
// later stage. Where the order differs from the order a request meets the
// stages (docs/architecture.md draws both), a comment says why.
var stages = []struct {
	name string
	pkgs []string
}{
	{"normalize", []string{"internal/normalize"}},
	// The listener comes first on the wire but after normalize here: it
	// canonicalizes the host of its HTTP→HTTPS redirect and its ACME names
	// with normalize.Host, the function routes match on, so all agree.
	{"listen", []string{"internal/listen"}},
	{"route", []string{"internal/route"}},
	// identity is the one shape of a caller, and its claim mapping is the
	// pipeline's identity arrow. The authenticators build an Identity and
	// apply the mapping themselves, so identity comes before them.
	{"identity", []string{"internal/identity"}},
	// The credential chain, its bearer verifiers, and the browser half (the
	// login flow and the session store), which the chain reaches through
	// the authn.SessionAuthenticator interface.
	{"authenticate", []string{"internal/authn", "internal/authn/apitoken", "internal/authn/jwtauth", "internal/session", "internal/login"}},
	{"authorize", []string{"internal/authz"}},
	// Mapping an identity to a Kubernetes user selects identities with the
	// policy rules' match fields, so it comes after authorize.
	{"kube user", []string{"internal/kubeuser"}},
	// The forward parts act after the decision but are built before it: a
	// compiled route holds its upstream pool and the engine signs the
	// assertion, so they come before the compiler and the engine.
	{"forward", []string{"internal/proxy", "internal/assertion"}},
	// The snapshot is what the engine runs on: the route table with every
	// stage's compiled parts. It holds them but knows no YAML.
	{"snapshot", []string{"internal/snapshot"}},
	// config decodes the file and compiles it into a snapshot; nothing on
	// the request path reads it.
	{"compile", []string{"internal/config"}},
	// The watcher of Route objects feeds the compiler a second source of
	// routes and writes back what the compile made of them: it uses
	// config's types and the snapshot's report, and nothing that serves a
	// request, so it comes right after the compiler.
	{"kube source", []string{"internal/kubesource"}},
	{"engine", []string{"internal/engine"}},
	{"modes", []string{"internal/gateway", "internal/decision", "internal/explain", "internal/tokenreview", "internal/inject"}},
	{"process", []string{"internal/serve"}},
}

// helpers are the small packages any stage may use. They use no stage back,
// or every stage would depend on every other through them. internal/tracing
// is one: the engine, the modes and the proxy's caller start spans with it,
// and it knows none of them (only the OpenTelemetry SDK and exporters).
// internal/cache is another: the bounded map behind the verified-token and
// decoded-session caches, which imports nothing of sekisho.
var helpers = []string{"internal/admin", "internal/cache", "internal/echo", "internal/expset", "internal/httperr", "internal/reqinfo", "internal/reuse", "internal/telemetry", "internal/tracing"}

// devidp is the built-in development OpenID provider.
const devidp = "internal/devidp"

// kubelogin is `sekisho kube login`, kubectl's credential plugin: a client
// of OpenID providers, outside the request pipeline.
const kubelogin = "internal/kubelogin"

// authnSide is the authenticate stage.
var authnSide = stage("authenticate")

// stage returns the packages of the stage called name.
func stage(name string) []string {
	for _, s := range stages {
		if s.name == name {
			return s.pkgs
		}
	}
	panic("deptest: no stage " + name)
}

// forbidden are the rules the stage order does not express: the packages
// in from must not depend on those in deps, because of why.
var forbidden = []struct {
	from []string
	deps []string
	why  string
}{
	{
		from: []string{"internal/engine"},
		deps: []string{"internal/gateway", "internal/decision", "internal/explain", "internal/tokenreview", "internal/serve", "internal/listen"},
		why:  "the engine is the one decision core the gateway, the decision service and the tools share: it knows none of them, and owns no socket",
	},
	{
		from: []string{"internal/engine", "internal/gateway", "internal/decision", "internal/explain", "internal/tokenreview"},
		deps: []string{"internal/config"},
		why:  "requests run on the compiled snapshot (internal/snapshot); only the process and the commands read the file",
	},
	{
		from: []string{"internal/gateway"},
		deps: []string{"internal/decision", "internal/explain", "internal/tokenreview"},
		why:  modesWhy,
	},
	{
		from: []string{"internal/decision"},
		deps: []string{"internal/gateway", "internal/explain", "internal/tokenreview"},
		why:  modesWhy,
	},
	{
		from: []string{"internal/explain"},
		deps: []string{"internal/gateway", "internal/decision", "internal/tokenreview"},
		why:  modesWhy,
	},
	{
		from: []string{"internal/tokenreview"},
		deps: []string{"internal/gateway", "internal/decision", "internal/explain", "internal/engine"},
		why:  "the token webhook answers who a token belongs to, never whether a request may pass: it uses the credential chain and the user mapping, not the engine or another mode",
	},
	{
		from: []string{"internal/inject"},
		deps: []string{"internal/gateway", "internal/decision", "internal/explain", "internal/tokenreview", "internal/engine", "internal/config"},
		why:  "the injector wraps pods by what their spec says; it decides no request, so it needs neither the engine, another mode, nor the whole configuration (only its own section, package injectconf)",
	},
	{
		from: []string{"internal/config"},
		deps: []string{"internal/kubesecret"},
		why:  "the compiler reads files; the process that runs it puts Kubernetes Secrets into files (Options.SecretFile), so compiling needs no API server",
	},
	{
		from: []string{"internal/explain"},
		deps: []string{"internal/listen"},
		why:  "explain and policy test decide offline, on a compiled snapshot; they start no listener",
	},
	{
		from: []string{"internal/authn"},
		deps: []string{"internal/login"},
		why:  "the credential chain takes browser sessions through authn.SessionAuthenticator, so bearer authentication needs neither the OIDC flow nor its provider client",
	},
	{
		from: []string{"internal/authz"},
		deps: authnSide,
		why:  "policy decides on the identity, never on how it was proven (token and issuer rules read the identity's fields), so a rule means the same for every credential",
	},
	{
		from: []string{"internal/proxy"},
		deps: append([]string{"internal/listen", "internal/route", "internal/identity", "internal/authz"}, authnSide...),
		why:  "the forward stage sends the request it is handed to an upstream: who asked, and whether they may, was settled before it runs; the listening sockets belong to listen",
	},
	{
		from: []string{"internal/assertion"},
		deps: append([]string{"internal/listen", "internal/route", "internal/authz", "internal/proxy"}, authnSide...),
		why:  "the assertion signs the identity it is handed; it knows neither how the identity was proven nor what it was allowed",
	},
}

const modesWhy = "the modes are independent callers of the engine: what two of them need belongs in the engine"

// allowed are direct imports that the rules would refuse, each with the
// reason it is wanted. Dependencies through these edges are not counted.
// An entry the code no longer needs fails the test, so the list can only
// shrink.
var allowed = map[[2]string]string{
	{devidp, "net/http/httptest"}: "the built-in provider's in-process Transport answers the login flow with an httptest.ResponseRecorder, which builds a complete *http.Response; httptest brings in no testing package",
}

// cmdImports are the only sekisho packages cmd/sekisho may import, each
// with what it is for: main parses flags and hands off, so logic it needs
// belongs in a package of its own.
var cmdImports = map[string]string{
	".":                       "the embedded quickstart configuration (embed.go)",
	"internal/serve":          "sekisho serve",
	"internal/config":         "sekisho check, explain and policy test load a file and print its problems",
	"internal/snapshot":       "sekisho explain and policy test hand the loaded snapshot to explain",
	"internal/explain":        "sekisho explain and sekisho policy test",
	"internal/identity":       "sekisho explain --identity decodes the identity to decide for",
	"internal/authn/apitoken": "sekisho token new and sekisho token hash",
	"internal/kubelogin":      "sekisho kube login and sekisho kube setup (kubectl's credential plugin)",
	"internal/tokenreview":    "sekisho kube webhook-config writes the kubeconfig kube-apiserver reaches the webhook with",
	"internal/inject":         "sekisho kube injector-manifests prints the injector's manifests; sekisho kube copy-binary is its init container",
	"internal/secretexec":     "sekisho exec resolves the environment's secret references and runs the program",
	"internal/kubesecret":     "sekisho check, explain and the kube commands read the Kubernetes Secrets file settings reference, as serve does",
}

// testSupportPkgs are test-support packages the name rule of testSupport
// (a name ending in "test") does not catch, or catches only by accident,
// each with why it is test support. Production code must not depend on
// them; they may depend on each other and on production code.
var testSupportPkgs = map[string]string{
	"internal/kubetest":    "runs a real kube-apiserver and etcd for tests, built from the tools module; it also starts processes and reads the repository's files",
	"internal/toolbin":     "builds the real servers the tests run from the tools modules; it starts the go command and reads the repository's files",
	"internal/helmtest":    "renders the Helm chart with the real helm CLI, built from the tools module; it starts processes and reads the repository's files",
	"internal/toolbin/all": "the command scripts/test.sh runs to build every tools module's servers before the tests; it exists only for the test helpers",
}

// rules returns every forbidden dependency: package ⇒ dependency ⇒ why.
func rules() map[string]map[string]string {
	r := map[string]map[string]string{}
	add := func(from, dep, why string) {
		if r[from] == nil {
			r[from] = map[string]string{}
		}
		r[from][dep] = why
	}
	var all []string
	for i, s := range stages {
		all = append(all, s.pkgs...)
		for _, later := range stages[i+1:] {
			for _, from := range s.pkgs {
				for _, dep := range later.pkgs {
					add(from, dep, fmt.Sprintf("the %s stage comes before the %s stage: a stage uses only what earlier stages produced, so the pipeline reads and tests in order", s.name, later.name))
				}
			}
		}
	}
	for _, from := range helpers {
		for _, dep := range append([]string{devidp}, all...) {
			add(from, dep, "helpers sit below every stage; a helper that used a stage would tie every stage to it")
		}
	}
	for _, dep := range append([]string{devidp}, all...) {
		add(kubelogin, dep, "kubectl's credential plugin is an OpenID client on the user's machine: it talks to any provider over HTTP and shares nothing with the gateway's pipeline or the built-in provider, which would otherwise ship into its code paths")
	}
	for _, dep := range all {
		add(devidp, dep, "the built-in provider is an OpenID provider of its own, which the login flow reaches over HTTP like any other; pipeline code shared with it could hide a protocol bug behind a shortcut")
	}
	for _, s := range stages {
		if s.name == "compile" {
			break
		}
		for _, from := range s.pkgs {
			add(from, devidp, "no stage knows the built-in provider: login treats it as any OpenID provider, and only config plugs it in (with a Transport)")
		}
	}
	for _, f := range forbidden {
		for _, from := range f.from {
			for _, dep := range f.deps {
				add(from, dep, f.why)
			}
		}
	}
	return r
}

// TestLayering fails when a package depends on one it must not, naming the
// import chain and the reason. A dependency is reported once, at the
// package whose import brings it in: not again at each package above it
// that is bound by the same rule.
func TestLayering(t *testing.T) {
	g := load(t)
	r := rules()
	for _, from := range sortedKeys(r) {
		deps := r[from]
		reach := g.reach(abs(from))
		for _, dep := range sortedKeys(deps) {
			if _, ok := reach[abs(dep)]; !ok {
				continue
			}
			links := chain(reach, abs(from), abs(dep))
			if _, below := r[rel(links[1])][dep]; below {
				continue // reported at links[1]
			}
			t.Errorf("%s must not depend on %s (%s): %s", from, dep, arrows(links), deps[dep])
		}
	}
}

// TestNoTestSupportInProduction fails when a production package depends on
// test support: the testing package, httptest, or one of sekisho's test
// helpers (internal/testutil, jwttest, redistest, kubetest; any package
// whose name ends in "test", and those testSupportPkgs lists). Test code
// (_test.go files) may use them freely.
func TestNoTestSupportInProduction(t *testing.T) {
	g := load(t)
	for _, p := range g.module() {
		if !g.production(p) {
			continue // a helper may build on another helper
		}
		reach := g.reach(p)
		for _, dep := range sortedKeys(reach) {
			if !testSupport(dep) {
				continue
			}
			links := chain(reach, p, dep)
			if g.production(links[1]) {
				continue // reported at links[1]
			}
			t.Errorf("%s must not depend on %s (%s): production code never uses test support; it would ship in the binary", rel(p), rel(dep), arrows(links))
		}
	}
}

// TestCommandIsThin fails when cmd/sekisho imports a sekisho package that
// cmdImports does not list.
func TestCommandIsThin(t *testing.T) {
	g := load(t)
	for _, imp := range g.pkgs[abs("cmd/sekisho")].Imports {
		if !strings.HasPrefix(imp+"/", mod+"/") {
			continue
		}
		if _, ok := cmdImports[rel(imp)]; !ok {
			t.Errorf("cmd/sekisho imports %s, which cmdImports does not list: main only parses flags and hands off; put the logic in a package main already uses, or list the import with what it is for", rel(imp))
		}
	}
}

// TestRulesAreCurrent fails when a table names a package that does not
// exist (a rename would otherwise make its rules pass vacuously), or keeps
// an allowed import, or a cmd/sekisho import, that the code no longer has.
func TestRulesAreCurrent(t *testing.T) {
	g := load(t)
	named := []string{devidp, kubelogin}
	named = append(named, helpers...)
	for from, deps := range rules() {
		named = append(named, from)
		for dep := range deps {
			named = append(named, dep)
		}
	}
	slices.Sort(named)
	for _, p := range slices.Compact(named) {
		if q, ok := g.pkgs[abs(p)]; !ok || q.DepOnly {
			t.Errorf("the rules name %s, which is not a package of this module: update the tables in deptest_test.go", p)
		}
	}
	for edge := range allowed {
		if p, ok := g.pkgs[abs(edge[0])]; !ok || !slices.Contains(p.Imports, abs(edge[1])) {
			t.Errorf("allowed lists %s importing %s, which it no longer does: remove the entry", edge[0], edge[1])
		}
	}
	for p := range testSupportPkgs {
		if q, ok := g.pkgs[abs(p)]; !ok || q.DepOnly {
			t.Errorf("testSupportPkgs names %s, which is not a package of this module: update the table", p)
		}
	}
	for imp := range cmdImports {
		if !slices.Contains(g.pkgs[abs("cmd/sekisho")].Imports, abs(imp)) {
			t.Errorf("cmdImports lists %s, which cmd/sekisho no longer imports: remove the entry", imp)
		}
	}
}

// testSupport reports whether path is test support: the standard library's
// testing packages and httptest, and this module's helpers (testutil, any
// package whose name ends in "test", and testSupportPkgs). Third-party test
// libraries import the testing package, which is caught through them.
func testSupport(path string) bool {
	if _, ok := testSupportPkgs[rel(path)]; ok && strings.HasPrefix(path, mod+"/") {
		return true
	}
	switch {
	case path == "testing", strings.HasPrefix(path, "testing/"), path == "net/http/httptest":
		return true
	case strings.HasPrefix(path, mod+"/"):
		name := path[strings.LastIndexByte(path, '/')+1:]
		return name == "testutil" || strings.HasSuffix(name, "test")
	}
	return false
}

// pkg is the part of `go list -json` the rules need.
type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	DepOnly    bool
	Error      *struct{ Err string }
}

// graph is the import graph of the module's packages (without their tests)
// and of everything they depend on.
type graph struct {
	root string
	pkgs map[string]*pkg
}

var loadOnce = sync.OnceValues(func() (*graph, error) {
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,Imports,DepOnly,Error", mod+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w\n%s", err, stderr.Bytes())
	}
	g := &graph{pkgs: map[string]*pkg{}}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		g.pkgs[p.ImportPath] = p
	}
	root, ok := g.pkgs[mod]
	if !ok {
		return nil, fmt.Errorf("go list did not list %s", mod)
	}
	g.root = root.Dir
	return g, nil
})

// load returns the module's import graph. It also reads every directory of
// the module, so that `go test` caches the result only while no source file
// changes: the graph comes from a `go list` child process, whose reads the
// test cache does not see.
func load(t *testing.T) *graph {
	t.Helper()
	g, err := loadOnce()
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(g.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != g.root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the module's directories: %v", err)
	}
	return g
}

// production reports whether path is one of the module's packages and not
// test support.
func (g *graph) production(path string) bool {
	p, ok := g.pkgs[path]
	return ok && !p.DepOnly && !testSupport(path)
}

// module lists the module's own packages, sorted.
func (g *graph) module() []string {
	var out []string
	for path, p := range g.pkgs {
		if !p.DepOnly {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out
}

// reach returns every package from depends on, directly or not, each
// mapped to the package that imports it on a shortest chain from from.
// Imports listed in allowed are not followed.
func (g *graph) reach(from string) map[string]string {
	parent := map[string]string{}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		node, ok := g.pkgs[p]
		if !ok {
			continue
		}
		for _, imp := range node.Imports {
			if _, seen := parent[imp]; seen || imp == from {
				continue
			}
			if _, ok := allowed[[2]string{rel(p), rel(imp)}]; ok {
				continue
			}
			parent[imp] = p
			queue = append(queue, imp)
		}
	}
	return parent
}

// chain is the import chain from from to dep that reach found, from
// first.
func chain(parent map[string]string, from, dep string) []string {
	links := []string{dep}
	for p := dep; p != from; {
		p = parent[p]
		links = append(links, p)
	}
	slices.Reverse(links)
	return links
}

// arrows shows an import chain as "a → b → c".
func arrows(links []string) string {
	out := make([]string, len(links))
	for i, l := range links {
		out[i] = rel(l)
	}
	return strings.Join(out, " → ")
}

// abs turns a path the tables use into an import path: the module's
// packages are named relative to it ("internal/engine", "." for its root
// package), any other package by its import path ("net/http/httptest").
func abs(p string) string {
	switch {
	case p == ".":
		return mod
	case strings.HasPrefix(p, "internal/"), strings.HasPrefix(p, "cmd/"), strings.HasPrefix(p, "bench/"):
		return mod + "/" + p
	}
	return p
}

// rel is the inverse of abs, for messages.
func rel(path string) string {
	if path == mod {
		return "."
	}
	return strings.TrimPrefix(path, mod+"/")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
