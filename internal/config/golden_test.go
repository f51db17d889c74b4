package config

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/sekisho/sekisho/internal/secretref"
	"github.com/sekisho/sekisho/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/*.txtar with what sekisho check reports now")

// Each testdata/*.txtar file is one config a user might write and what
// `sekisho check` answers to it. Its comment says what the case is about;
// the sekisho.yaml section is the config (other sections are files next to
// it that the config names); the want section is exactly what check
// prints: the problems as file:line: key: message and their count, or
// "sekisho.yaml: ok (N routes)".
//
// Certificate files cannot be written into a golden (they expire), so every
// case also finds these, generated when the test runs:
//
//	tls.crt, tls.key   a server certificate for localhost and its key
//	other.key          the key of another certificate from the same CA
//	ca.pem             the CA that issued them
//	client.pem, client.key   a client certificate from that CA and its key
//
// Sections named resources/NAMESPACE/NAME.yaml are the specs of Route
// objects (YAML, as in kubectl apply), created in the order they appear;
// the report then ends with what became of each.
//
// Sections named secrets/NAMESPACE/SECRET/KEY are keys of Kubernetes
// Secrets: a file setting written sekisho+k8s://NAMESPACE/SECRET/KEY reads
// that section (the gateway reads it through the API server); with no
// such section at all, check runs without Kubernetes access. A value
// {{NAME}} is replaced with the generated file NAME.
//
// Run `go test ./internal/config -run Golden -update` to rewrite the want
// sections after changing a message, then read the diff.

// generatedFiles makes the certificate files described above.
func generatedFiles(t *testing.T) map[string][]byte {
	t.Helper()
	ca := testutil.NewCA(t)
	leaf, other, client := ca.Server(t, "localhost"), ca.Server(t, "localhost"), ca.Client(t, "client")
	return map[string][]byte{
		"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "other.key": other.KeyPEM,
		"ca.pem": ca.PEM, "client.pem": client.CertPEM, "client.key": client.KeyPEM,
	}
}

func goldenFiles(t *testing.T) []string {
	t.Helper()
	// Absolute, as each case runs in its own directory.
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.txtar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in testdata: %v", err)
	}
	return files
}

// TestGolden loads each golden config the way `sekisho check` does and
// compares the report with the want section.
func TestGolden(t *testing.T) {
	for _, file := range goldenFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSpace(ar.Comment)) == 0 {
				t.Error("the golden has no comment saying what the case is about")
			}
			got := checkReport(t, ar)
			want := section(ar, "want")
			if want == nil {
				t.Fatal("no want section")
			}
			if *update {
				setSection(ar, "want", []byte(got))
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(want) {
				t.Errorf("sekisho check reports:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// checkReport writes the archive's files and the generated certificates to
// a temporary directory, loads sekisho.yaml from there and returns what
// `sekisho check --config sekisho.yaml` prints.
func checkReport(t *testing.T, ar *txtar.Archive) string {
	t.Helper()
	dir := t.TempDir()
	gen := generatedFiles(t)
	for name, data := range gen {
		testutil.WriteFile(t, dir, name, data)
	}
	hasConfig := false
	var resources []ResourceRoute
	var secretFile func(context.Context, string, secretref.Ref) (string, error)
	for _, f := range ar.Files {
		if f.Name == "want" {
			continue
		}
		if _, ok := strings.CutPrefix(f.Name, "secrets/"); ok {
			data := f.Data
			if name, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "{{"); ok {
				data = gen[strings.TrimSuffix(name, "}}")]
			}
			sdir := filepath.Join(dir, ".secrets", filepath.Dir(f.Name))
			if err := os.MkdirAll(sdir, 0o700); err != nil {
				t.Fatal(err)
			}
			testutil.WriteFile(t, sdir, filepath.Base(f.Name), data)
			secretFile = func(_ context.Context, _ string, ref secretref.Ref) (string, error) {
				p := filepath.Join(dir, ".secrets", "secrets", ref.Path)
				if _, err := os.Stat(p); err != nil {
					ns, name, _ := strings.Cut(ref.Path, "/")
					name, _, _ = strings.Cut(name, "/")
					return "", fmt.Errorf("%s: Secret %s/%s not found", ref.Raw, ns, name)
				}
				return p, nil
			}
			continue
		}
		if rest, ok := strings.CutPrefix(f.Name, "resources/"); ok {
			ns, name, _ := strings.Cut(strings.TrimSuffix(rest, ".yaml"), "/")
			spec, err := sigsyaml.YAMLToJSON(f.Data)
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			resources = append(resources, ResourceRoute{Namespace: ns, Name: name, Generation: 1,
				Created: time.Unix(int64(1_700_000_000+len(resources)), 0), Spec: spec})
			continue
		}
		if _, ok := gen[f.Name]; ok {
			t.Fatalf("%s is generated; the golden must not contain it", f.Name)
		}
		hasConfig = hasConfig || f.Name == "sekisho.yaml"
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f.Name)), 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, dir, f.Name, f.Data)
	}
	if !hasConfig {
		t.Fatal("no sekisho.yaml section")
	}
	t.Chdir(dir)
	s, err := Load("sekisho.yaml", Options{Resources: func() []ResourceRoute { return resources }, SecretFile: secretFile})
	var b strings.Builder
	var cerr *Error
	switch {
	case err == nil:
		fmt.Fprintf(&b, "sekisho.yaml: ok (%d routes)\n", s.Routes.Len())
		for _, r := range s.Resources {
			fmt.Fprintf(&b, "route %s/%s: %s: %s\n", r.Namespace, r.Name, r.Reason, r.Message)
		}
		s.Close()
	case errors.As(err, &cerr):
		for _, p := range cerr.Problems {
			b.WriteString(p.String() + "\n")
		}
		fmt.Fprintf(&b, "%d problem(s) found\n", len(cerr.Problems))
	default:
		fmt.Fprintf(&b, "sekisho: %v\n", err)
	}
	out := b.String()
	assertNoKeyMaterial(t, out, gen["tls.key"], gen["other.key"], gen["client.key"], gen["tls.crt"])
	return out
}

