// Package gateway is the request handler of gateway mode. It reads like the
// pipeline in DESIGN.md: normalize → route → authenticate → authorize →
// forward, each step delegated to the package named for it.
package gateway

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/engine"
	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/normalize"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/snapshot"
	"github.com/sekisho/sekisho/internal/telemetry"
	"github.com/sekisho/sekisho/internal/tracing"
)

// JWKSPath serves the public keys of the upstream assertion, so upstreams
// can verify X-Sekisho-Assertion.
const JWKSPath = "/.well-known/sekisho/jwks.json"

// Gateway serves requests on the current configuration snapshot.
type Gateway struct {
	snap       atomic.Pointer[snapshot.Snapshot]
	generation atomic.Uint64
	metrics    *telemetry.Metrics
	log        *slog.Logger
	accessLog  bool
	tracer     *tracing.Tracer // nil: tracing off
}

// New returns a gateway with no snapshot: it answers 503 until Swap.
func New(log *slog.Logger, metrics *telemetry.Metrics, accessLog bool) *Gateway {
	return &Gateway{log: log, metrics: metrics, accessLog: accessLog}
}

// SetTracer makes the gateway trace its requests (nil: off). Call it
// before serving.
func (g *Gateway) SetTracer(t *tracing.Tracer) { g.tracer = t }

// Swap makes s the snapshot for new requests and returns the one it
// replaced (nil the first time). Requests already running keep theirs.
func (g *Gateway) Swap(s *snapshot.Snapshot) (old *snapshot.Snapshot, generation uint64) {
	old = g.snap.Swap(s)
	return old, g.generation.Add(1)
}

// Snapshot is the snapshot in use, nil before the first Swap.
func (g *Gateway) Snapshot() *snapshot.Snapshot { return g.snap.Load() }

// Ready reports whether a snapshot is live.
func (g *Gateway) Ready() bool { return g.snap.Load() != nil }

// ServeHTTP runs the pipeline for one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := g.snap.Load()
	var fwd normalize.Forwarded
	if snap != nil {
		fwd = snap.Trust.Forwarded(r)
	}
	info := &reqinfo.Info{Start: time.Now(), ID: normalize.RequestID(r.Header, fwd.FromProxy)}
	rec := &recorder{ResponseWriter: w}
	ctx := reqinfo.With(r.Context(), info)
	var span trace.Span
	if g.tracer != nil {
		ctx, span = g.serverSpan(ctx, r, fwd)
	}
	r = r.WithContext(ctx)
	defer g.finish(rec, r, info, span)
	rec.Header().Set("X-Request-Id", info.ID)
	// A body framed by Transfer-Encoding may have come with a Content-Length
	// that net/http dropped; a proxy in front that went by the length would
	// read the rest differently. Close the connection after answering (RFC
	// 9112 6.1), so no bytes after this body are ever taken as a request.
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		rec.Header().Set("Connection", "close")
	}

	if snap == nil {
		httperr.Write(rec, r, http.StatusServiceUnavailable, "The gateway is starting.")
		return
	}

	info.ClientIP, info.Proto, info.Host, info.ForwardedFor = fwd.ClientIP, fwd.Proto, fwd.Host, fwd.For

	// sekisho's own endpoints (login, the built-in provider, assertion keys)
	// answer before routing, on the canonical path: any path with a "/."
	// may canonicalize into them ("//.sekisho/...", "/a/../.sekisho/...").
	// They compare methods too, so they get the canonical one ("post" is
	// POST), as engine.Evaluate would give it.
	if strings.Contains(r.URL.Path, "/.") && g.ownEndpoint(rec, r, snap, info) {
		return
	}

	// normalize → route → authenticate → authorize
	res := engine.Evaluate(r.Context(), snap, r, engine.Options{ClientIP: info.ClientIP, Tracer: g.tracer})
	info.Route, info.Reason = res.RouteName, res.Reason
	if res.Identity != nil {
		info.User = res.Identity.Username
	}
	for _, c := range res.Cookies {
		http.SetCookie(rec, c)
	}
	if res.Outcome != engine.Allowed {
		g.deny(rec, r, snap, &res)
		return
	}

	// forward
	changes := res.UpstreamChanges(snap, r.Header)
	changes.Apply(r.Header)
	// The identity is recorded, not set: the proxy sets it after removing
	// the hop-by-hop headers, which a client names in Connection.
	info.Identity = changes.Identity
	normalize.SetURL(r.URL, res.Path)
	rt := res.Route
	if rt.Upstream == nil {
		httperr.Write(rec, r, http.StatusNotFound, "This route has no upstream.")
		return
	}
	if g.tracer != nil {
		g.forwardTraced(rec, r, info, rt.Upstream)
		return
	}
	rt.Upstream.ServeHTTP(rec, r)
}

