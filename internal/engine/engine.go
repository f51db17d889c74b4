// Package engine is the middle of the pipeline that every mode shares:
// normalize → route → authenticate → authorize. The gateway calls it before
// forwarding, the decision service for requests another proxy describes, and
// `sekisho explain` to show its work, so all three decide identically.
package engine

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/tracing"
)

// Options change how a request is evaluated.
type Options struct {
	// ClientIP is the original client's address (for policy).
	ClientIP netip.Addr
	// Identity, when set, is used instead of authenticating the request
	// (`sekisho explain --identity`, `sekisho policy test`).
	Identity *identity.Identity
	// Explain records every rule evaluated in Result.Steps.
	Explain bool
	// HeadersReachUpstream says the caller cannot remove request headers
	// before the upstream sees them (nginx auth_request, forward-auth): a
	// method-override header on a route that does not allow overrides is
	// then refused instead of stripped, since the upstream would apply it.
	HeadersReachUpstream bool
	// Tracer, when set, records the route, authenticate and authorize
	// phases as child spans of the span in ctx. Nil (tracing off) costs
	// nothing.
	Tracer *tracing.Tracer
}

// Outcome classifies a result.
type Outcome int

// Outcomes, in pipeline order.
const (
	Allowed         Outcome = iota
	BadRequest              // 400: path or host not acceptable
	NotFound                // 404: no route
	Unauthenticated         // 401: no credentials, or credentials the route's policy needs and does not have
	InvalidToken            // 401: credentials presented but rejected
	Forbidden               // 403: authenticated, not allowed
	Unavailable             // 503: the session store cannot answer; fail closed
)

