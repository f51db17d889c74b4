package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/normalize"
)

// ClaimMatch tests one top-level claim of the identity. Exactly one of
// Equals and Contains is set, to a string, number or boolean.
//
// Equals holds when the claim is a scalar of the same kind with the same
// value. Contains holds when the claim is a list with an element equal to the
// value; it never does substring matching, so `contains: admin` cannot be
// satisfied by a claim "not-admin". Nested claims are reached with `when`
// (e.g. `'ops' in identity.claims.realm_access.roles`).
//
// A claim that is missing, or whose type does not fit the match (a string
// where Contains needs a list), cannot be decided: an allow rule then does not
// match, and a deny rule treats the condition as holding.
type ClaimMatch struct {
	Claim    string `yaml:"claim"`
	Equals   any    `yaml:"equals"`
	Contains any    `yaml:"contains"`
}

// Rule is one entry of a route's allow: or deny: list. Every field that is
// set must hold for the rule to match (AND); within a list field any one
// value is enough (OR). A rule with no fields is rejected: under AND it would
// match every request, which is never what a policy means.
//
// Identity conditions (Emails, Domains, Groups, Users, Subjects, Tokens,
// Issuers, Claims) never hold for an anonymous request; request conditions (Methods,
// Paths, ClientIPs) and When can.
type Rule struct {
	// Emails are whole addresses, compared ASCII case-insensitively.
	Emails []string `yaml:"emails"`
	// Domains match the part after the single '@' of a well-formed email
	// address, ASCII case-insensitively and exactly: example.com does not
	// match sub.example.com. Malformed addresses ("a@b.com@evil.com",
	// "@example.com", "alice@") match no domain.
	Domains []string `yaml:"domains"`
	// Groups match any of the identity's groups exactly.
	Groups []string `yaml:"groups"`
	// Users match identity.Username exactly.
	Users []string `yaml:"users"`
	// Subjects match identity.Subject (the token's "sub") exactly: the one
	// name an issuer promises never to reassign, where usernames and emails
	// may change hands.
	Subjects []string `yaml:"subjects"`
	// Tokens match the configured name of the API token that authenticated
	// the request; they never match other authentication methods.
	Tokens []string `yaml:"tokens"`
	// Issuers match the identity's issuer exactly.
	Issuers []string `yaml:"issuers"`
	// ServiceAccounts match Kubernetes service accounts as
	// "namespace/name", or "namespace/*" for every account of a namespace;
	// they never match other identities. A shortcut for the common
	// identity.kube condition.
	ServiceAccounts []string `yaml:"service_accounts"`
	// Claims must all hold (AND, like every other field).
	Claims []ClaimMatch `yaml:"claims"`
	// Methods match the request method by the one rule of
	// normalize.Method: both are upper-cased, so a deny on DELETE also
	// catches "delete", and an extension method (PROPFIND) is compared the
	// same way.
	Methods []string `yaml:"methods"`
	// Paths are prefixes of the canonical request path on segment
	// boundaries: /admin matches /admin and /admin/x but not /administrator.
	// A trailing slash is ignored (/admin/ is /admin) and / matches every
	// path. There are no globs: /x/* is rejected, write /x.
	Paths []string `yaml:"paths"`
	// ClientIPs are CIDRs ("10.0.0.0/8", "2001:db8::/32") or single
	// addresses the client address must be in. The client address is the
	// peer's, or, behind a trusted proxy, the one it reports in
	// X-Forwarded-For. An IPv4-mapped IPv6 client counts as its IPv4
	// address. An unknown client address cannot be decided (fails closed).
	ClientIPs []string `yaml:"client_ips"`
	// When is a CEL expression over `identity` and `request` that must be
	// boolean; see Env for the variables. Its evaluation is capped, and an
	// expression that errors or exceeds the cap fails closed.
	When string `yaml:"when"`
}