// deny answers a request the pipeline refused: a browser without a session
// goes to sign in, everyone else gets the status with a short page.
func (g *Gateway) deny(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, res *engine.Result) {
	if res.WantsLogin(snap, r) {
		snap.Login.Service.StartLogin(w, r)
		return
	}
	if c := res.Challenge(snap.Realm); c != "" {
		w.Header().Set("WWW-Authenticate", c)
	}
	if res.Outcome == engine.Forbidden && res.Source == authn.SourceSession {
		prefix := snap.Login.Service.PathPrefix()
		msg := "You are signed in as " + res.Identity.Username + ", which may not access this route."
		httperr.WriteActions(w, r, http.StatusForbidden, msg,
			httperr.Action{Label: "Sign out or switch account", URL: prefix + "/sign_out", Method: http.MethodPost})
		return
	}
	httperr.Write(w, r, res.Outcome.Status(), res.Message)
}

// ownEndpoint serves sekisho's endpoints under "/.": the assertion JWKS,
// the built-in providers and the login endpoints. It reports whether it
// answered.
func (g *Gateway) ownEndpoint(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, info *reqinfo.Info) bool {
	p, err := normalize.Request(r)
	if err != nil || !strings.HasPrefix(p.Path, "/.") {
		return false // the pipeline answers (400 for a bad path)
	}
	if m, _, ok := normalize.Method(r.Method); ok {
		r.Method = m
	}
	// The handlers below dispatch on r.URL: give them the canonical path.
	normalize.SetURL(r.URL, p)
	switch {
	case p.Path == JWKSPath && snap.Assertion != nil:
		info.Route = "sekisho:jwks"
		snap.Assertion.JWKSHandler().ServeHTTP(w, r)
		return true
	case snap.Login == nil:
		return false
	case strings.HasPrefix(p.Path, snapshot.DevIDPPrefix):
		for mount, dev := range snap.Login.DevIDPs {
			if strings.HasPrefix(p.Path+"/", mount) {
				info.Route = "sekisho:dev-idp"
				dev.ServeHTTP(w, r)
				return true
			}
		}
	case snap.Login.Service.Owns(p.Path):
		info.Route = "sekisho:login"
		snap.Login.Service.ServeHTTP(w, r)
		return true
	}
	return false
}

// finish writes the access log line and the request metrics. Neither
// contains the query string, a cookie or an Authorization value.
func (g *Gateway) finish(rec *recorder, r *http.Request, info *reqinfo.Info, span trace.Span) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	info.Status = status
	if span != nil {
		endServerSpan(span, r, info)
	}
	d := time.Since(info.Start)
	if g.metrics != nil {
		g.metrics.Request(info.Route, status, d)
	}
	if !g.accessLog {
		return
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("request_id", info.ID),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("route", info.Route),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.String("upstream", info.Upstream),
		slog.String("client_ip", clientIP(info)),
		slog.String("user", info.User),
		slog.String("reason", info.Reason),
		slog.Int64("bytes", rec.bytes),
	)
}

func clientIP(info *reqinfo.Info) string {
	if !info.ClientIP.IsValid() {
		return ""
	}
	return info.ClientIP.String()
}

// recorder remembers the status and size of a response. It unwraps to the
// underlying writer so http.ResponseController (flush, hijack for
// WebSocket, deadlines) keeps working through it.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush and Hijack are here too because httputil.ReverseProxy asserts the
// interfaces directly for some paths.
func (r *recorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(r.ResponseWriter).Hijack()
}
