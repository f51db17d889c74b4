// Package authz decides whether an identity may make a request: a route's
// deny rules first, then its allow rules, else deny. It is a pure core —
// identity and request attributes in, decision and reason out — so the
// gateway, the decision service and `sekisho explain` all answer alike.
//
// Policies fail closed. A condition that cannot be decided (a CEL error, a
// missing or mistyped claim) makes an allow rule not match and is taken to
// hold in a deny rule, so an error never grants access and never lifts a
// deny.
package authz

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/normalize"
)

// Request holds the request attributes a policy may look at. Path must be
// the canonical path (decoded once, dot segments resolved) that is also
// forwarded upstream; Decide does not normalize it.
type Request struct {
	Method   string
	Host     string
	Path     string
	Query    string
	Headers  http.Header
	ClientIP netip.Addr
	Route    string
	// Hidden are headers policies must not see: identity headers a client
	// could forge (they are stripped before forwarding) and credentials.
	Hidden *normalize.HeaderSet
}

// Decision is the answer for one request; Rule and Reason go to the access
// log and the explain output.
type Decision struct {
	Allow bool
	// Rule names the deciding rule ("deny[0]", "allow[2]"), or "" when no
	// rule matched.
	Rule string
	// Reason is short and safe to log: it never holds request values.
	Reason string
}

// Step is one rule's result in an explanation.
type Step struct {
	Rule    string
	Matched bool
	// Detail names the condition that failed and why, or the condition that
	// could not be evaluated (a CEL error, a missing claim).
	Detail string
}

// RuleError reports one bad field of a rule, with enough structure for the
// config loader to point at its line.
type RuleError struct {
	Route string
	List  string // "allow" or "deny"
	Index int
	Field string // e.g. "when", "claims[1]", "paths[0]"; "" for the whole rule
	Err   error
}

func (e *RuleError) Error() string {
	where := fmt.Sprintf("%s[%d]", e.List, e.Index)
	if e.Field != "" {
		where += "." + e.Field
	}
	return fmt.Sprintf("route %q: %s: %v", e.Route, where, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Policy is a route's compiled rules. It is immutable and safe for
// concurrent use.
type Policy struct {
	env   *Env
	deny  []rule
	allow []rule
}

const reasonNoAllow = "no allow rule matched"

// Compile checks and compiles a route's rules, compiling each CEL
// expression once. The error joins one *RuleError per bad field, so a
// config check reports every mistake at once.
func Compile(env *Env, route string, allow, deny []Rule) (*Policy, error) {
	if env == nil {
		return nil, errors.New("authz: nil Env")
	}
	p := &Policy{env: env}
	var errs []error
	for i, src := range deny {
		r, es := compileRule(env, route, "deny", i, src)
		p.deny = append(p.deny, r)
		errs = append(errs, es...)
	}
	for i, src := range allow {
		r, es := compileRule(env, route, "allow", i, src)
		p.allow = append(p.allow, r)
		errs = append(errs, es...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

var noRequest Request

// Decide evaluates the policy for one request: the first matching deny rule
// denies, else the first matching allow rule allows, else it denies. id is
// nil for an anonymous request; a nil req is treated as empty.
func (p *Policy) Decide(id *identity.Identity, req *Request) Decision {
	in := p.input(id, req)
	for i := range p.deny {
		r := &p.deny[i]
		if res := r.eval(&in); res.matched {
			return r.decision(res)
		}
	}
	for i := range p.allow {
		r := &p.allow[i]
		if res := r.eval(&in); res.matched {
			return r.decision(res)
		}
	}
	return Decision{Reason: reasonNoAllow}
}

// Explain evaluates every rule, not just up to the deciding one, and
// returns the same decision Decide would with a step per rule (deny rules
// first), for `sekisho explain` and debug logs.
func (p *Policy) Explain(id *identity.Identity, req *Request) (Decision, []Step) {
	in := p.input(id, req)
	steps := make([]Step, 0, len(p.deny)+len(p.allow))
	dec, decided := Decision{Reason: reasonNoAllow}, false
	for _, rules := range [][]rule{p.deny, p.allow} {
		for i := range rules {
			r := &rules[i]
			res := r.eval(&in)
			steps = append(steps, Step{Rule: r.name, Matched: res.matched, Detail: res.detail()})
			if res.matched && !decided {
				dec, decided = r.decision(res), true
			}
		}
	}
	return dec, steps
}

func (p *Policy) input(id *identity.Identity, req *Request) input {
	if req == nil {
		req = &noRequest
	}
	return input{env: p.env, id: id, req: req}
}

func (r *rule) decision(res result) Decision {
	if res.err != nil {
		return Decision{Rule: r.name, Reason: r.failClosed}
	}
	return Decision{Allow: !r.deny, Rule: r.name, Reason: r.reason}
}

func (res result) detail() string {
	switch {
	case res.matched && res.err != nil:
		return fmt.Sprintf("matched: %s could not be evaluated (%v); deny rules fail closed", res.cond, res.err)
	case res.matched:
		return "matched"
	case res.err != nil:
		return fmt.Sprintf("%s could not be evaluated (%v); allow rules fail closed", res.cond, res.err)
	}
	return res.cond + ": " + res.why
}
