// Package proxy is the forward stage of the pipeline: it sends an authorized
// request to one of a route's upstreams and streams the answer back.
//
// A Pool is built once per route per config snapshot and is immutable apart
// from its passive health state. The request it receives has already been
// normalized (r.URL holds the canonical path to forward), carries a
// *reqinfo.Info, and has had spoofable identity headers removed.
package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/internal/echo"
	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/reqinfo"
)

// Backend is one upstream of a route. URL schemes: http, https, h2c (HTTP/2
// over cleartext, for gRPC upstreams) and builtin (only "builtin:echo").
// Weight 0 keeps a backend configured but sends it no traffic.
type Backend struct {
	URL    *url.URL
	Weight int
}

// Options tune a Pool. Zero values select the defaults noted per field.
type Options struct {
	// Timeout bounds the wait for the upstream's response headers (0 → 30s).
	// Exceeding it answers 504.
	Timeout time.Duration
	// DialTimeout bounds connecting to a backend (0 → 5s).
	DialTimeout time.Duration
	// Retries is the number of extra attempts on another backend. They are
	// made only for idempotent methods whose body is absent or replayable
	// (GetBody set), and only when the request never reached the upstream
	// (the connection could not be made). 0 disables retries; negative → 1.
	Retries int
	// EjectAfter is the number of consecutive connect failures after which a
	// backend is ejected (0 → 2).
	EjectAfter int
	// Cooldown is how long an ejected backend is skipped (0 → 10s).
	Cooldown time.Duration
	// RewriteHost sends the backend's host as Host instead of the client's,
	// for upstreams that route on their own name.
	RewriteHost bool
	// TLS is the client TLS configuration for https backends (private CA,
	// client certificate, server name); nil uses the system roots.
	TLS *tls.Config
	// Logger receives upstream failures and ejections (nil → slog.Default()).
	Logger *slog.Logger
	// OnUpstreamError is called once per failed attempt, for metrics. kind is
	// "connect", "timeout" or "other".
	OnUpstreamError func(backend string, kind string)
	// StandardTransport sends every request through http.Transport, turning
	// off the lean HTTP/1.1 path for http backends (see lean.go). It exists
	// to compare the two paths and as an escape hatch.
	StandardTransport bool
}

// Limits that keep the precomputed schedule small.
const (
	maxBackends = 64 // a tried-set is one uint64
	maxWeight   = 10000
)

// Pool forwards requests for one route to its weighted backends.
type Pool struct {
	route       string
	backends    []*backend
	schedule    []uint8 // smooth weighted round-robin order of backend indexes
	next        atomic.Uint64
	retries     int
	ejectAfter  int64
	cooldown    time.Duration
	rewriteHost bool
	log         *slog.Logger
	onError     func(backend, kind string)
	now         func() time.Time // replaced in tests
	transports  []*http.Transport
	proxy       *httputil.ReverseProxy
}