// rule is a compiled Rule. Its checks run cheapest first and stop at the
// first condition that fails.
type rule struct {
	name       string // "deny[0]"
	deny       bool
	reason     string // Decision.Reason when the rule matches
	failClosed string // Decision.Reason when a deny rule matches on an undecided condition

	methods []string // canonical (normalize.Method)
	paths   []string // without trailing slash, except "/"
	emails  []string // lower-case
	domains []string // lower-case
	groups  []string
	users   []string
	subs    []string
	tokens  []string
	issuers []string
	sas     []string // "namespace/name" or "namespace/*"
	claims  []claimMatch

	// idCond is the first identity condition of the rule, named when an
	// anonymous request fails it; "" when the rule has none.
	idCond string
	when   cel.Program
	// readsKube: when reads identity.kube, which only Kubernetes service
	// accounts have; for anyone else it cannot be decided.
	readsKube bool
	clients   []netip.Prefix // client_ips
}

// result is the outcome of evaluating one rule. Its strings are fixed at
// compile time so that Decide does not allocate.
type result struct {
	matched bool
	// cond names the condition that failed, or, when matched, the first one
	// that could not be decided and was taken to hold (deny rules only).
	cond string
	// why says why cond failed, when it was decided.
	why string
	// err says why cond could not be decided.
	err error
}

// eval decides whether the rule matches. A condition that cannot be decided
// fails an allow rule and is taken to hold in a deny rule: both fail closed.
func (r *rule) eval(in *input) result {
	req := in.req
	if r.methods != nil && !contains(r.methods, req.Method) {
		return result{cond: "methods", why: "request method not listed"}
	}
	if r.paths != nil && !underAny(r.paths, req.Path) {
		return result{cond: "paths", why: "path not under a listed prefix"}
	}
	noClientIP := false
	if r.clients != nil {
		if res, ok := r.evalClientIP(req.ClientIP); !ok {
			return res
		}
		noClientIP = !req.ClientIP.IsValid() // a deny rule goes on, undecided
	}
	if r.idCond != "" {
		if res, ok := r.evalIdentity(in.id); !ok {
			return res
		}
	}

	var undecided result
	if noClientIP {
		undecided = result{cond: "client_ips", err: errNoClientIP}
	}
	for i := range r.claims {
		c := &r.claims[i]
		ok, err := c.match(in.id.Claims)
		switch {
		case err != nil && !r.deny:
			return result{cond: c.name, err: err}
		case err != nil:
			if undecided.err == nil {
				undecided = result{cond: c.name, err: err}
			}
		case !ok:
			return result{cond: c.name, why: c.why}
		}
	}
	if r.when != nil {
		var ok bool
		var err error
		if r.readsKube && (in.id == nil || in.id.Kube == nil) {
			err = errNoKube
		} else {
			ok, err = in.evalWhen(r.when)
		}
		switch {
		case err != nil && !r.deny:
			return result{cond: "when", err: err}
		case err != nil:
			if undecided.err == nil {
				undecided = result{cond: "when", err: err}
			}
		case !ok:
			return result{cond: "when", why: "expression is false"}
		}
	}
	undecided.matched = true
	return undecided
}

// evalClientIP checks client_ips; ok is false with the failing result when
// the address is not listed, or is unknown in an allow rule.
func (r *rule) evalClientIP(ip netip.Addr) (result, bool) {
	switch {
	case !ip.IsValid() && !r.deny:
		return result{cond: "client_ips", err: errNoClientIP}, false
	case !ip.IsValid():
		return result{}, true
	case !inAnyPrefix(r.clients, ip.Unmap().WithZone("")):
		return result{cond: "client_ips", why: "client address not in a listed range"}, false
	}
	return result{}, true
}

