package identity

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// ClaimsConfig names the token claims an identity is read from, because
// issuers disagree: Cognito puts groups in "cognito:groups", Google has no
// groups at all, and many deployments want the email as the username.
type ClaimsConfig struct {
	// Username is the claim holding the username; default "sub".
	Username string `yaml:"username"`
	// Groups is the claim holding the groups, a string or a list of strings;
	// default "groups". A missing claim means no groups.
	Groups string `yaml:"groups"`
	// Email is the claim holding the email address; default "email".
	Email string `yaml:"email"`
	// MFA optionally names a boolean claim meaning "this login used MFA".
	// When empty, MFA is true when "amr" contains "mfa", "otp" or "hwk".
	MFA string `yaml:"mfa"`
}

// PrefixConfig keeps names from different issuers apart, so that a group
// "admin" from one issuer cannot be mistaken for another's (the "gid:"
// prefix of the EKS/Cognito setup).
type PrefixConfig struct {
	Username string `yaml:"username"`
	Groups   string `yaml:"groups"`
}

// Rule is a CEL condition over `claims` that a token must satisfy to be
// accepted at all, in the style of Kubernetes AuthenticationConfiguration
// (for example `claims.email_verified == true`).
type Rule struct {
	Expr string `yaml:"expr"`
	// Message is the reason given when the rule fails; the expression is
	// used when it is empty.
	Message string `yaml:"message"`
}

// MappingConfig holds CEL expressions over `claims` for issuers whose
// username or groups are not a single claim (for example
// `claims.preferred_username + "@corp"`). A set expression overrides the
// claim name of ClaimsConfig. The groups expression may return a string or
// a list of strings.
type MappingConfig struct {
	Username string `yaml:"username"`
	Groups   string `yaml:"groups"`
}

// celCostLimit bounds one evaluation; it matches the per-call limit
// Kubernetes applies to the same kind of expressions, so rules copied from
// an AuthenticationConfiguration behave the same here.
const celCostLimit = 1_000_000

// mfaMethods are the RFC 8176 "amr" values that mean a second factor.
var mfaMethods = []string{"mfa", "otp", "hwk"}

// serviceAccountPrefix starts the subject of every Kubernetes service
// account token.
const serviceAccountPrefix = "system:serviceaccount:"

type compiledRule struct {
	prg    cel.Program
	reason string
}

// Mapper turns verified claims into an Identity. It is compiled once from
// configuration and is immutable, so one Mapper serves all requests.
type Mapper struct {
	claims       ClaimsConfig
	prefix       PrefixConfig
	rules        []compiledRule
	usernameExpr cel.Program // nil: read claims.Username
	groupsExpr   cel.Program // nil: read claims.Groups
}

// NewMapper compiles the rules and mapping expressions once, so that a bad
// expression is a configuration error and not a request-time surprise.
func NewMapper(c ClaimsConfig, p PrefixConfig, rules []Rule, m MappingConfig) (*Mapper, error) {
	if c.Username == "" {
		c.Username = "sub"
	}
	if c.Groups == "" {
		c.Groups = "groups"
	}
	if c.Email == "" {
		c.Email = "email"
	}
	env, err := cel.NewEnv(cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		return nil, fmt.Errorf("claim mapping: CEL environment: %w", err)
	}
	mp := &Mapper{claims: c, prefix: p}
	for i, r := range rules {
		prg, err := compile(env, r.Expr, cel.BoolType)
		if err != nil {
			return nil, fmt.Errorf("rules[%d] %q: %w", i, r.Expr, err)
		}
		reason := r.Message
		if reason == "" {
			reason = r.Expr
		}
		mp.rules = append(mp.rules, compiledRule{prg: prg, reason: reason})
	}
	if m.Username != "" {
		if mp.usernameExpr, err = compile(env, m.Username, cel.StringType); err != nil {
			return nil, fmt.Errorf("mappings.username %q: %w", m.Username, err)
		}
	}
	if m.Groups != "" {
		if mp.groupsExpr, err = compile(env, m.Groups, cel.StringType, cel.ListType(cel.StringType)); err != nil {
			return nil, fmt.Errorf("mappings.groups %q: %w", m.Groups, err)
		}
	}
	return mp, nil
}

// compile checks expr and that its static type is one of want (or dyn,
// which is then checked at evaluation).
func compile(env *cel.Env, expr string, want ...*cel.Type) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	out := ast.OutputType()
	ok := out.IsExactType(cel.DynType)
	for _, w := range want {
		ok = ok || out.IsAssignableType(w)
	}
	if !ok {
		return nil, fmt.Errorf("expression returns %s, want %s", out, typeNames(want))
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return prg, nil
}

func typeNames(ts []*cel.Type) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return strings.Join(names, " or ")
}

