package decision

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/net/http/httpguts"

	"github.com/sekisho/sekisho/internal/assertion"
	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// HTTP endpoints of the decision listener.
const (
	envoyPrefix      = "/envoy"
	nginxPath        = "/nginx"
	ingressNginxPath = "/ingress-nginx"
	forwardAuthPath  = "/forward-auth"
	signInPath       = "/sign_in"
)

// dialect is how one kind of proxy describes a request and reads the answer.
type dialect struct {
	name string
	// describe fills d from the decision request r; the message explains
	// what the proxy failed to send.
	describe func(r *http.Request, d *described) (msg string, ok bool)
	// denyStatus adjusts a denial status to what the proxy understands.
	denyStatus func(int) int
	// headersToRemove is the response header that lists upstream request
	// headers for the proxy to drop ("" when the proxy has none).
	headersToRemove string
	// locationOn401 hands a browser's sign-in URL to a proxy that cannot
	// relay a redirect (nginx) as a Location header on the 401 itself.
	locationOn401 bool
	// pathHeader returns the canonical path for a proxy that can forward it
	// instead of the path the client sent (nginx).
	pathHeader bool
	// everyIdentityHeader sends each identity header on an allow, empty when
	// there is nothing to say, for proxies that copy a fixed list of names:
	// older Caddy copies a placeholder's text for a missing one, and the
	// empty value still replaces whatever the client sent.
	everyIdentityHeader bool
}

var (
	envoyHTTP = &dialect{
		name:            "envoy-http",
		describe:        describeEnvoy,
		denyStatus:      same,
		headersToRemove: "X-Envoy-Auth-Headers-To-Remove",
	}
	nginx = &dialect{
		name:          "nginx",
		describe:      describeNginx,
		denyStatus:    only401or403,
		locationOn401: true,
		pathHeader:    true,
	}
	// ingressNginx is nginx as the ingress-nginx controller configures it
	// (auth-url): it describes the request in X-Original-URL.
	ingressNginx = &dialect{
		name:          "ingress-nginx",
		describe:      describeIngressNginx,
		denyStatus:    only401or403,
		locationOn401: true,
	}
	forwardAuth = &dialect{
		name:                "forward-auth",
		describe:            describeForwardAuth,
		denyStatus:          same,
		everyIdentityHeader: true,
	}
)

func same(status int) int { return status }

// only401or403 keeps nginx deciding: auth_request turns any status but 2xx,
// 401 and 403 into a 500. "Cannot decide" (503) stays a 500 on purpose.
func only401or403(status int) int {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusServiceUnavailable:
		return status
	}
	return http.StatusForbidden
}

// PathHeader carries the canonical escaped path on an nginx allow, so that
// nginx can forward exactly the path the decision was made on.
const PathHeader = "X-Sekisho-Path"

// Handler serves the HTTP decision endpoints: /envoy/<original path>,
// /nginx, /ingress-nginx, /forward-auth and /sign_in. The /envoy prefix is
// matched on the raw request-target so the original path reaches the
// engine undecoded.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case isEnvoyTarget(r.RequestURI):
			s.serveDecision(w, r, envoyHTTP)
		case r.URL.Path == nginxPath:
			s.serveDecision(w, r, nginx)
		case r.URL.Path == ingressNginxPath:
			s.serveDecision(w, r, ingressNginx)
		case r.URL.Path == forwardAuthPath:
			s.serveDecision(w, r, forwardAuth)
		case r.URL.Path == signInPath:
			s.serveSignIn(w, r)
		default:
			httperr.Write(w, r, http.StatusNotFound, "No such decision endpoint: use /envoy/..., /nginx, /ingress-nginx, /forward-auth or /sign_in.")
		}
	})
}

