// Package kubeuser maps sekisho identities to Kubernetes users: the
// username, UID, groups and extra attributes a TokenReview answers, which
// RBAC then authorizes. It is what aws-iam-authenticator's mapRoles and
// mapUsers, and kube-apiserver's own claim mappings, do for their
// identities, written once for every way sekisho authenticates (JWT
// issuers, API tokens).
//
// Rules are tried in order and the first whose match holds maps the
// identity; an identity no rule maps gets the default mapping when one is
// configured and is unauthenticated otherwise. No mapping may produce a
// username or group in Kubernetes' reserved "system:" namespace (above all
// system:masters, which bypasses RBAC) unless its rule says allow_system.
package kubeuser

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/identity"
)

// Rule maps the identities its Match selects to one shape of Kubernetes
// user.
type Rule struct {
	// Name identifies the rule in logs and in the user's extra attributes
	// (sekisho.io/rule); default "rules[i]".
	Name string `yaml:"name"`
	// Match selects identities with the fields of a policy rule (emails,
	// domains, groups, users, subjects, tokens, issuers, claims, when);
	// request fields (methods, paths, client_ips) have no meaning here. An
	// absent match selects every identity.
	Match *authz.Rule `yaml:"match"`
	// Username is a template of the Kubernetes username; default
	// "{{username}}". See Template for the placeholders.
	Username string `yaml:"username"`
	// Groups are templates of the Kubernetes groups. A template with
	// {{groups}} gives one group per group of the identity. When absent the
	// identity's groups are used as they are; an empty list gives none.
	Groups *[]string `yaml:"groups"`
	// AllowSystem lets the rule produce names in the reserved "system:"
	// namespace. `sekisho check` warns about every rule that sets it.
	AllowSystem bool `yaml:"allow_system"`
}

// Default maps identities that no rule matches, from their own username
// and groups. Prefixes keep them apart from names RBAC already uses (the
// "oidc:" and "gid:" of the EKS and Cognito setups).
type Default struct {
	UsernamePrefix string `yaml:"username_prefix"`
	GroupsPrefix   string `yaml:"groups_prefix"`
}

// Config is the mapping part of the kube.webhook section.
type Config struct {
	Rules   []Rule   `yaml:"rules"`
	Default *Default `yaml:"default"`
}

// User is a Kubernetes user as a TokenReview answers it.
type User struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
	// Rule names the rule that mapped the identity, or "default".
	Rule string
}

// Extra attribute keys. Kubernetes asks for keys in a domain the writer
// owns; audit logs and impersonation checks see them.
const (
	ExtraIssuer    = "sekisho.io/issuer"
	ExtraMethod    = "sekisho.io/method"
	ExtraEmail     = "sekisho.io/email"
	ExtraTokenName = "sekisho.io/token-name"
	ExtraRule      = "sekisho.io/rule"
)

// ErrUnmapped means no rule maps the identity and there is no default: it
// is not a Kubernetes user.
var ErrUnmapped = errors.New("no mapping rule matches this identity")

// systemPrefix is Kubernetes' reserved namespace for usernames and groups
// (system:masters, system:nodes, system:serviceaccount:…).
const systemPrefix = "system:"

// Problem is one bad or doubtful setting; Key is relative to the section
// ("rules[0].username").
type Problem struct {
	Key string
	Msg string
}

// Mapper is a compiled Config; immutable, one per snapshot.
type Mapper struct {
	rules []rule
	def   *Default
}

type rule struct {
	name        string
	match       *authz.Policy // nil: every identity
	username    Template
	groups      []Template
	keepGroups  bool // groups absent: the identity's own
	allowSystem bool
}

