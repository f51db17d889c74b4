package route

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// naiveMatch is the documented precedence written as a linear scan: score
// every rule whose conditions hold and keep the highest. It shares no code
// with the indexed Match, so the two disagree when the index is wrong.
func naiveMatch(rules []Rule[string], host, path, method string, h http.Header) (string, bool) {
	if !strings.HasPrefix(path, "/") {
		return "", false
	}
	var best []int
	bestName := ""
	for i, r := range rules {
		hostScore, ok := naiveHost(r.Hosts, host)
		if !ok {
			continue
		}
		pathKind, prefixLen, ok := naivePath(r, path)
		if !ok || !naiveMethod(r.Methods, method) || !naiveHeaders(r.Headers, h) {
			continue
		}
		constraints := len(r.Headers)
		if len(r.Methods) > 0 {
			constraints++
		}
		score := []int{hostScore, pathKind, prefixLen, constraints, -i}
		if best == nil || slices.Compare(score, best) > 0 {
			best, bestName = score, r.Name
		}
	}
	return bestName, best != nil
}

func naiveHost(hosts []string, host string) (int, bool) {
	if len(hosts) == 0 {
		return 0, true
	}
	best, ok := 0, false
	for _, pat := range hosts {
		pat = strings.ToLower(pat)
		score := 0
		if suffix, wild := strings.CutPrefix(pat, "*."); wild {
			if !strings.HasSuffix(host, "."+suffix) || len(host) <= len(suffix)+1 {
				continue
			}
			score = strings.Count(suffix, ".") + 1
		} else {
			if host != pat {
				continue
			}
			score = 1000
		}
		if !ok || score > best {
			best, ok = score, true
		}
	}
	return best, ok
}

// naivePath returns the path kind's rank (exact 3, prefix 2, regex 1, none
// 0) and, for prefixes, the prefix length.
func naivePath(r Rule[string], path string) (kind, prefixLen int, ok bool) {
	switch {
	case r.Path != "":
		return 3, 0, path == r.Path
	case r.PathPrefix != "":
		p := strings.TrimSuffix(r.PathPrefix, "/")
		return 2, len(p), path == p || strings.HasPrefix(path, p+"/")
	case r.PathRegex != "":
		return 1, 0, regexp.MustCompile("^(?:" + r.PathRegex + ")$").MatchString(path)
	}
	return 0, 0, true
}

func naiveMethod(methods []string, method string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, m := range methods {
		if strings.ToUpper(m) == method {
			return true
		}
	}
	return false
}

