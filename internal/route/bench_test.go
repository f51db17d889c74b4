package route

import (
	"fmt"
	"net/http"
	"testing"
)

type benchReq struct {
	name, host, path, method string
	want                     string // rule name; empty for a miss
}

// largeRules is 10,000 rules: 100 exact hosts × 90 paths (exact, prefix,
// prefix with a method), 20 wildcard hosts × 25 prefixes, and 500 rules for
// any host, two of them regular expressions.
func largeRules() []Rule[int] {
	var rules []Rule[int]
	add := func(r Rule[int]) {
		r.Value = len(rules)
		rules = append(rules, r)
	}
	for h := range 100 {
		host := fmt.Sprintf("svc%d.example.com", h)
		for p := range 90 {
			r := Rule[int]{Name: fmt.Sprintf("%s-%d", host, p), Hosts: []string{host}}
			switch p % 3 {
			case 0:
				r.Path = fmt.Sprintf("/v1/r%d/detail", p)
			case 1:
				r.PathPrefix = fmt.Sprintf("/v1/r%d", p)
			case 2:
				r.PathPrefix = fmt.Sprintf("/v1/r%d/sub/", p)
				if p%2 == 0 {
					r.Methods = []string{"GET"}
				}
			}
			add(r)
		}
	}
	for w := range 20 {
		host := fmt.Sprintf("*.zone%d.example.net", w)
		for p := range 25 {
			add(Rule[int]{Name: fmt.Sprintf("%s-%d", host, p), Hosts: []string{host}, PathPrefix: fmt.Sprintf("/w%d", p)})
		}
	}
	for p := range 498 {
		add(Rule[int]{Name: fmt.Sprintf("any-%d", p), PathPrefix: fmt.Sprintf("/any%d/", p)})
	}
	add(Rule[int]{Name: "any-re-users", PathRegex: `/users/[0-9]+`})
	add(Rule[int]{Name: "any-re-static", PathRegex: `/static/.*\.(css|js)`})
	return rules
}

var largeReqs = []benchReq{
	{"exact", "svc42.example.com", "/v1/r3/detail", "GET", "svc42.example.com-3"},
	{"prefix-deep", "svc7.example.com", "/v1/r4/a/b/c/d/e/f/g/h", "GET", "svc7.example.com-4"},
	{"prefix-method", "svc99.example.com", "/v1/r8/sub/x", "GET", "svc99.example.com-8"},
	{"prefix-method-fallback", "svc99.example.com", "/v1/r8/sub/x", "POST", ""},
	{"wildcard", "a.b.zone3.example.net", "/w7/x/y", "GET", "*.zone3.example.net-7"},
	{"any-host", "unknown.org", "/any12/x", "GET", "any-12"},
	{"any-host-regex", "svc1.example.com", "/users/42", "GET", "any-re-users"},
	{"miss-known-host", "svc7.example.com", "/nothing/here/at/all", "GET", ""},
	{"miss-unknown-host", "a.b.c.unknown.org", "/x/y", "GET", ""},
}

var smallReqs = []benchReq{
	{"exact-host-prefix", "api.example.com", "/api1/users/7", "GET", "api1"},
	{"health", "other.org", "/healthz", "GET", "health"},
	{"host-only", "app.example.com", "/dashboard", "GET", "app"},
	{"wildcard", "x.preview.example.com", "/", "GET", "previews"},
	{"miss", "other.org", "/x", "GET", ""},
}

func smallRules() []Rule[int] {
	return []Rule[int]{
		{Name: "api1", Hosts: []string{"api.example.com"}, PathPrefix: "/api1/"},
		{Name: "api2", Hosts: []string{"api.example.com"}, PathPrefix: "/api2/"},
		{Name: "api-write", Hosts: []string{"api.example.com"}, PathPrefix: "/", Methods: []string{"POST", "PUT", "DELETE"}},
		{Name: "app", Hosts: []string{"app.example.com"}},
		{Name: "app-ws", Hosts: []string{"app.example.com"}, Path: "/ws", Headers: []HeaderMatch{{Name: "Upgrade", Value: "websocket"}}},
		{Name: "previews", Hosts: []string{"*.preview.example.com"}},
		{Name: "grafana", Hosts: []string{"grafana.example.com"}, PathPrefix: "/"},
		{Name: "docs", Hosts: []string{"docs.example.com"}, PathRegex: `/v[0-9]+/.*`},
		{Name: "health", Path: "/healthz"},
		{Name: "metrics", Path: "/metrics", Methods: []string{"GET"}},
	}
}

func benchTable(b *testing.B, rules []Rule[int], reqs []benchReq) {
	b.Helper()
	tbl := mustNew(b, rules)
	h := http.Header{"Accept": {"*/*"}}
	for _, r := range reqs {
		if _, name, _ := tbl.Match(r.host, r.path, r.method, h); name != r.want {
			b.Fatalf("%s: Match = %q; want %q", r.name, name, r.want)
		}
	}
	for _, r := range reqs {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match(r.host, r.path, r.method, h)
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	rules := largeRules()
	if len(rules) != 10_000 {
		b.Fatalf("built %d rules; want 10000", len(rules))
	}
	benchTable(b, rules, largeReqs)
}

func BenchmarkMatchSmall(b *testing.B) { benchTable(b, smallRules(), smallReqs) }

// TestMatchDoesNotAllocate keeps the zero-allocation promise checked on
// every test run, not only when someone reads benchmark output.
func TestMatchDoesNotAllocate(t *testing.T) {
	tbl := mustNew(t, largeRules())
	h := http.Header{"Accept": {"*/*"}}
	for _, r := range largeReqs {
		if n := testing.AllocsPerRun(100, func() { tbl.Match(r.host, r.path, r.method, h) }); n != 0 {
			t.Errorf("%s: Match allocates %.1f times per call; want 0", r.name, n)
		}
	}
}
