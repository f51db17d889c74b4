package authz

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/sekisho/sekisho/internal/identity"
)

const (
	// costLimit bounds the work one `when` expression may do per request;
	// an expression that exceeds it errors and so fails closed. Ordinary
	// conditions cost tens of units; comprehensions over large lists are
	// what this stops.
	costLimit = 10_000
	// maxExprLen bounds the size of a `when` expression, in code points.
	maxExprLen = 4096
)

// Env is the CEL environment every policy compiles against. Building it
// takes milliseconds, compiling against it microseconds, so it is built once
// and shared; it is safe for concurrent use.
//
// Expressions see two typed variables, so that a misspelt field is a compile
// error rather than a condition that fails at request time:
//
//	identity: subject, username, email (string), email_verified (bool),
//	          groups (list of string), claims (map of string to dyn),
//	          issuer, method ("session", "jwt", "api_token"),
//	          mfa (bool), kind ("user", "service"), token_name (string),
//	          authenticated (bool), kube (a Kubernetes service account's
//	          namespace, service_account, service_account_uid, pod,
//	          pod_uid, node, node_uid; absent for other identities)
//	request:  method, host, path (canonical), query (raw), client_ip,
//	          route (string), headers (map: lower-case name → first value)
//
// For an anonymous request identity.authenticated is false, every string
// is "", mfa and email_verified are false, and groups and claims are empty;
// `!identity.mfa` is therefore true for anonymous requests.
//
// Addresses are tested with the network functions Kubernetes' CEL also has
// (cel-go's network extension): `cidr('10.0.0.0/8').containsIP(request.client_ip)`,
// `ip(request.client_ip).isLoopback()`, `isIP(...)`, `isCIDR(...)`. A
// malformed literal (`cidr('10.0.0.0/33')`) is a compile error, literals are
// parsed once when the program is built, and a value that does not parse at
// run time (an empty client_ip) is an evaluation error, which fails closed.
//
// request.headers leaves out Authorization, Proxy-Authorization and Cookie:
// policy decides on the authenticated identity, never on raw credentials,
// and explain output then cannot echo them.
type Env struct {
	cel     *cel.Env
	adapter types.Adapter
}

// celIdentity is identity.Identity as CEL sees it.
type celIdentity struct {
	Subject       string         `cel:"subject"`
	Username      string         `cel:"username"`
	Email         string         `cel:"email"`
	EmailVerified bool           `cel:"email_verified"`
	Groups        []string       `cel:"groups"`
	Claims        map[string]any `cel:"claims"`
	Issuer        string         `cel:"issuer"`
	Method        string         `cel:"method"`
	MFA           bool           `cel:"mfa"`
	Kind          string         `cel:"kind"`
	TokenName     string         `cel:"token_name"`
	Authenticated bool           `cel:"authenticated"`
	Kube          *celKube       `cel:"kube"`
}

// celKube is identity.Kube as CEL sees it. Its fields are those of
// identity.Kube, so one converts to the other without a copy.
type celKube struct {
	Namespace         string `cel:"namespace"`
	ServiceAccount    string `cel:"service_account"`
	ServiceAccountUID string `cel:"service_account_uid"`
	Pod               string `cel:"pod"`
	PodUID            string `cel:"pod_uid"`
	Node              string `cel:"node"`
	NodeUID           string `cel:"node_uid"`
}

// celRequest is Request as CEL sees it.
type celRequest struct {
	Method   string            `cel:"method"`
	Host     string            `cel:"host"`
	Path     string            `cel:"path"`
	Query    string            `cel:"query"`
	Headers  map[string]string `cel:"headers"`
	ClientIP string            `cel:"client_ip"`
	Route    string            `cel:"route"`
}

// NewEnv builds the shared CEL environment.
func NewEnv() (*Env, error) {
	e, err := cel.NewEnv(
		cel.Types(
			cel.NativeTypeFor[celIdentity](cel.NativeTypeAlias("sekisho.Identity"), types.ParseStructTags(true)),
			cel.NativeTypeFor[celRequest](cel.NativeTypeAlias("sekisho.Request"), types.ParseStructTags(true)),
			cel.NativeTypeFor[celKube](cel.NativeTypeAlias("sekisho.Kube"), types.ParseStructTags(true)),
		),
		cel.Variable("identity", cel.ObjectType("sekisho.Identity")),
		cel.Variable("request", cel.ObjectType("sekisho.Request")),
		cel.ParserExpressionSizeLimit(maxExprLen),
		ext.Network(),
	)
	if err != nil {
		return nil, fmt.Errorf("building CEL environment: %w", err)
	}
	return &Env{cel: e, adapter: e.CELTypeAdapter()}, nil
}