// evalIdentity checks the identity conditions except claims; ok is false
// with the failing result when one does not hold.
func (r *rule) evalIdentity(id *identity.Identity) (result, bool) {
	if id == nil {
		return result{cond: r.idCond, why: "anonymous request"}, false
	}
	if r.emails != nil && !containsFold(r.emails, id.Email) {
		return result{cond: "emails", why: "email not listed"}, false
	}
	if r.domains != nil {
		d, ok := emailDomain(id.Email)
		if !ok {
			return result{cond: "domains", why: "email is not a well-formed address"}, false
		}
		if !containsFold(r.domains, d) {
			return result{cond: "domains", why: "email domain not listed"}, false
		}
	}
	if r.groups != nil && !intersects(r.groups, id.Groups) {
		return result{cond: "groups", why: "no listed group"}, false
	}
	if r.users != nil && !contains(r.users, id.Username) {
		return result{cond: "users", why: "username not listed"}, false
	}
	if r.subs != nil && !contains(r.subs, id.Subject) {
		return result{cond: "subjects", why: "subject not listed"}, false
	}
	if r.tokens != nil && (id.Method != identity.MethodAPIToken || !contains(r.tokens, id.TokenName)) {
		return result{cond: "tokens", why: "not a listed API token"}, false
	}
	if r.issuers != nil && !contains(r.issuers, id.Issuer) {
		return result{cond: "issuers", why: "issuer not listed"}, false
	}
	if r.sas != nil && !serviceAccountListed(r.sas, id.Kube) {
		return result{cond: "service_accounts", why: "not a listed Kubernetes service account"}, false
	}
	return result{}, true
}

// claimMatch is a compiled ClaimMatch.
type claimMatch struct {
	name     string // "claims[0]"
	claim    string
	contains bool
	want     any    // string, bool or float64
	why      string // why the match failed when decided
	missing  error  // the claim is absent
	mistyped error  // the claim's type does not fit the match
}

// match reports whether the claim holds, or an error when it cannot be
// decided.
func (c *claimMatch) match(claims map[string]any) (bool, error) {
	v, ok := claims[c.claim]
	if !ok || v == nil {
		return false, c.missing
	}
	if c.contains {
		switch list := v.(type) {
		case []any:
			for _, e := range list {
				if eq, _ := scalarEqual(c.want, e); eq {
					return true, nil
				}
			}
			return false, nil
		case []string:
			s, isString := c.want.(string)
			return isString && contains(list, s), nil
		default:
			return false, c.mistyped
		}
	}
	eq, sameKind := scalarEqual(c.want, v)
	if !sameKind {
		return false, c.mistyped
	}
	return eq, nil
}

// scalarEqual compares a configured value (string, bool or float64) with a
// claim value as decoded from JSON or built by an authenticator.
func scalarEqual(want, got any) (equal, sameKind bool) {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		return ok && g == w, ok
	case bool:
		g, ok := got.(bool)
		return ok && g == w, ok
	case float64:
		g, ok := toFloat(got)
		return ok && g == w, ok
	}
	return false, false
}