func (s *Server) serveDecision(w http.ResponseWriter, r *http.Request, dl *dialect) {
	// The asking proxy, once trusted, vouches for its X-Request-Id.
	peer := peerAddr(r.RemoteAddr)
	trusted := s.trusted(peer, r.TLS)
	info := &reqinfo.Info{Start: time.Now(), ID: normalize.RequestID(r.Header, trusted)}
	ctx := reqinfo.With(r.Context(), info)
	var span *decisionSpan
	if s.tracer != nil {
		ctx, span = s.startSpan(ctx, dl.name, info.ID, propagation.HeaderCarrier(r.Header), trusted)
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		defer func() { span.end(sw.status) }()
	}
	r = r.WithContext(ctx)
	h := w.Header()
	h.Set("Cache-Control", "no-store")

	if !trusted {
		s.log.WarnContext(r.Context(), "decision request from an untrusted peer refused",
			"dialect", dl.name, "peer", addrString(peer), "request_id", info.ID)
		httperr.Write(w, r, dl.denyStatus(http.StatusForbidden), "This decision endpoint answers trusted proxies only.")
		return
	}
	snap := s.current()
	if snap == nil {
		httperr.Write(w, r, http.StatusServiceUnavailable, "sekisho is starting.")
		return
	}
	d := &described{keepsHeaders: dl.headersToRemove == ""}
	if msg, ok := dl.describe(r, d); !ok {
		s.log.InfoContext(r.Context(), "decision request does not describe a request",
			"dialect", dl.name, "peer", addrString(peer), "request_id", info.ID, "problem", msg)
		httperr.Write(w, r, dl.denyStatus(http.StatusBadRequest), msg)
		return
	}
	if name, bad := removesOwnHeader(snap, r.Header); bad {
		s.log.InfoContext(r.Context(), "decision request names an identity header in Connection",
			"dialect", dl.name, "peer", addrString(peer), "request_id", info.ID, "header", name)
		httperr.Write(w, r, dl.denyStatus(http.StatusBadRequest), connectionMessage(name))
		return
	}
	d.clientIP = s.clientIP(peer, r.Header.Values("X-Forwarded-For"))

	v := s.decide(r.Context(), snap, d)
	if span != nil {
		span.verdict(r.Context(), d, &v)
	}
	info.Route = v.res.RouteName
	s.logDecision(r.Context(), dl.name, info.ID, d, &v)
	if len(v.cookies) > 0 {
		h["Set-Cookie"] = v.cookies
	}
	switch v.status {
	case http.StatusOK:
		dl.allowHeaders(h, snap, &v)
		w.WriteHeader(http.StatusOK)
		return
	case http.StatusFound:
		h.Set("Location", v.location)
		if !dl.locationOn401 {
			w.WriteHeader(http.StatusFound)
			return
		}
		v.status = http.StatusUnauthorized
	}
	if v.challenge != "" {
		h.Set("WWW-Authenticate", v.challenge)
	}
	httperr.Write(w, r, dl.denyStatus(v.status), v.res.Message)
}

// allowHeaders writes what the proxy passes upstream on an allow.
func (dl *dialect) allowHeaders(h http.Header, snap *snapshot.Snapshot, v *verdict) {
	for k, vs := range v.set {
		h[k] = vs
	}
	if dl.headersToRemove != "" && len(v.remove) > 0 {
		h.Set(dl.headersToRemove, strings.Join(v.remove, ", "))
	}
	if dl.pathHeader {
		h.Set(PathHeader, v.res.Path.Escaped)
	}
	if dl.everyIdentityHeader {
		assertionHeader := snap.AssertionHeader
		if assertionHeader == "" {
			assertionHeader = assertion.DefaultHeader
		}
		for _, name := range [...]string{snap.Headers.User, snap.Headers.Email, snap.Headers.Groups, assertionHeader} {
			// Configured names keep the operator's case; v.set's are canonical.
			name = http.CanonicalHeaderKey(name)
			if _, ok := v.set[name]; !ok {
				h[name] = []string{""}
			}
		}
	}
}