// Compile checks cfg and builds its mapper. Problems carry keys relative
// to the section ("rules[0].username"); warnings are rules that are valid
// but deserve a second look (allow_system).
func Compile(env *authz.Env, cfg Config) (m *Mapper, problems, warnings []Problem) {
	add := func(list *[]Problem, key, format string, args ...any) {
		*list = append(*list, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(cfg.Rules) == 0 && cfg.Default == nil {
		add(&problems, "", "add rules or a default: without either, no identity is a Kubernetes user")
	}
	m = &Mapper{def: cfg.Default}
	names := map[string]int{}
	for i, src := range cfg.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		r := rule{name: src.Name, allowSystem: src.AllowSystem}
		if r.name == "" {
			r.name = at
		} else if j, dup := names[r.name]; dup {
			add(&problems, at+".name", "rule name %q is already used by rules[%d]", r.name, j)
		}
		names[r.name] = i
		if src.Match != nil {
			if src.Match.Methods != nil || src.Match.Paths != nil || src.Match.ClientIPs != nil {
				add(&problems, at+".match", "methods, paths and client_ips describe HTTP requests; a token review has none (match on the identity)")
			}
			p, err := authz.Compile(env, at, []authz.Rule{*src.Match}, nil)
			for _, e := range unjoin(err) {
				var re *authz.RuleError
				if errors.As(e, &re) && re.Field != "" {
					add(&problems, at+".match."+re.Field, "%v", re.Err)
				} else {
					add(&problems, at+".match", "%v", e)
				}
			}
			r.match = p
		}
		username := src.Username
		if username == "" {
			username = "{{username}}"
		}
		t, err := ParseTemplate(username, false)
		if err != nil {
			add(&problems, at+".username", "%v", err)
		}
		r.username = t
		if src.Groups == nil {
			r.keepGroups = true
		} else {
			for j, g := range *src.Groups {
				t, err := ParseTemplate(g, true)
				if err != nil {
					add(&problems, fmt.Sprintf("%s.groups[%d]", at, j), "%v", err)
				}
				r.groups = append(r.groups, t)
			}
		}
		if src.AllowSystem {
			add(&warnings, at+".allow_system", "this rule may map identities to reserved system: names; a system:masters group bypasses every RBAC rule")
		} else {
			if r.username.fixedSystem() {
				add(&problems, at+".username", "%q is in the reserved system: namespace; set allow_system: true on the rule if that is really meant", src.Username)
			}
			for j, g := range r.groups {
				if g.fixedSystem() {
					add(&problems, fmt.Sprintf("%s.groups[%d]", at, j), "%q is in the reserved system: namespace; set allow_system: true on the rule if that is really meant", g.src)
				}
			}
		}
		m.rules = append(m.rules, r)
	}
	if d := cfg.Default; d != nil && isSystem(d.UsernamePrefix) {
		add(&problems, "default.username_prefix", "%q is in the reserved system: namespace", d.UsernamePrefix)
	}
	if d := cfg.Default; d != nil && isSystem(d.GroupsPrefix) {
		add(&problems, "default.groups_prefix", "%q is in the reserved system: namespace", d.GroupsPrefix)
	}
	if len(problems) > 0 {
		return nil, problems, warnings
	}
	return m, nil, warnings
}

// Map returns the Kubernetes user of id. Errors are short, name the rule
// and never carry identity values, so they are safe to log and to answer.
func (m *Mapper) Map(id *identity.Identity) (User, error) {
	for i := range m.rules {
		r := &m.rules[i]
		if r.match != nil && !r.match.Decide(id, nil).Allow {
			continue
		}
		return r.apply(id)
	}
	if m.def == nil {
		return User{}, ErrUnmapped
	}
	u := User{Username: m.def.UsernamePrefix + id.Username, Rule: "default"}
	u.Groups = make([]string, 0, len(id.Groups))
	for _, g := range id.Groups {
		u.Groups = append(u.Groups, m.def.GroupsPrefix+g)
	}
	return finish(u, id, false)
}

func (r *rule) apply(id *identity.Identity) (User, error) {
	u := User{Rule: r.name}
	name, err := r.username.expand(id)
	if err != nil {
		return User{}, fmt.Errorf("rule %s: username: %w", r.name, err)
	}
	if len(name) != 1 || name[0] == "" {
		return User{}, fmt.Errorf("rule %s: the username is empty", r.name)
	}
	u.Username = name[0]
	if r.keepGroups {
		u.Groups = append([]string(nil), id.Groups...)
	} else {
		for _, t := range r.groups {
			gs, err := t.expand(id)
			if err != nil {
				return User{}, fmt.Errorf("rule %s: groups: %w", r.name, err)
			}
			u.Groups = append(u.Groups, gs...)
		}
	}
	return finish(u, id, r.allowSystem)
}

// finish refuses reserved names and control characters, drops empty and
// repeated groups, and adds the UID and extra attributes.
func finish(u User, id *identity.Identity, allowSystem bool) (User, error) {
	if u.Username == "" {
		return User{}, fmt.Errorf("%s: the username is empty", u.Rule)
	}
	if !allowSystem && isSystem(u.Username) {
		return User{}, fmt.Errorf("%s: the username would be in the reserved system: namespace", u.Rule)
	}
	groups := u.Groups[:0]
	seen := make(map[string]struct{}, len(u.Groups))
	for _, g := range u.Groups {
		if g == "" {
			continue
		}
		if _, dup := seen[g]; dup {
			continue
		}
		if !allowSystem && isSystem(g) {
			return User{}, fmt.Errorf("%s: a group would be in the reserved system: namespace", u.Rule)
		}
		seen[g] = struct{}{}
		groups = append(groups, g)
	}
	u.Groups = groups
	if identity.HasControl(u.Username) || slices.ContainsFunc(u.Groups, identity.HasControl) {
		return User{}, fmt.Errorf("%s: the username or a group contains a control character", u.Rule)
	}
	u.UID = uid(id)
	u.Extra = map[string][]string{ExtraMethod: {string(id.Method)}, ExtraRule: {u.Rule}}
	if id.Issuer != "" {
		u.Extra[ExtraIssuer] = []string{id.Issuer}
	}
	if id.Email != "" {
		u.Extra[ExtraEmail] = []string{id.Email}
	}
	if id.TokenName != "" {
		u.Extra[ExtraTokenName] = []string{id.TokenName}
	}
	return u, nil
}

// uid is a stable identifier of the principal: issuer and subject for
// tokens of an issuer (two issuers may reuse a subject), the token name for
// an API token.
func uid(id *identity.Identity) string {
	switch {
	case id.Method == identity.MethodAPIToken:
		return "sekisho:api-token:" + id.TokenName
	case id.Issuer != "" && id.Subject != "":
		return id.Issuer + "#" + id.Subject
	}
	return id.Subject
}

// isSystem reports whether name is in the reserved namespace. It compares
// case-insensitively: Kubernetes does not, but a name that differs only in
// case from system:masters is never wanted and may fool a reader.
func isSystem(name string) bool {
	return len(name) >= len(systemPrefix) && strings.EqualFold(name[:len(systemPrefix)], systemPrefix)
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
