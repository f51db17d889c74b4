package route

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/sekisho/sekisho/internal/normalize"
)

// HeaderMatch is one header condition. Value and Regex are exclusive; with
// neither, the header only has to be present.
type HeaderMatch struct {
	Name  string
	Value string // exact value
	Regex string // RE2, matched against the whole value
}

// Rule is one route's match conditions and the value a match hands back,
// kept generic so the table does not depend on what a route compiles to.
type Rule[T any] struct {
	Name       string
	Hosts      []string // "api.example.com" or "*.example.com"; empty means any host
	Path       string   // exact path
	PathPrefix string   // prefix on a segment boundary
	PathRegex  string   // RE2, matched against the whole path
	Methods    []string // empty means any method
	Headers    []HeaderMatch
	Value      T
}

// RuleError says which rule is wrong, by position as well as name, so that a
// config loader can point at the line the rule came from.
type RuleError struct {
	Index int // position in the slice given to New
	Name  string
	Err   error
	// Winner names the earlier rule with the same conditions, when that
	// is the error: the loader decides who wins by order.
	Winner string
}

func (e *RuleError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("route #%d: %v", e.Index+1, e.Err)
	}
	return fmt.Sprintf("route %q: %v", e.Name, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Table is a compiled route table. It is immutable, so one table can serve
// any number of goroutines and be replaced as a whole on reload.
type Table[T any] struct {
	exact    map[string]*bucket[T] // by host
	wildcard map[string]*bucket[T] // by the domain after "*."
	anyHost  *bucket[T]
	n        int
}

// bucket holds the rules for one host condition. Every candidate list is
// sorted by precedence, so the first rule whose conditions hold wins.
type bucket[T any] struct {
	paths  map[string]*pathNode[T] // exact paths and prefixes, by path
	maxKey int                     // longest key in paths: longer strings need no lookup
	regex  []*entry[T]
	rest   []*entry[T] // no path condition
}

// pathNode shares one map lookup between the exact rules for a path and the
// prefix rules for the same string. Prefix keys carry no trailing slash and
// the root prefix "/" is the empty key, so walking the path's segment
// boundaries from the longest down finds the longest prefix first.
type pathNode[T any] struct {
	exact  []*entry[T]
	prefix []*entry[T]
}

type entry[T any] struct {
	name        string
	value       T
	pathRe      *anchored
	methods     []string
	headers     []headerCond
	constraints int
}

type headerCond struct {
	name  string // canonical
	value string
	re    *anchored
}

type pathKind int

const (
	pathNone pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type hostKind int

const (
	hostAny hostKind = iota
	hostExact
	hostWildcard
)

type hostCond struct {
	kind hostKind
	name string // the host, or the domain after "*."
}

// compiled is a validated rule before it is placed in buckets.
type compiled[T any] struct {
	entry    *entry[T]
	hosts    []hostCond
	pathKind pathKind
	pathKey  string
	condKey  string // path, methods and headers, for spotting duplicates
}

// New validates and compiles rules. It reports every bad rule, each as a
// *RuleError, rather than stopping at the first.
func New[T any](rules []Rule[T]) (*Table[T], error) {
	t := &Table[T]{
		exact:    make(map[string]*bucket[T]),
		wildcard: make(map[string]*bucket[T]),
		anyHost:  &bucket[T]{},
		n:        len(rules),
	}
	var errs []error
	names := make(map[string]bool, len(rules))
	owner := make(map[string]string) // host + conditions → rule name
	for i, r := range rules {
		c, err := compile(r)
		if err == nil && names[r.Name] {
			err = errors.New("name is used by an earlier route")
		}
		if err != nil {
			errs = append(errs, &RuleError{Index: i, Name: r.Name, Err: err})
			continue
		}
		names[r.Name] = true
		for _, h := range c.hosts {
			key := strconv.Quote(h.name) + strconv.Itoa(int(h.kind)) + c.condKey
			if prev, dup := owner[key]; dup {
				errs = append(errs, &RuleError{Index: i, Name: r.Name, Winner: prev,
					Err: fmt.Errorf("same match conditions as route %q%s, so it could never be chosen", prev, hostPhrase(h))})
				continue
			}
			owner[key] = r.Name
			t.bucket(h).add(c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t.forEachBucket((*bucket[T]).sort)
	return t, nil
}

// Len reports the number of rules, for status pages and metrics.
func (t *Table[T]) Len() int {
	if t == nil {
		return 0 // a configuration without routes (only the token webhook)
	}
	return t.n
}

func hostPhrase(h hostCond) string {
	switch h.kind {
	case hostExact:
		return fmt.Sprintf(" for host %q", h.name)
	case hostWildcard:
		return fmt.Sprintf(" for host %q", "*."+h.name)
	}
	return ""
}

func (t *Table[T]) bucket(h hostCond) *bucket[T] {
	m := t.exact
	switch h.kind {
	case hostAny:
		return t.anyHost
	case hostWildcard:
		m = t.wildcard
	}
	b := m[h.name]
	if b == nil {
		b = &bucket[T]{}
		m[h.name] = b
	}
	return b
}

func (t *Table[T]) forEachBucket(f func(*bucket[T])) {
	for _, b := range t.exact {
		f(b)
	}
	for _, b := range t.wildcard {
		f(b)
	}
	f(t.anyHost)
}

func (b *bucket[T]) add(c *compiled[T]) {
	switch c.pathKind {
	case pathNone:
		b.rest = append(b.rest, c.entry)
	case pathRegex:
		b.regex = append(b.regex, c.entry)
	default:
		if b.paths == nil {
			b.paths = make(map[string]*pathNode[T])
		}
		n := b.paths[c.pathKey]
		if n == nil {
			n = &pathNode[T]{}
			b.paths[c.pathKey] = n
			b.maxKey = max(b.maxKey, len(c.pathKey))
		}
		if c.pathKind == pathExact {
			n.exact = append(n.exact, c.entry)
		} else {
			n.prefix = append(n.prefix, c.entry)
		}
	}
}

// sort orders each candidate list by constraints, keeping config order
// among equals (entries were appended in config order).
func (b *bucket[T]) sort() {
	sortEntries(b.regex)
	sortEntries(b.rest)
	for _, n := range b.paths {
		sortEntries(n.exact)
		sortEntries(n.prefix)
	}
}

func sortEntries[T any](es []*entry[T]) {
	slices.SortStableFunc(es, func(a, b *entry[T]) int { return cmp.Compare(b.constraints, a.constraints) })
}

func compile[T any](r Rule[T]) (*compiled[T], error) {
	if r.Name == "" {
		return nil, errors.New("name is empty")
	}
	c := &compiled[T]{entry: &entry[T]{name: r.Name, value: r.Value}}
	var err error
	if c.hosts, err = compileHosts(r.Hosts); err != nil {
		return nil, err
	}
	if err = c.compilePath(r); err != nil {
		return nil, err
	}
	if c.entry.methods, err = compileMethods(r.Methods); err != nil {
		return nil, err
	}
	if c.entry.headers, err = compileHeaders(r.Headers); err != nil {
		return nil, err
	}
	if len(c.entry.methods) > 0 {
		c.entry.constraints++
	}
	c.entry.constraints += len(c.entry.headers)

	var key strings.Builder
	fmt.Fprintf(&key, "|%d%q|", c.pathKind, c.pathKey)
	for _, m := range c.entry.methods {
		fmt.Fprintf(&key, "%q", m)
	}
	for _, h := range c.entry.headers {
		fmt.Fprintf(&key, "|%s", headerKey(h))
	}
	c.condKey = key.String()
	return c, nil
}

func compileHosts(hosts []string) ([]hostCond, error) {
	if len(hosts) == 0 {
		return []hostCond{{kind: hostAny}}, nil
	}
	out := make([]hostCond, 0, len(hosts))
	for _, h := range hosts {
		hc, err := parseHost(h)
		if err != nil {
			return nil, fmt.Errorf("host %q: %w", h, err)
		}
		if !slices.Contains(out, hc) {
			out = append(out, hc)
		}
	}
	return out, nil
}

// parseHost accepts hosts in the form the normalize stage produces: one
// trailing dot dropped, IPv6 literals without brackets, lower-case.
func parseHost(h string) (hostCond, error) {
	if addr, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil && addr.Is6() && addr.Zone() == "" {
		return hostCond{kind: hostExact, name: addr.String()}, nil
	}
	hc := hostCond{kind: hostExact, name: strings.TrimSuffix(strings.ToLower(h), ".")}
	if rest, ok := strings.CutPrefix(hc.name, "*."); ok {
		hc = hostCond{kind: hostWildcard, name: rest}
	}
	if hc.name == "" || hc.name == "*" {
		return hc, errors.New(`not a host name; leave hosts empty to match any host, or write "*.example.com"`)
	}
	if len(hc.name) > 253 {
		return hc, errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(hc.name, ".") {
		if label == "" {
			return hc, errors.New("empty label")
		}
		if len(label) > 63 {
			return hc, fmt.Errorf("label %q is longer than 63 characters", label)
		}
		for _, ch := range label {
			switch {
			case ch == '*':
				return hc, errors.New(`"*" is only allowed as the whole first label, as in "*.example.com"`)
			case ch == ':':
				return hc, errors.New(`a host condition takes no port, and ":" appears only in an IPv6 address without a zone`)
			case !('a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_'):
				return hc, fmt.Errorf("character %q is not allowed in a host name", ch)
			}
		}
	}
	return hc, nil
}

func (c *compiled[T]) compilePath(r Rule[T]) error {
	set := 0
	for _, p := range []string{r.Path, r.PathPrefix, r.PathRegex} {
		if p != "" {
			set++
		}
	}
	if set > 1 {
		return errors.New("path, path prefix and path regex are exclusive; set at most one")
	}
	switch {
	case r.Path != "":
		if err := checkPath(r.Path); err != nil {
			return fmt.Errorf("path %q: %w", r.Path, err)
		}
		c.pathKind, c.pathKey = pathExact, r.Path
	case r.PathPrefix != "":
		if err := checkPath(r.PathPrefix); err != nil {
			return fmt.Errorf("path prefix %q: %w", r.PathPrefix, err)
		}
		c.pathKind, c.pathKey = pathPrefix, strings.TrimSuffix(r.PathPrefix, "/")
	case r.PathRegex != "":
		re, err := compileAnchored(r.PathRegex)
		if err != nil {
			return fmt.Errorf("path regex: %w", err)
		}
		c.pathKind, c.pathKey, c.entry.pathRe = pathRegex, r.PathRegex, re
	}
	return nil
}

// checkPath rejects paths that the normalizer never produces, since a rule
// written with them could never match.
func checkPath(p string) error {
	if p[0] != '/' {
		return errors.New("must start with '/'")
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		switch {
		case s == "" && i < len(segs)-1:
			return errors.New("empty segment; requests are matched after duplicate slashes are collapsed")
		case s == "." || s == "..":
			return errors.New(`"." and ".." segments never match; requests are matched after they are resolved`)
		}
	}
	return nil
}

func compileMethods(methods []string) ([]string, error) {
	var out []string
	for _, m := range methods {
		// The same rule the engine canonicalizes request methods by, so
		// that Match can compare exactly.
		c, _, ok := normalize.Method(m)
		if !ok {
			return nil, fmt.Errorf("method %q is not a valid HTTP method", m)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

func compileHeaders(hs []HeaderMatch) ([]headerCond, error) {
	var out []headerCond
	for _, h := range hs {
		if !httpguts.ValidHeaderFieldName(h.Name) {
			return nil, fmt.Errorf("header name %q is not a valid HTTP header name", h.Name)
		}
		hc := headerCond{name: http.CanonicalHeaderKey(h.Name), value: h.Value}
		if h.Regex != "" {
			if h.Value != "" {
				return nil, fmt.Errorf("header %s: value and regex are exclusive; set at most one", hc.name)
			}
			re, err := compileAnchored(h.Regex)
			if err != nil {
				return nil, fmt.Errorf("header %s regex: %w", hc.name, err)
			}
			hc.re = re
		}
		if !slices.ContainsFunc(out, func(o headerCond) bool { return headerKey(o) == headerKey(hc) }) {
			out = append(out, hc)
		}
	}
	slices.SortFunc(out, func(a, b headerCond) int { return strings.Compare(headerKey(a), headerKey(b)) })
	return out, nil
}

func headerKey(h headerCond) string {
	if h.re != nil {
		return fmt.Sprintf("%q~%q", h.name, h.re.re.String())
	}
	return fmt.Sprintf("%q=%q", h.name, h.value)
}

// anchored is a regular expression that must match a whole string.
type anchored struct {
	re  *regexp.Regexp
	lit string // every match starts with lit: a cheap test before the regex
}

func (a *anchored) match(s string) bool {
	return strings.HasPrefix(s, a.lit) && a.re.MatchString(s)
}

// compileAnchored compiles expr on its own first, so that something like
// "a)|(b" is rejected rather than escaping the anchors around it.
func compileAnchored(expr string) (*anchored, error) {
	bare, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%q does not compile: %w", expr, err)
	}
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%q does not compile when anchored: %w", expr, err)
	}
	lit, _ := bare.LiteralPrefix()
	return &anchored{re: re, lit: lit}, nil
}