// compile parses and type-checks a `when` expression once, at load time.
// readsKube reports whether it reads identity.kube (see errNoKube).
func (e *Env) compile(expr string) (prg cel.Program, readsKube bool, err error) {
	ast, iss := e.cel.Compile(expr)
	if iss.Err() != nil {
		return nil, false, iss.Err()
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, false, fmt.Errorf("expression is of type %s, not bool (compare explicitly, e.g. `... == true`)", t)
	}
	prg, err = e.cel.Program(ast, cel.CostLimit(costLimit), cel.CustomDecoratorV2(foldNetworkLiterals))
	if err != nil {
		return nil, false, fmt.Errorf("building CEL program: %w", err)
	}
	return prg, readsIdentityField(ast, "kube"), nil
}

// errNoKube is the evaluation error of an expression that reads
// identity.kube for an identity that has none. CEL would read an empty
// struct there, so `identity.kube.namespace != 'payments'` would hold for
// every person; as an error it fails closed instead (the allow rule does
// not match, a deny rule does).
var errNoKube = errors.New("identity.kube is read, and the identity is not a Kubernetes service account")

// readsIdentityField reports whether the checked expression selects field
// of the identity variable anywhere (has() included).
func readsIdentityField(a *cel.Ast, field string) bool {
	found := false
	celast.PreOrderVisit(a.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.SelectKind {
			return
		}
		sel := e.AsSelect()
		if sel.FieldName() == field && sel.Operand().Kind() == celast.IdentKind && sel.Operand().AsIdent() == "identity" {
			found = true
		}
	}))
	return found
}

// foldNetworkLiterals replaces ip('...') and cidr('...') of a string literal
// with the parsed value when the program is built, so a policy's fixed
// ranges are not re-parsed on every request. A literal that does not parse
// is left alone (the compile-time check has already refused it).
func foldNetworkLiterals(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || (call.OverloadID() != "string_to_cidr" && call.OverloadID() != "string_to_ip") {
		return i, nil
	}
	args := call.Args()
	if len(args) != 1 {
		return i, nil
	}
	if _, isConst := args[0].(interpreter.InterpretableConst); !isConst {
		return i, nil
	}
	frame, err := interpreter.NewExecutionFrame(interpreter.EmptyActivation())
	if err != nil {
		return i, nil
	}
	v := call.Exec(frame)
	frame.Close()
	if types.IsError(v) {
		return i, nil
	}
	return interpreter.NewConstValue(call.ID(), v), nil
}

// input is what one decision evaluates against. The CEL activation is built
// only when a rule with `when` is reached, and then once.
type input struct {
	env *Env
	id  *identity.Identity
	req *Request
	act *activation
}

func (in *input) evalWhen(prg cel.Program) (bool, error) {
	if in.act == nil {
		in.act = &activation{env: in.env, id: in.id, req: in.req}
	}
	out, _, err := prg.Eval(in.act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression returned %s, not bool", out.Type())
	}
	return bool(b), nil
}

// activation resolves `identity` and `request` on first use, so a policy
// whose expressions only read the identity never copies the headers. The
// CEL views live inside it to save allocations.
type activation struct {
	env      *Env
	id       *identity.Identity
	req      *Request
	identity ref.Val
	request  ref.Val
	idView   celIdentity
	reqView  celRequest
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "identity":
		if a.identity == nil {
			fillCELIdentity(&a.idView, a.id)
			a.identity = a.env.adapter.NativeToValue(&a.idView)
		}
		return a.identity, true
	case "request":
		if a.request == nil {
			fillCELRequest(&a.reqView, a.req)
			a.request = a.env.adapter.NativeToValue(&a.reqView)
		}
		return a.request, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// Shared empty values for anonymous requests; CEL never mutates them.
var (
	noGroups = []string{}
	noClaims = map[string]any{}
)

func fillCELIdentity(c *celIdentity, id *identity.Identity) {
	if id == nil {
		*c = celIdentity{Groups: noGroups, Claims: noClaims}
		return
	}
	*c = celIdentity{
		Subject:       id.Subject,
		Username:      id.Username,
		Email:         id.Email,
		EmailVerified: id.EmailVerified,
		Groups:        id.Groups,
		Claims:        id.Claims,
		Issuer:        id.Issuer,
		Method:        string(id.Method),
		MFA:           id.MFA,
		Kind:          string(id.Kind),
		TokenName:     id.TokenName,
		Authenticated: true,
		Kube:          (*celKube)(id.Kube),
	}
	if c.Groups == nil {
		c.Groups = noGroups
	}
	if c.Claims == nil {
		c.Claims = noClaims
	}
}

func fillCELRequest(c *celRequest, req *Request) {
	*c = celRequest{
		Method:  req.Method,
		Host:    req.Host,
		Path:    req.Path,
		Query:   req.Query,
		Route:   req.Route,
		Headers: make(map[string]string, len(req.Headers)),
	}
	if req.ClientIP.IsValid() {
		c.ClientIP = req.ClientIP.String()
	}
	for name, vals := range req.Headers {
		if len(vals) == 0 || isCredentialHeader(name) || (req.Hidden != nil && req.Hidden.Matches(name)) {
			continue
		}
		c.Headers[strings.ToLower(name)] = vals[0]
	}
}

func isCredentialHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Authorization", "Proxy-Authorization", "Cookie":
		return true
	}
	return false
}
