package decision

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/sekisho/sekisho/internal/engine"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/snapshot"
)

// described is the original request as a proxy described it, in the form
// the engine reads: Method, Host, RequestURI (the request-target as sent),
// URL.RawQuery and Header. Request and URL live in one allocation.
type described struct {
	req      http.Request
	url      url.URL
	scheme   string
	clientIP netip.Addr
	// keepsHeaders: the proxy cannot drop request headers on sekisho's word
	// (nginx, forward-auth), so what must be stripped is refused instead.
	keepsHeaders bool
}

func (d *described) set(method, scheme, host, target string, h http.Header) {
	d.req.Method, d.req.Host, d.req.RequestURI, d.req.Header = method, host, target, h
	d.req.URL = &d.url
	if i := strings.IndexByte(target, '?'); i >= 0 {
		d.url.RawQuery = target[i+1:]
	}
	d.scheme = scheme
	if d.scheme != "https" {
		d.scheme = "http"
	}
}

// verdict is a decision and what the asking proxy must do about it.
type verdict struct {
	res engine.Result
	// status is the HTTP answer: 200, the denial, 302 to sign in, 503 when
	// sekisho cannot decide.
	status    int
	challenge string // WWW-Authenticate on 401/403
	location  string // where a browser signs in, when login is available
	// set and remove change the request before it goes upstream (allow only):
	// the identity headers to set, and the spoofed identity headers and
	// consumed credentials to drop.
	set    http.Header
	remove []string
	// cookies are Set-Cookie values for the browser, on any answer.
	cookies []string
}

// decide runs the engine on d and works out the answer, exactly as the
// gateway would for the same request.
func (s *Server) decide(ctx context.Context, snap *snapshot.Snapshot, d *described) verdict {
	res := engine.Evaluate(ctx, snap, &d.req, engine.Options{ClientIP: d.clientIP, HeadersReachUpstream: d.keepsHeaders, Tracer: s.tracer})
	v := verdict{res: res, status: res.Outcome.Status(), cookies: setCookies(res.Cookies)}
	if res.Outcome == engine.Allowed {
		v.set, v.remove = upstreamChanges(snap, &res, d.req.Header)
		if !d.keepsHeaders && res.OverrideHeader == "" {
			v.remove = withOverrideHeaders(v.remove)
		}
		return v
	}
	v.challenge = res.Challenge(snap.Realm)
	if !res.WantsLogin(snap, &d.req) {
		return v
	}
	login := s.login(snap)
	if login == nil {
		return v
	}
	returnTo := d.scheme + "://" + d.req.Host + res.Path.Escaped
	if d.url.RawQuery != "" {
		returnTo += "?" + d.url.RawQuery
	}
	if u, ok := login.LoginURL(returnTo, d.req.Host); ok {
		v.status, v.location = http.StatusFound, u
	}
	return v
}

// upstreamChanges turns the engine's upstream changes for the described
// headers h into the answer's lists: headers to set (every identity header,
// and rewritten ones such as Cookie without the credential) and headers to
// remove.
func upstreamChanges(snap *snapshot.Snapshot, res *engine.Result, h http.Header) (set http.Header, remove []string) {
	ch := res.UpstreamChanges(snap, h)
	set = make(http.Header, ch.Identity.Len()+ch.Len())
	ch.Identity.SetOn(set)
	for i := range ch.Len() {
		if e := ch.At(i); e.Values == nil {
			remove = append(remove, e.Name)
		} else {
			set[e.Name] = e.Values
		}
	}
	return set, remove
}

// setCookies are the Set-Cookie values of session cookie updates.
func setCookies(cookies []*http.Cookie) []string {
	if len(cookies) == 0 {
		return nil
	}
	out := make([]string, 0, len(cookies))
	for _, c := range cookies {
		if v := c.String(); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// overrideNames are the method-override headers, lower-case so that
// Envoy's lower-casing of headers_to_remove does not allocate.
var overrideNames = func() []string {
	out := make([]string, len(normalize.MethodOverrideHeaders))
	for i, n := range normalize.MethodOverrideHeaders {
		out[i] = strings.ToLower(n)
	}
	return out
}()

// withOverrideHeaders adds the method-override headers to remove. Envoy
// sends the authorization service only the headers its filter is told to
// (allowed_headers), so sekisho may never see an override a client sent;
// naming them always makes Envoy drop them whatever the filter forwards.
func withOverrideHeaders(remove []string) []string {
	remove = slices.Grow(remove, len(overrideNames))
	for _, name := range overrideNames {
		if !slices.ContainsFunc(remove, func(r string) bool { return strings.EqualFold(r, name) }) {
			remove = append(remove, name)
		}
	}
	return remove
}

// logDecision writes one line per decision: denials at info (an operator
// asking "why was I refused" finds the reason), allows at debug. Neither
// carries the query, a header value or a credential.
func (s *Server) logDecision(ctx context.Context, dialect, id string, d *described, v *verdict, extra ...slog.Attr) {
	level := slog.LevelInfo
	if v.status == http.StatusOK {
		level = slog.LevelDebug
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	user := ""
	if v.res.Identity != nil {
		user = v.res.Identity.Username
	}
	attrs := append([]slog.Attr{
		slog.String("dialect", dialect),
		slog.String("request_id", id),
		slog.String("method", d.req.Method),
		slog.String("host", v.res.Host),
		slog.String("path", v.res.Path.Path),
		slog.String("route", v.res.RouteName),
		slog.Int("status", v.status),
		slog.String("user", user),
		slog.String("reason", v.res.Reason),
		slog.String("client_ip", addrString(d.clientIP)),
	}, extra...)
	s.log.LogAttrs(ctx, level, "decision", attrs...)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// clientIP is the original client behind the (trusted) asking proxy.
func (s *Server) clientIP(peer netip.Addr, xff []string) netip.Addr {
	return s.trust.ClientIP(peer, xff)
}