func naiveHeaders(conds []HeaderMatch, h http.Header) bool {
	for _, c := range conds {
		ok := false
		for _, v := range h.Values(c.Name) {
			switch {
			case c.Regex != "":
				ok = ok || regexp.MustCompile("^(?:"+c.Regex+")$").MatchString(v)
			case c.Value != "":
				ok = ok || v == c.Value
			default:
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// naiveDuplicate reports whether two rules have the same conditions for
// some host, which New must reject.
func naiveDuplicate(a, b Rule[string]) bool {
	lower := func(ss []string) []string {
		out := make([]string, 0, len(ss))
		for _, s := range ss {
			out = append(out, strings.ToLower(s))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	ha, hb := lower(a.Hosts), lower(b.Hosts)
	sharedHost := len(ha) == 0 && len(hb) == 0
	for _, h := range ha {
		sharedHost = sharedHost || slices.Contains(hb, h)
	}
	headers := func(hs []HeaderMatch) []string {
		var out []string
		for _, h := range hs {
			out = append(out, http.CanonicalHeaderKey(h.Name)+"\x00"+h.Value+"\x00"+h.Regex)
		}
		slices.Sort(out)
		return out
	}
	return sharedHost &&
		a.Path == b.Path && a.PathRegex == b.PathRegex &&
		strings.TrimSuffix(a.PathPrefix, "/") == strings.TrimSuffix(b.PathPrefix, "/") &&
		(a.PathPrefix == "") == (b.PathPrefix == "") &&
		slices.Equal(lower(a.Methods), lower(b.Methods)) &&
		slices.Equal(headers(a.Headers), headers(b.Headers))
}

var (
	genHosts   = []string{"a.example.com", "b.example.com", "example.com", "x.a.example.com", "*.example.com", "*.a.example.com", "*.com", "*.A.example.com"}
	genExact   = []string{"/", "/a", "/a/", "/a/b", "/ab", "/a/b/c"}
	genPrefix  = []string{"/", "/a", "/a/", "/a/b", "/ab", "/a/b/"}
	genRegex   = []string{"/a.*", "/a/[bc]", "/(a|ab)/?", ".*", "/a|/b"}
	genMethods = [][]string{{"GET"}, {"GET", "post"}, {"DELETE"}}
	genHeaders = []HeaderMatch{{Name: "X-A"}, {Name: "X-A", Value: "1"}, {Name: "x-a", Regex: "[0-9]+"}, {Name: "X-B", Value: "2"}}

	reqHosts   = append([]string{"c.example.com", "y.x.a.example.com", "other.org", "example.org", ""}, genHosts[:4]...)
	reqPaths   = []string{"/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/d", "/ab", "/ab/c", "/abc", "/b", "/a/bc", "/a/c"}
	reqMethods = []string{"GET", "POST", "DELETE", "get"}
	reqXA      = [][]string{nil, {"1"}, {"x"}, {"x", "12"}, {""}}
	reqXB      = [][]string{nil, {"2"}, {"3", "2"}}
)

func pick[E any](r *rand.Rand, s []E) E { return s[r.IntN(len(s))] }

func randomRule(r *rand.Rand, name string) Rule[string] {
	rule := Rule[string]{Name: name}
	for range r.IntN(3) {
		rule.Hosts = append(rule.Hosts, pick(r, genHosts))
	}
	switch r.IntN(4) {
	case 1:
		rule.Path = pick(r, genExact)
	case 2:
		rule.PathPrefix = pick(r, genPrefix)
	case 3:
		rule.PathRegex = pick(r, genRegex)
	}
	if r.IntN(2) == 0 {
		rule.Methods = pick(r, genMethods)
	}
	for _, h := range genHeaders {
		if r.IntN(5) == 0 {
			rule.Headers = append(rule.Headers, h)
		}
	}
	return rule
}

// randomTable grows a table rule by rule, checking that New rejects exactly
// the rules that duplicate an earlier one.
func randomTable(tb testing.TB, r *rand.Rand, n int) ([]Rule[string], *Table[string]) {
	tb.Helper()
	var rules []Rule[string]
	tbl := mustNew(tb, rules)
	for i := range n {
		cand := randomRule(r, "r"+string(rune('A'+i%26))+strings.Repeat("'", i/26))
		wantDup := slices.ContainsFunc(rules, func(o Rule[string]) bool { return naiveDuplicate(o, cand) })
		next, err := New(append(slices.Clone(rules), cand))
		switch {
		case err != nil && !wantDup:
			tb.Fatalf("New rejected %+v after %+v: %v", cand, rules, err)
		case err == nil && wantDup:
			tb.Fatalf("New accepted %+v, a duplicate of a rule in %+v", cand, rules)
		case err == nil:
			rules, tbl = append(rules, cand), next
		case !strings.Contains(err.Error(), "same match conditions"):
			tb.Fatalf("New rejected duplicate %+v with %v", cand, err)
		}
	}
	return rules, tbl
}

func randomHeader(r *rand.Rand) http.Header {
	h := http.Header{}
	if v := pick(r, reqXA); v != nil {
		h["X-A"] = v
	}
	if v := pick(r, reqXB); v != nil {
		h["X-B"] = v
	}
	return h
}

func TestMatchAgreesWithLinearScan(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 0))
		rules, tbl := randomTable(t, r, 2+r.IntN(30))
		for range 300 {
			host, path, method, h := pick(r, reqHosts), pick(r, reqPaths), pick(r, reqMethods), randomHeader(r)
			_, got, gotOK := tbl.Match(host, path, method, h)
			want, wantOK := naiveMatch(rules, host, path, method, h)
			if got != want || gotOK != wantOK {
				t.Fatalf("seed %d: Match(%q, %q, %q, %v) = %q, %v; linear scan says %q, %v\nrules: %+v",
					seed, host, path, method, h, got, gotOK, want, wantOK, rules)
			}
		}
	}
}

// validHost filters fuzzed hosts to what the normalizer can hand over:
// non-empty labels, nothing else checked.
func validHost(host string) bool {
	return host == "" || !slices.Contains(strings.Split(host, "."), "")
}

func FuzzMatch(f *testing.F) {
	f.Add("a.example.com", "/a/b", "GET", "1", "2")
	f.Add("x.y.a.example.com", "/ab/", "POST", "12", "")
	f.Add("example.com", "/", "DELETE", "", "3")
	rules, tbl := randomTable(f, rand.New(rand.NewPCG(1, 2)), 60)
	f.Fuzz(func(t *testing.T, host, path, method, xa, xb string) {
		if !validHost(host) {
			t.Skip()
		}
		h := http.Header{"X-A": {xa}, "X-B": {xb}}
		_, got, gotOK := tbl.Match(host, path, method, h)
		want, wantOK := naiveMatch(rules, host, path, method, h)
		if got != want || gotOK != wantOK {
			t.Fatalf("Match(%q, %q, %q, %v) = %q, %v; linear scan says %q, %v", host, path, method, h, got, gotOK, want, wantOK)
		}
	})
}
