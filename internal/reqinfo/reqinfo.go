// Package reqinfo carries the per-request facts that several pipeline stages
// need (request id, matched route, client address) through the request
// context, so that no stage has to re-derive what an earlier one decided.
package reqinfo

import (
	"context"
	"net/netip"
	"time"
)

// Info is filled in stage by stage as a request moves through the pipeline.
// It is owned by one request and must not be shared across goroutines that
// outlive it.
type Info struct {
	// ID is the request id: propagated from a trusted X-Request-Id or generated.
	ID string
	// Start is when the gateway first saw the request.
	Start time.Time
	// Route is the name of the matched route, empty before routing.
	Route string
	// ClientIP is the address of the original client: the peer, or the
	// right-most untrusted hop of X-Forwarded-For when the peer is trusted.
	ClientIP netip.Addr
	// Proto is the scheme the original client used ("http" or "https").
	Proto string
	// Host is the host the original client asked for (as sent, with port).
	Host string
	// ForwardedFor is the X-Forwarded-For chain believed from trusted proxies,
	// without the current peer; empty when the peer is not trusted.
	ForwardedFor string
	// Upstream is the backend that served the request, set by the proxy stage.
	Upstream string
	// Status is the status the gateway answered with (for the access log).
	Status int
	// User is the authenticated username, empty for anonymous requests.
	User string
	// Reason is why the request was allowed or denied (the matched rule or
	// the authentication failure): for the log, never for the client.
	Reason string
}

type ctxKey struct{}

// With returns a context carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, ctxKey{}, info)
}

// From returns the Info stored in ctx, or nil when none is.
func From(ctx context.Context) *Info {
	info, _ := ctx.Value(ctxKey{}).(*Info)
	return info
}