// Map builds the identity for verified claims. It fails closed: a rule that
// is false or cannot be evaluated, or an empty username, rejects the token.
// Error messages name claims and rules but never carry claim values, so they
// are safe to log. Map keeps claims in the Identity; the caller must not
// modify the map afterwards.
//
// Kind is KindService when the subject is a Kubernetes service account
// ("system:serviceaccount:…"), or when the token carries no email and its
// "client_id" or "azp" equals its subject (an OAuth client-credentials
// token: the client is acting for itself). Everything else is KindUser.
func (m *Mapper) Map(issuer string, method Method, claims map[string]any) (*Identity, error) {
	act := map[string]any{"claims": claims}
	for i, r := range m.rules {
		v, _, err := r.prg.Eval(act)
		if err != nil {
			return nil, fmt.Errorf("validation rule %d (%s) could not be evaluated", i, r.reason)
		}
		if v != types.True {
			return nil, fmt.Errorf("validation rule %d failed: %s", i, r.reason)
		}
	}

	username, err := m.username(act, claims)
	if err != nil {
		return nil, err
	}
	groups, err := m.groupList(act, claims)
	if err != nil {
		return nil, err
	}

	sub, _ := claims["sub"].(string)
	email, _ := claims[m.claims.Email].(string)
	// An email the issuer says it has not verified proves nothing: it is
	// left out of the identity (so emails/domains rules never match it),
	// and, as in Kubernetes, it cannot be the username. email_verified
	// speaks of the "email" claim whatever claim Email is read from.
	if v, present := claims["email_verified"]; present && !truthy(v) {
		if m.usernameExpr == nil && (m.claims.Username == m.claims.Email || m.claims.Username == "email") {
			return nil, errors.New("the username is the email, and the issuer has not verified it (email_verified is false)")
		}
		email = ""
	}
	// Username, email and groups travel upstream as header values, and all
	// four are written to logs: a control character (CR, LF, NUL, …) would
	// make the forward fail (502) or read differently once flattened, so
	// the identity is refused as a whole rather than altered.
	if field := controlField(sub, m.prefix.Username+username, email, groups); field != "" {
		return nil, fmt.Errorf("the %s contains a control character, which no header value may carry", field)
	}
	id := &Identity{
		Subject:       sub,
		Username:      m.prefix.Username + username,
		Email:         email,
		EmailVerified: truthy(claims["email_verified"]),
		Groups:        groups,
		Claims:        claims,
		Issuer:        issuer,
		Method:        method,
		MFA:           m.mfa(claims),
		Kind:          kind(sub, email, claims),
	}
	return id, nil
}

func (m *Mapper) username(act map[string]any, claims map[string]any) (string, error) {
	if m.usernameExpr == nil {
		u, _ := claims[m.claims.Username].(string)
		if u == "" {
			return "", fmt.Errorf("username claim %q is missing, empty or not a string", m.claims.Username)
		}
		return u, nil
	}
	v, _, err := m.usernameExpr.Eval(act)
	if err != nil {
		return "", errors.New("username mapping expression could not be evaluated")
	}
	u, ok := v.Value().(string)
	if !ok || u == "" {
		return "", errors.New("username mapping expression returned an empty or non-string value")
	}
	return u, nil
}

// groupList returns the prefixed groups, never nil, with empty names dropped.
func (m *Mapper) groupList(act map[string]any, claims map[string]any) ([]string, error) {
	var raw []string
	if m.groupsExpr == nil {
		v, present := claims[m.claims.Groups]
		if present && v != nil {
			var ok bool
			if raw, ok = stringList(v); !ok {
				return nil, fmt.Errorf("groups claim %q must be a string or a list of strings", m.claims.Groups)
			}
		}
	} else {
		v, _, err := m.groupsExpr.Eval(act)
		if err != nil {
			return nil, errors.New("groups mapping expression could not be evaluated")
		}
		var ok bool
		if raw, ok = celStringList(v); !ok {
			return nil, errors.New("groups mapping expression must return a string or a list of strings")
		}
	}
	groups := make([]string, 0, len(raw))
	for _, g := range raw {
		if g != "" {
			groups = append(groups, m.prefix.Groups+g)
		}
	}
	return groups, nil
}

func (m *Mapper) mfa(claims map[string]any) bool {
	if m.claims.MFA != "" {
		return truthy(claims[m.claims.MFA])
	}
	amr, _ := stringList(claims["amr"])
	for _, a := range amr {
		for _, want := range mfaMethods {
			if a == want {
				return true
			}
		}
	}
	return false
}

func kind(sub, email string, claims map[string]any) Kind {
	if strings.HasPrefix(sub, serviceAccountPrefix) {
		return KindService
	}
	if email == "" && sub != "" {
		if cid, _ := claims["client_id"].(string); cid == sub {
			return KindService
		}
		if azp, _ := claims["azp"].(string); azp == sub {
			return KindService
		}
	}
	return KindUser
}

// truthy accepts a JSON boolean or the string "true": some issuers (AWS
// Cognito among them) send booleans as strings.
func truthy(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

// stringList reads a JSON string or array of strings.
func stringList(v any) ([]string, bool) {
	switch s := v.(type) {
	case string:
		return []string{s}, true
	case []string:
		return s, true
	case []any:
		out := make([]string, len(s))
		for i, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, false
			}
			out[i] = str
		}
		return out, true
	}
	return nil, false
}

var stringSliceType = reflect.TypeOf([]string(nil))

func celStringList(v ref.Val) ([]string, bool) {
	if s, ok := v.Value().(string); ok {
		return []string{s}, true
	}
	if _, ok := v.(traits.Lister); !ok {
		return nil, false
	}
	native, err := v.ConvertToNative(stringSliceType)
	if err != nil {
		return nil, false
	}
	out, ok := native.([]string)
	return out, ok
}

// controlField names the first of subject, username, email and groups that
// holds a control character (below 0x20, or DEL), "" when none does. The
// name, never the value, goes into the error.
func controlField(sub, username, email string, groups []string) string {
	switch {
	case HasControl(sub):
		return "subject"
	case HasControl(username):
		return "username"
	case HasControl(email):
		return "email"
	}
	for _, g := range groups {
		if HasControl(g) {
			return "group list"
		}
	}
	return ""
}

// HasControl reports whether s holds a control character (below 0x20, or
// DEL). Names that travel as header values or into logs, or that other
// systems compare (Kubernetes usernames), must not: flattened or cut at
// one, they read as something else.
func HasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