// serveSignIn starts a browser's login and returns it to rd afterwards
// (ingress-nginx auth-signin). It is for browsers behind a trusted proxy
// (the listener accepts no one else); rd is checked like every redirect
// target, by scheme, host and port.
func (s *Server) serveSignIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httperr.Write(w, r, http.StatusMethodNotAllowed, "Use GET.")
		return
	}
	var login LoginStarter
	if snap := s.current(); snap != nil {
		login = s.login(snap)
	}
	if login == nil {
		httperr.Write(w, r, http.StatusNotFound, "Login is not configured.")
		return
	}
	rd := r.URL.Query().Get("rd")
	if rd == "" {
		httperr.Write(w, r, http.StatusBadRequest, "The rd parameter (where to return after signing in) is missing.")
		return
	}
	u, ok := login.LoginURL(rd, s.signInScheme(r)+"://"+r.Host)
	if !ok {
		httperr.Write(w, r, http.StatusBadRequest, "The address to return to after signing in is not allowed.")
		return
	}
	w.Header().Set("Location", u)
	w.WriteHeader(http.StatusFound)
}

// signInScheme is the scheme the browser used for a /sign_in request, so
// that rd is compared by scheme as well as host and port: an https rd on a
// plain-http request is another origin. The proxy in front states it in
// X-Forwarded-Proto, believed from a trusted peer when it is exactly "http"
// or "https"; otherwise the scheme of the connection the request came on.
func (s *Server) signInScheme(r *http.Request) string {
	if s.trusted(peerAddr(r.RemoteAddr), r.TLS) {
		if vs := r.Header.Values("X-Forwarded-Proto"); len(vs) == 1 && (vs[0] == "http" || vs[0] == "https") {
			return vs[0]
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// isEnvoyTarget reports whether a raw request-target is for the Envoy
// endpoint: the prefix alone, or followed by a path or a query.
func isEnvoyTarget(uri string) bool {
	return uri == envoyPrefix || strings.HasPrefix(uri, envoyPrefix+"/") || strings.HasPrefix(uri, envoyPrefix+"?")
}

// describeEnvoy reads Envoy's HTTP ext_authz check request: the original
// method and Host as they are, the original path and query after the
// /envoy prefix, exactly as received.
func describeEnvoy(r *http.Request, d *described) (string, bool) {
	target := strings.TrimPrefix(r.RequestURI, envoyPrefix)
	if target == "" || target[0] == '?' {
		target = "/" + target
	}
	d.set(r.Method, r.Header.Get("X-Forwarded-Proto"), r.Host, target, r.Header)
	return "", true
}

// describeNginx reads nginx auth_request as examples/integrations/nginx.conf
// configures it: X-Original-URI with X-Forwarded-Host (else Host) and
// X-Forwarded-Proto, and X-Original-Method (GET when absent). nginx copies
// the client's headers into the subrequest, so only the headers the auth
// location sets can be believed; X-Original-URL is ingress-nginx's and is
// refused here, because a client could have sent it.
func describeNginx(r *http.Request, d *described) (string, bool) {
	if _, ok := r.Header["X-Original-Url"]; ok {
		return "X-Original-URL is not read here: ingress-nginx asks " + ingressNginxPath + "; with plain nginx, clear it (proxy_set_header X-Original-URL \"\";).", false
	}
	method, msg, ok := originalMethod(r.Header)
	if !ok {
		return msg, false
	}
	target, ok := one(r.Header, "X-Original-Uri")
	if !ok {
		return "X-Original-URI is sent more than once.", false
	}
	if target == "" {
		return "nginx did not say which request to decide: set X-Original-URI.", false
	}
	if target[0] != '/' {
		return "X-Original-URI must be a path and query (/...).", false
	}
	host, ok := one(r.Header, "X-Forwarded-Host")
	if !ok {
		return "X-Forwarded-Host is sent more than once.", false
	}
	if host == "" {
		host = r.Host
	}
	proto, ok := one(r.Header, "X-Forwarded-Proto")
	if !ok {
		return "X-Forwarded-Proto is sent more than once.", false
	}
	d.set(method, proto, host, target, r.Header)
	return "", true
}

// describeIngressNginx reads the ingress-nginx controller's auth
// subrequest: X-Original-URL (absolute) and X-Original-Method, which the
// controller always sets over whatever the client sent. X-Original-URI is
// set by the controller only with the auth-method annotation, and then to
// the same request-target; any other X-Original-URI came from the client
// and is refused.
func describeIngressNginx(r *http.Request, d *described) (string, bool) {
	method, msg, ok := originalMethod(r.Header)
	if !ok {
		return msg, false
	}
	full, ok := one(r.Header, "X-Original-Url")
	if !ok {
		return "X-Original-URL is sent more than once.", false
	}
	if full == "" {
		return "ingress-nginx did not say which request to decide: X-Original-URL is missing.", false
	}
	scheme, host, target, ok := splitURL(full)
	if !ok {
		return "X-Original-URL is not an absolute http(s) URL.", false
	}
	if uri, present := r.Header["X-Original-Uri"]; present && (len(uri) != 1 || uri[0] != target) {
		return "X-Original-URI disagrees with X-Original-URL: two descriptions of one request.", false
	}
	d.set(method, scheme, host, target, r.Header)
	return "", true
}

// originalMethod is X-Original-Method, GET when absent.
func originalMethod(h http.Header) (method, msg string, ok bool) {
	method, ok = one(h, "X-Original-Method")
	if !ok {
		return "", "X-Original-Method is sent more than once.", false
	}
	if method == "" {
		return http.MethodGet, "", true
	}
	if !httpguts.ValidHeaderFieldName(method) {
		return "", "X-Original-Method is not an HTTP method.", false
	}
	return method, "", true
}

// describeForwardAuth reads Traefik ForwardAuth and Caddy forward_auth:
// X-Forwarded-Method, -Proto, -Host and -Uri, all required but Proto.
func describeForwardAuth(r *http.Request, d *described) (string, bool) {
	var v [4]string
	for i, name := range [...]string{"X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"} {
		val, ok := one(r.Header, name)
		if !ok {
			return name + " is sent more than once.", false
		}
		if val == "" && i != 1 {
			return "The proxy did not say which request to decide: " + name + " is missing.", false
		}
		v[i] = val
	}
	if !httpguts.ValidHeaderFieldName(v[0]) {
		return "X-Forwarded-Method is not an HTTP method.", false
	}
	if v[3][0] != '/' {
		return "X-Forwarded-Uri must be a path and query (/...).", false
	}
	d.set(v[0], v[1], v[2], v[3], r.Header)
	return "", true
}

// removesOwnHeader reports whether the Connection header of the described
// request names a header sekisho sets upstream (an identity header or the
// assertion): a proxy that honours Connection after copying sekisho's
// headers in would remove them again, and the upstream would get an
// authenticated request without its identity.
func removesOwnHeader(snap *snapshot.Snapshot, h http.Header) (string, bool) {
	conn := h["Connection"]
	if len(conn) == 0 {
		return "", false
	}
	assertionHeader := snap.AssertionHeader
	if assertionHeader == "" {
		assertionHeader = assertion.DefaultHeader
	}
	own := [...]string{snap.Headers.User, snap.Headers.Email, snap.Headers.Groups, assertionHeader}
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			tok = textproto.TrimString(tok)
			for _, name := range own {
				if name != "" && strings.EqualFold(tok, name) {
					return name, true
				}
			}
		}
	}
	return "", false
}

func connectionMessage(name string) string {
	return "The Connection header names " + name + ", a header sekisho sets: it would be removed after the decision."
}

// one returns the single value of a header; ok is false when it is sent
// more than once, because two descriptions of one request are a conflict.
func one(h http.Header, name string) (string, bool) {
	vs := h[name]
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	return "", false
}

// splitURL splits an absolute http(s) URL into scheme, authority and
// request-target ("/" when it has no path), without decoding anything.
func splitURL(u string) (scheme, host, target string, ok bool) {
	for _, sc := range [...]string{"https", "http"} {
		if len(u) > len(sc)+3 && strings.EqualFold(u[:len(sc)], sc) && u[len(sc):len(sc)+3] == "://" {
			scheme, u = sc, u[len(sc)+3:]
			break
		}
	}
	if scheme == "" {
		return "", "", "", false
	}
	i := strings.IndexAny(u, "/?#")
	if i < 0 {
		return scheme, u, "/", u != ""
	}
	host, target = u[:i], u[i:]
	if target[0] != '/' {
		target = "/" + target
	}
	return scheme, host, target, host != ""
}

// peerAddr parses http.Request.RemoteAddr; the zero Addr, trusted by no
// one, when it is not an address.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