func section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

func setSection(ar *txtar.Archive, name string, data []byte) {
	for i := range ar.Files {
		if ar.Files[i].Name == name {
			ar.Files[i].Data = data
			return
		}
	}
	ar.Files = append(ar.Files, txtar.File{Name: name, Data: data})
}

// uncoveredOK are problem messages no golden shows, with the reason.
var uncoveredOK = map[string]string{
	"generate a session key: %v":                                  "only when the system's random source fails",
	"generate a client secret: %v":                                "only when the system's random source fails",
	"policy engine: %v":                                           "only when the built-in CEL environment fails to build",
	"acme needs a cache_dir to keep certificates across restarts": "the config fills in sekisho-acme when cache_dir is left out",
	"this rule may map identities to reserved system: names; a system:masters group bypasses every RBAC rule":                                                                                                                                                             "a warning, not a problem: the file is accepted (cmd/sekisho TestCheckWarnsAboutSystemNames)",
	"not set: kube-apiserver asks about its API audiences (its --api-audiences, by default its service-account issuer, e.g. https://kubernetes.default.svc.cluster.local); without them here, only tokens whose own aud names one are accepted, and API tokens never are": "a warning, not a problem: the file is accepted (cmd/sekisho TestCheckWarnsWithoutAudiences)",
}

// TestGoldenCoverMessages lists the problem messages written in the
// source (the literal formats given to the compiler's and the listener and
// decision checks' problem helpers) and fails for each one that no golden's
// want section shows, so a new rule comes with a golden. Messages that only
// forward another package's error ("%v") are not listed.
func TestGoldenCoverMessages(t *testing.T) {
	var wants []string
	for _, file := range goldenFiles(t) {
		ar, err := txtar.ParseFile(file)
		if err != nil {
			t.Fatal(err)
		}
		wants = append(wants, string(section(ar, "want")))
	}
	all := strings.Join(wants, "\n")
	var sources []string
	for _, pattern := range []string{"*.go", "../listen/check.go", "../listen/servertls.go", "../decision/decisionconf/decisionconf.go",
		"../tokenreview/webhookconf/webhookconf.go", "../inject/injectconf/injectconf.go", "../kubeuser/kubeuser.go", "../kubeuser/template.go"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, m...)
	}
	formats := 0
	for _, src := range sources {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		for _, format := range problemFormats(t, src) {
			formats++
			if _, ok := uncoveredOK[format]; ok {
				continue
			}
			if !formatRegexp(format).MatchString(all) {
				t.Errorf("%s: no golden in testdata shows the problem %q", src, format)
			}
		}
	}
	if formats < 40 {
		t.Fatalf("found only %d problem messages in the source; has the way problems are written changed?", formats)
	}
}

// problemFormats returns the literal message formats in file: the first
// string argument of calls to addf and add, and Msg fields of Problem
// literals, leaving out those made only of verbs ("%v").
func problemFormats(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	literal := func(e ast.Expr) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || strings.TrimSpace(verb.ReplaceAllString(s, "")) == "" {
			return
		}
		out = append(out, s)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			name := ""
			switch fn := n.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			if name != "addf" && name != "add" {
				return true
			}
			for _, a := range n.Args[1:] {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					literal(a)
					break
				}
			}
		case *ast.KeyValueExpr:
			if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Msg" {
				literal(n.Value)
			}
		}
		return true
	})
	return slices.Compact(out)
}

var verb = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

// formatRegexp matches the messages a format produces.
func formatRegexp(format string) *regexp.Regexp {
	parts := verb.Split(format, -1)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(strings.Join(parts, ".*"))
}