// New validates backends and builds a Pool for route. Transports are shared
// by all backends of the pool, so its connections are reused across them.
func New(route string, backends []Backend, opts Options) (*Pool, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("route %q: no backends", route)
	}
	if len(backends) > maxBackends {
		return nil, fmt.Errorf("route %q: %d backends, at most %d are supported", route, len(backends), maxBackends)
	}
	opts = withDefaults(opts)
	p := &Pool{
		route:       route,
		retries:     opts.Retries,
		ejectAfter:  int64(opts.EjectAfter),
		cooldown:    opts.Cooldown,
		rewriteHost: opts.RewriteHost,
		log:         opts.Logger,
		onError:     opts.OnUpstreamError,
		now:         time.Now,
	}
	var (
		plain, h2c *http.Transport
		weights    = make([]int, len(backends))
	)
	for i, be := range backends {
		if be.Weight < 0 || be.Weight > maxWeight {
			return nil, fmt.Errorf("route %q: backend %d: weight %d outside 0..%d", route, i, be.Weight, maxWeight)
		}
		weights[i] = be.Weight
		b, err := parseBackend(be.URL)
		if err != nil {
			return nil, fmt.Errorf("route %q: backend %d: %w", route, i, err)
		}
		switch b.kind {
		case "h2c":
			if h2c == nil {
				h2c = newTransport(opts, true)
				p.transports = append(p.transports, h2c)
			}
			b.rt = h2c
		case "http", "https":
			if plain == nil {
				plain = newTransport(opts, false)
				p.transports = append(p.transports, plain)
			}
			b.rt = plain
			if b.kind == "http" && !opts.StandardTransport {
				b.lean = newLeanTransport(b.name, opts)
			}
		default:
			b.rt = echo.Transport{}
		}
		p.backends = append(p.backends, b)
	}
	sched, err := schedule(weights)
	if err != nil {
		return nil, fmt.Errorf("route %q: %w", route, err)
	}
	p.schedule = sched
	p.proxy = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    roundTripper{p},
		ErrorHandler: p.handleError,
		ErrorLog:     slog.NewLogLogger(p.log.With("route", route).Handler(), slog.LevelWarn),
		BufferPool:   buffers,
	}
	return p, nil
}

func withDefaults(o Options) Options {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Retries < 0 {
		o.Retries = 1
	}
	if o.EjectAfter <= 0 {
		o.EjectAfter = 2
	}
	if o.Cooldown <= 0 {
		o.Cooldown = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OnUpstreamError == nil {
		o.OnUpstreamError = func(string, string) {}
	}
	return o
}

// parseBackend checks a backend URL. A path, query or user info is refused
// rather than ignored: the forwarded path is always the canonical request
// path, and credentials do not belong in routing config.
func parseBackend(u *url.URL) (*backend, error) {
	if u == nil {
		return nil, errors.New("missing URL")
	}
	if u.Scheme == "builtin" {
		if u.Opaque != "echo" {
			return nil, fmt.Errorf("unknown builtin upstream %q (only builtin:echo exists)", u.Redacted())
		}
		return &backend{name: "builtin:echo", kind: "builtin"}, nil
	}
	var scheme, port string
	switch u.Scheme {
	case "http":
		scheme, port = "http", "80"
	case "https":
		scheme, port = "https", "443"
	case "h2c":
		scheme, port = "http", "80"
	default:
		return nil, fmt.Errorf("unsupported scheme %q in %q (want http, https, h2c or builtin)", u.Scheme, u.Redacted())
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("URL %q has no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("URL %q must not carry user info", u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("URL %q must not have a path, query or fragment: the request path is forwarded as is", u.Redacted())
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return &backend{
		name:   net.JoinHostPort(u.Hostname(), port),
		kind:   u.Scheme,
		scheme: scheme,
		host:   u.Host,
	}, nil
}

// ServeHTTP forwards r to a backend and copies the answer back.
//
// The response's Content-Type is the upstream's, or none: the key is
// present with no value so that net/http does not sniff one from the first
// bytes written. Left to sniff, a streamed body without a type would get
// one or not depending on whether ReverseProxy's immediate flush or its
// first write ran first, and a proxy must not label an upstream's
// untyped bytes text/html.
func (p *Pool) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := w.Header(); h != nil {
		if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = nil
		}
	}
	p.proxy.ServeHTTP(w, r)
}

// Lean reports whether the pool's http:// backends take the lean HTTP/1.1
// path, so that the configuration can be checked to have chosen the client
// that `upstream_transport` names.
func (p *Pool) Lean() bool {
	for _, b := range p.backends {
		if b.lean != nil {
			return true
		}
	}
	return false
}

// Close releases idle upstream connections once a config snapshot is retired.
// Requests in flight finish on their own connections.
func (p *Pool) Close() {
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	for _, b := range p.backends {
		if b.lean != nil {
			b.lean.closeIdle(true)
		}
	}
}

// unvouched are the client-sent headers that upstream frameworks read as the
// client's address, scheme, port, host, method, path prefix or path:
// normalize.ForwardingHeaders. ReverseProxy removes only the exact names
// Forwarded and X-Forwarded-For/-Host/-Proto; left alone, the rest would let
// a client pick the address an upstream IP check sees (chi and nginx read
// True-Client-IP and X-Real-IP), the prefix it builds redirects from (Spring,
// ASP.NET) or the path or method it serves instead of the one that was
// authorized (X-Original-URL, X-Rewrite-URL, X-Forwarded-Uri,
// X-Envoy-Original-Path). A HeaderSet also catches the underscore spellings
// ("X-Forwarded_For") that CGI-style stacks read as the dashed name. sekisho
// sets its own values after stripping.
var unvouched = normalize.NewHeaderSet(normalize.ForwardingHeaders, nil)

// rewrite shapes the outbound request. ReverseProxy has already removed
// hop-by-hop headers, including every header the client named in
// Connection; everything sekisho vouches for (forwarding headers, request
// id, identity headers, assertion) is set here, after that removal, so a
// Connection token naming one of them has no effect.
func (p *Pool) rewrite(pr *httputil.ProxyRequest) {
	// ReverseProxy re-encodes queries it cannot parse; the upstream must see
	// the query the client sent, so that nothing differs between parsers.
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery

	info := reqinfo.From(pr.In.Context())
	if info == nil {
		info = &reqinfo.Info{}
	}
	// The body is read through info.Body, which remembers a read error:
	// see handleError. ReverseProxy leaves Body nil for requests without
	// one (ContentLength 0).
	if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
		info.Body.Wrap(pr.Out.Body)
		pr.Out.Body = &info.Body
	}
	h := pr.Out.Header
	unvouched.Strip(h)
	xff := info.ForwardedFor
	if peer, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if xff == "" {
			xff = peer
		} else {
			xff += ", " + peer
		}
	}
	setIf(h, "X-Forwarded-For", xff)
	setIf(h, "X-Forwarded-Proto", info.Proto)
	setIf(h, "X-Forwarded-Host", info.Host)
	setIf(h, "X-Request-Id", info.ID)
	info.Identity.SetOn(h)
}

