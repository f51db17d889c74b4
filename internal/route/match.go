package route

import (
	"net/http"
	"slices"
	"strings"
)

// Match returns the value and name of the rule that serves a request, with
// ok false when no rule does. host must be lower-case without a port and
// path canonical, as the normalize stage leaves them; a path that does not
// start with '/' matches nothing. method must be canonical
// (normalize.Method): it is compared exactly with the rules' methods,
// which are compiled by the same rule. Match does not allocate.
func (t *Table[T]) Match(host, path, method string, h http.Header) (value T, name string, ok bool) {
	if path == "" || path[0] != '/' {
		return value, "", false
	}
	if e := t.find(host, path, method, h); e != nil {
		return e.value, e.name, true
	}
	return value, "", false
}

// find visits host buckets from most to least specific: the exact host,
// then wildcards for each parent domain from the longest, then any host.
func (t *Table[T]) find(host, path, method string, h http.Header) *entry[T] {
	if b := t.exact[host]; b != nil {
		if e := b.find(path, method, h); e != nil {
			return e
		}
	}
	if len(t.wildcard) > 0 {
		// The first label must be non-empty: "*.example.com" matches
		// labels below example.com, never ".example.com".
		for i := strings.IndexByte(host, '.'); i > 0; {
			parent := host[i+1:]
			if b := t.wildcard[parent]; b != nil {
				if e := b.find(path, method, h); e != nil {
					return e
				}
			}
			j := strings.IndexByte(parent, '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return t.anyHost.find(path, method, h)
}

// find returns the first candidate, in precedence order, whose conditions
// all hold: exact path, prefixes from longest to shortest, regular
// expressions, then rules without a path condition.
func (b *bucket[T]) find(path, method string, h http.Header) *entry[T] {
	if len(b.paths) > 0 {
		n := b.node(path)
		if n != nil {
			if e := first(n.exact, method, h); e != nil {
				return e
			}
		}
		for end := len(path); ; {
			if n != nil {
				if e := first(n.prefix, method, h); e != nil {
					return e
				}
			}
			if end == 0 {
				break
			}
			end = strings.LastIndexByte(path[:end], '/')
			n = b.node(path[:end])
		}
	}
	for _, e := range b.regex {
		if e.pathRe.match(path) && e.accepts(method, h) {
			return e
		}
	}
	return first(b.rest, method, h)
}

func (b *bucket[T]) node(key string) *pathNode[T] {
	if len(key) > b.maxKey {
		return nil
	}
	return b.paths[key]
}

func first[T any](es []*entry[T], method string, h http.Header) *entry[T] {
	for _, e := range es {
		if e.accepts(method, h) {
			return e
		}
	}
	return nil
}

func (e *entry[T]) accepts(method string, h http.Header) bool {
	if len(e.methods) > 0 && !slices.Contains(e.methods, method) {
		return false
	}
	for _, c := range e.headers {
		if !c.holds(h[c.name]) {
			return false
		}
	}
	return true
}

func (c headerCond) holds(values []string) bool {
	for _, v := range values {
		switch {
		case c.re != nil:
			if c.re.match(v) {
				return true
			}
		case c.value == "" || v == c.value:
			return true
		}
	}
	return false
}