// toFloat converts the numeric types claims arrive in (JSON numbers decode
// to float64 or json.Number, YAML and hand-built claims to ints).
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// compileRule checks one Rule and builds its compiled form, reporting every
// bad field.
func compileRule(env *Env, route, list string, index int, src Rule) (rule, []error) {
	r := rule{
		name: fmt.Sprintf("%s[%d]", list, index),
		deny: list == "deny",
	}
	r.reason = "matched " + r.name
	r.failClosed = r.name + " could not be evaluated; failing closed"
	var errs []error
	fail := func(field string, err error) {
		errs = append(errs, &RuleError{Route: route, List: list, Index: index, Field: field, Err: err})
	}
	strs := func(field string, vals []string, check func(string) (string, error)) []string {
		if vals == nil {
			return nil
		}
		if len(vals) == 0 {
			fail(field, errors.New("empty list matches nothing; remove the field or list values"))
			return nil
		}
		out := make([]string, len(vals))
		for i, v := range vals {
			if v == "" {
				fail(fmt.Sprintf("%s[%d]", field, i), errors.New("empty value"))
				continue
			}
			if check == nil {
				out[i] = v
				continue
			}
			c, err := check(v)
			if err != nil {
				fail(fmt.Sprintf("%s[%d]", field, i), err)
			}
			out[i] = c
		}
		return out
	}

	r.methods = strs("methods", src.Methods, checkMethod)
	r.paths = strs("paths", src.Paths, checkPath)
	if src.ClientIPs != nil {
		r.clients = make([]netip.Prefix, 0, len(src.ClientIPs))
		for i, s := range strs("client_ips", src.ClientIPs, nil) {
			if s == "" {
				continue // reported by strs
			}
			p, err := parseClientIP(s)
			if err != nil {
				fail(fmt.Sprintf("client_ips[%d]", i), err)
				continue
			}
			r.clients = append(r.clients, p)
		}
	}
	r.emails = strs("emails", src.Emails, checkEmail)
	r.domains = strs("domains", src.Domains, checkDomain)
	r.groups = strs("groups", src.Groups, nil)
	r.users = strs("users", src.Users, nil)
	r.subs = strs("subjects", src.Subjects, nil)
	r.tokens = strs("tokens", src.Tokens, nil)
	r.issuers = strs("issuers", src.Issuers, nil)
	r.sas = strs("service_accounts", src.ServiceAccounts, checkServiceAccount)
	switch {
	case src.Emails != nil:
		r.idCond = "emails"
	case src.Domains != nil:
		r.idCond = "domains"
	case src.Groups != nil:
		r.idCond = "groups"
	case src.Users != nil:
		r.idCond = "users"
	case src.Subjects != nil:
		r.idCond = "subjects"
	case src.Tokens != nil:
		r.idCond = "tokens"
	case src.Issuers != nil:
		r.idCond = "issuers"
	case src.ServiceAccounts != nil:
		r.idCond = "service_accounts"
	case src.Claims != nil:
		r.idCond = "claims"
	}

	if src.Claims != nil && len(src.Claims) == 0 {
		fail("claims", errors.New("empty list matches nothing; remove the field or list claims"))
	}
	for i, cm := range src.Claims {
		c, err := compileClaim(i, cm)
		if err != nil {
			fail(c.name, err)
			continue
		}
		r.claims = append(r.claims, c)
	}

	if src.When != "" {
		prg, readsKube, err := env.compile(src.When)
		if err != nil {
			fail("when", err)
		}
		r.when, r.readsKube = prg, readsKube
	}

	if r.idCond == "" && src.Methods == nil && src.Paths == nil && src.ClientIPs == nil && src.When == "" {
		fail("", errors.New("rule has no conditions; an empty rule would match every request (use public: true on the route to allow everyone)"))
	}
	return r, errs
}

func compileClaim(i int, cm ClaimMatch) (claimMatch, error) {
	c := claimMatch{name: fmt.Sprintf("claims[%d]", i), claim: cm.Claim}
	if cm.Claim == "" {
		return c, errors.New("claim name is empty")
	}
	if (cm.Equals == nil) == (cm.Contains == nil) {
		return c, errors.New("set exactly one of equals and contains")
	}
	val, op := cm.Equals, "equal"
	if cm.Contains != nil {
		val, op, c.contains = cm.Contains, "contain", true
	}
	var kind string
	switch v := val.(type) {
	case string:
		c.want, kind = v, "string"
	case bool:
		c.want, kind = v, "boolean"
	default:
		f, ok := toFloat(v)
		if !ok {
			return c, fmt.Errorf("%s must be a string, number or boolean, not %T", op+"s", v)
		}
		c.want, kind = f, "number"
	}
	c.why = fmt.Sprintf("claim %q does not %s %v", cm.Claim, op, val)
	c.missing = fmt.Errorf("claim %q is missing", cm.Claim)
	if c.contains {
		c.mistyped = fmt.Errorf("claim %q is not a list", cm.Claim)
	} else {
		c.mistyped = fmt.Errorf("claim %q is not a %s", cm.Claim, kind)
	}
	return c, nil
}

// checkMethod compiles a method to the canonical form the request method
// is compared in (the engine canonicalizes it the same way).
func checkMethod(m string) (string, error) {
	c, _, ok := normalize.Method(m)
	if !ok {
		return "", fmt.Errorf("method %q is not an HTTP method (a token such as GET or PROPFIND)", m)
	}
	return c, nil
}