// Status is the HTTP status of an outcome (200 for Allowed).
func (o Outcome) Status() int {
	switch o {
	case BadRequest:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case Unauthenticated, InvalidToken:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// Result is what the pipeline decided about one request.
type Result struct {
	Outcome Outcome
	// Message is safe to show the client.
	Message string
	// Reason says why, for logs and explain only: which rule matched, or why
	// a credential was rejected. Never shown to the client.
	Reason string

	Path      normalize.Path
	Host      string // normalized, for matching
	Route     *snapshot.Route
	RouteName string
	Identity  *identity.Identity
	// Source is where the verified credential was found.
	Source   authn.Source
	Decision authz.Decision
	Steps    []authz.Step

	// Method is the canonical method the request was decided as: the
	// request's own, or the method-override value on a route that allows
	// overrides.
	Method string
	// OverrideHeader names the method-override header the decision applied
	// ("" when none, or when the override was a `_method` query parameter,
	// which is forwarded as it came): it is forwarded, with Method as its
	// value, while every other override header is stripped.
	OverrideHeader string

	// Cookies are the session cookie updates for the browser (recorded
	// activity, a refreshed session, an ended one cleared), on any outcome:
	// the gateway sets them on its response, the decision service hands
	// them to the asking proxy.
	Cookies []*http.Cookie
}

// Evaluate runs the shared pipeline on r, which describes the original
// request: Method, Host, RequestURI (the request-target as sent), Header.
// It sets r.Method to the canonical method (normalize.Method), so that what
// is forwarded is what was decided.
func Evaluate(ctx context.Context, snap *snapshot.Snapshot, r *http.Request, o Options) Result {
	if o.Tracer != nil {
		p := phases{t: o.Tracer}
		res := evaluate(ctx, snap, r, o, &p)
		p.end(&res)
		return res
	}
	return evaluate(ctx, snap, r, o, nil)
}

// evaluate is Evaluate; p, nil without tracing, records its phases.
func evaluate(ctx context.Context, snap *snapshot.Snapshot, r *http.Request, o Options, p *phases) Result {
	var res Result

	// normalize (traced as part of route)
	ctx = p.begin(ctx, phaseRoute, &res)
	method, ext, ok := normalize.Method(r.Method)
	if !ok {
		res.Outcome, res.Message = BadRequest, "The request method is not a valid HTTP method."
		res.Reason = res.Message
		return res
	}
	r.Method, res.Method = method, method
	path, err := normalize.Request(r)
	if err != nil {
		res.Outcome = BadRequest
		res.Message = "The request path is not acceptable: " + pathReason(err)
		res.Reason = res.Message
		return res
	}
	res.Path = path
	host, ok := normalize.Host(r.Host)
	if !ok && r.Host != "" {
		res.Outcome, res.Message = BadRequest, "The Host header is not acceptable."
		res.Reason = res.Message
		return res
	}
	res.Host = host

	// route
	rt, name, ok := snap.Routes.Match(host, path.Path, method, r.Header)
	if !ok {
		res.Outcome, res.Message = NotFound, "No route serves this address."
		res.Reason = "no route matched"
		return res
	}
	res.Route, res.RouteName = rt, name
	if rt.AllowMethodOverride || o.HeadersReachUpstream || (method == http.MethodPost && rawQuery(r) != "") {
		if ext, ok = methodOverride(snap, r, &res, ext, o.HeadersReachUpstream); !ok {
			return res
		}
		rt, name = res.Route, res.RouteName
	}
	if ext && !rt.AllowExtensionMethods {
		res.Outcome, res.Message = BadRequest, "This route accepts only the standard HTTP methods (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT)."
		res.Reason = "extension method " + res.Method + " on a route without allow_extension_methods"
		return res
	}
	if path.EncodedSlash && !rt.AllowEncodedSlash {
		res.Outcome, res.Message = BadRequest, "Encoded slashes are not allowed on this route."
		res.Reason = res.Message
		return res
	}
	if path.DoubleEncoded && !rt.AllowEncodedSlash {
		res.Outcome, res.Message = BadRequest, "Double-encoded dots, slashes or percent signs are not allowed on this route."
		res.Reason = res.Message
		return res
	}
	// Servlet containers read "/admin;x/secret" as "/admin/secret" while the
	// route table sees a segment "admin;x": refuse path parameters unless the
	// route's upstream is known to want them.
	if !rt.AllowPathParams && strings.IndexByte(path.Path, ';') >= 0 {
		res.Outcome, res.Message = BadRequest, "Path parameters (;) are not allowed on this route."
		res.Reason = res.Message
		return res
	}
	// Only upgrades the route allows (WebSocket by default; never h2c,
	// whose tunnel would carry requests sekisho never sees).
	if msg := rt.RefuseUpgrade(r.Header); msg != "" {
		res.Outcome, res.Message, res.Reason = BadRequest, msg, msg
		return res
	}
	if rt.Public {
		res.Reason = "public route"
		return res
	}

	// authenticate
	id := o.Identity
	if id == nil {
		ctx = p.begin(ctx, phaseAuthenticate, &res)
		id, res.Source, res.Cookies, err = snap.Authn.Authenticate(ctx, r)
		switch {
		case errors.Is(err, authn.ErrUnavailable):
			res.Outcome, res.Message = Unavailable, "Sessions cannot be checked right now. Please try again shortly."
			if res.Source != authn.SourceNone {
				res.Message = "The credentials presented cannot be checked right now. Please try again shortly."
			}
			res.Reason = err.Error()
			return res
		case err != nil:
			res.Outcome, res.Message = InvalidToken, "The credentials presented are not valid."
			res.Reason = err.Error()
			return res
		}
	}
	res.Identity = id

	// authorize
	p.begin(ctx, phaseAuthorize, &res)
	req := authz.Request{Method: res.Method, Host: host, Path: path.Path, Query: rawQuery(r), Headers: r.Header, ClientIP: o.ClientIP, Route: name, Hidden: snap.Hidden}
	if o.Explain {
		res.Decision, res.Steps = rt.Policy.Explain(id, &req)
	} else {
		res.Decision = rt.Policy.Decide(id, &req)
	}
	res.Reason = res.Decision.Reason
	if !res.Decision.Allow {
		if id == nil {
			res.Outcome, res.Message = Unauthenticated, "Authentication is required."
		} else {
			res.Outcome, res.Message = Forbidden, "You are not allowed to access this route."
		}
	}
	return res
}

// methodOverride handles method overrides once the request's route is
// known: the override headers, and a `_method` query parameter on a POST
// (which the gateway forwards untouched). On a route that allows overrides,
// a POST with exactly one well-formed override is decided as the overriding
// method: routing is redone with it, and the route it lands on must allow
// overrides too, since its upstream is the one that applies it. On other
// routes override headers are stripped before forwarding, or refused when
// the caller cannot strip them (keeps, Options.HeadersReachUpstream), and
// a `_method` parameter on a POST is refused. It returns whether the
// decided method is an extension method; ok is false, with res filled in,
// when the request is refused.
func methodOverride(snap *snapshot.Snapshot, r *http.Request, res *Result, ext, keeps bool) (isExt, ok bool) {
	var header, value string
	var headers, params int
	if res.Route.AllowMethodOverride || keeps {
		header, value, headers = normalize.MethodOverride(r.Header)
	}
	if res.Method == http.MethodPost {
		var v string
		if v, params = normalize.QueryMethodOverride(rawQuery(r)); headers == 0 {
			value = v
		}
	}
	refuse := func(msg string) (bool, bool) {
		res.Outcome, res.Message, res.Reason = BadRequest, msg, msg
		return false, false
	}
	switch {
	case headers+params == 0:
		return ext, true
	case !res.Route.AllowMethodOverride && headers > 0:
		return refuse("Method-override headers (X-HTTP-Method-Override and its spellings) are not accepted on this route.")
	case !res.Route.AllowMethodOverride:
		return refuse("A _method query parameter (a method override) is not accepted on a POST to this route.")
	case headers+params > 1:
		return refuse("The request carries more than one method override.")
	case res.Method != http.MethodPost:
		return refuse("A method override is only accepted on a POST request.")
	}
	method, ext, ok := normalize.Method(value)
	if !ok {
		return refuse("The method override does not name an HTTP method.")
	}
	rt, name, found := snap.Routes.Match(res.Host, res.Path.Path, method, r.Header)
	res.Method, res.OverrideHeader = method, header
	if !found {
		res.Outcome, res.Message = NotFound, "No route serves this address."
		res.Reason = "no route matched the overriding method " + method
		return false, false
	}
	res.Route, res.RouteName = rt, name
	if !rt.AllowMethodOverride {
		return refuse("The route for the overriding method does not accept method overrides.")
	}
	return ext, true
}

// WantsLogin reports whether a denied request should be sent to sign in
// rather than answered 401: browser login is configured, the route is not
// for programs (api: true), and the request is a browser navigation (GET or
// HEAD asking for HTML).
func (res *Result) WantsLogin(snap *snapshot.Snapshot, r *http.Request) bool {
	if res.Outcome != Unauthenticated || snap.Login == nil || res.Route == nil || res.Route.NoLoginRedirect {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// Challenge is the WWW-Authenticate value for a denied result (RFC 6750).
func (res *Result) Challenge(realm string) string {
	switch res.Outcome {
	case Unauthenticated:
		return `Bearer realm="` + realm + `"`
	case InvalidToken:
		return `Bearer realm="` + realm + `", error="invalid_token"`
	case Forbidden:
		return `Bearer realm="` + realm + `", error="insufficient_scope"`
	}
	return ""
}

func rawQuery(r *http.Request) string {
	if r.URL == nil {
		return ""
	}
	return r.URL.RawQuery
}

func pathReason(err error) string {
	var e *normalize.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "malformed"
}