func setIf(h http.Header, name, value string) {
	if value != "" {
		h[name] = []string{value}
	}
}

// handleError answers a failed forward without revealing why to the client:
// the status says timeout or not, the log line says the rest.
func (p *Pool) handleError(w http.ResponseWriter, r *http.Request, err error) {
	var id, upstream string
	if info := reqinfo.From(r.Context()); info != nil {
		id, upstream = info.ID, info.Upstream
	}
	if berr := clientBodyError(r); berr != nil {
		// The client's body was malformed (bad chunked framing) or ended
		// early: its fault, not the upstream's, so no ERROR and no 502.
		p.log.LogAttrs(r.Context(), slog.LevelInfo, "request body could not be read",
			slog.String("route", p.route), slog.String("request_id", id), slog.String("upstream", upstream),
			slog.Int("status", http.StatusBadRequest), slog.Any("error", berr))
		httperr.Write(w, r, http.StatusBadRequest, "The request body could not be read: its framing is invalid or it ended early.")
		return
	}
	status, msg := http.StatusBadGateway, "The upstream service could not be reached."
	if classify(err) == kindTimeout {
		status, msg = http.StatusGatewayTimeout, "The upstream service did not answer in time."
	}
	level := slog.LevelError
	if r.Context().Err() != nil {
		level = slog.LevelDebug // the client went away: nothing is wrong upstream
	}
	p.log.Log(r.Context(), level, "upstream request failed",
		"route", p.route, "request_id", id, "upstream", upstream, "status", status, "error", err)
	httperr.Write(w, r, status, msg)
}

// clientBodyError is the error reading r's body failed with, if it did: a
// body the client framed badly or cut short is the client's fault (400),
// everything else the upstream's (502/504).
func clientBodyError(r *http.Request) error {
	if b, ok := r.Body.(*reqinfo.Body); ok {
		return b.Err()
	}
	return nil
}