// checkPath accepts only canonical paths, the form the request path is
// matched in, so a rule cannot silently never match.
func checkPath(p string) (string, error) {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("path %q must start with /", p)
	case strings.Contains(p, "*"):
		return "", fmt.Errorf("path %q: paths are segment prefixes, not globs; write %q", p, strings.TrimRight(strings.TrimSuffix(p, "*"), "/"))
	case strings.ContainsAny(p, "?#%\\\x00"):
		return "", fmt.Errorf("path %q must be a canonical (decoded) path without query, fragment, %% or \\", p)
	}
	if p == "/" {
		return p, nil
	}
	p = strings.TrimSuffix(p, "/")
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("path %q must be canonical: no empty, . or .. segments", p)
		}
	}
	return p, nil
}

var errNoClientIP = errors.New("client address unknown")

// parseClientIP reads one client_ips entry: a CIDR or a single address.
// Host bits after the prefix length are refused rather than masked
// ("10.0.0.1/8" may mean the one host), as are zones and IPv4-mapped IPv6
// forms, which a client address is never compared in.
func parseClientIP(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR (e.g. 192.0.2.1, 10.0.0.0/8, 2001:db8::/32)", s)
		case a.Zone() != "":
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR (e.g. 192.0.2.1, 10.0.0.0/8, 2001:db8::/32)", s)
	case p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 ranges in IPv4 form", s)
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Errorf("%q has bits set after the prefix length; write %s (or the single address without /%d)", s, p.Masked(), p.Bits())
	}
	return p, nil
}

func inAnyPrefix(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func checkEmail(e string) (string, error) {
	if _, ok := emailDomain(e); !ok {
		return "", fmt.Errorf("email %q is not a well-formed address", e)
	}
	return lowerASCII(e), nil
}

func checkDomain(d string) (string, error) {
	switch {
	case strings.Contains(d, "@"):
		return "", fmt.Errorf("domain %q: write the domain without @", d)
	case strings.ContainsAny(d, "* "):
		return "", fmt.Errorf("domain %q: domains match exactly; wildcards are not supported", d)
	}
	return lowerASCII(d), nil
}

// emailDomain returns the part after the single '@' of an address with a
// non-empty local part and domain.
func emailDomain(email string) (string, bool) {
	local, domain, found := strings.Cut(email, "@")
	if !found || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", false
	}
	return domain, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func intersects(want, have []string) bool {
	for _, h := range have {
		if contains(want, h) {
			return true
		}
	}
	return false
}

// containsFold reports whether s equals an element of lowerList ignoring
// ASCII case. ASCII only: Unicode folding would let "K" (Kelvin sign) match
// "k" in a domain.
func containsFold(lowerList []string, s string) bool {
	for _, v := range lowerList {
		if equalFoldASCII(v, s) {
			return true
		}
	}
	return false
}

func equalFoldASCII(lower, s string) bool {
	if len(lower) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// underAny reports whether path lies under one of the prefixes on a segment
// boundary.
func underAny(prefixes []string, path string) bool {
	for _, p := range prefixes {
		if p == "/" || strings.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/') {
			return true
		}
	}
	return false
}

// checkServiceAccount accepts "namespace/name" and "namespace/*".
func checkServiceAccount(v string) (string, error) {
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" || strings.ContainsAny(ns, "/*:") || strings.ContainsAny(name, "/:") || (strings.Contains(name, "*") && name != "*") {
		return "", fmt.Errorf("%q is not namespace/name or namespace/*", v)
	}
	return v, nil
}

// serviceAccountListed reports whether k is one of the service accounts.
func serviceAccountListed(sas []string, k *identity.Kube) bool {
	if k == nil {
		return false
	}
	for _, sa := range sas {
		ns, name, _ := strings.Cut(sa, "/")
		if ns == k.Namespace && (name == "*" || name == k.ServiceAccount) {
			return true
		}
	}
	return false
}
