// Package reqinfo carries the per-request facts that several pipeline stages
// need (request id, matched route, client address) through the request
// context, so that no stage has to re-derive what an earlier one decided.
package reqinfo

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
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
	// Identity are the headers that tell the upstream who called (identity
	// headers, signed assertion). The proxy stage sets them on the outbound
	// request last, after hop-by-hop removal, so that a client listing them
	// in Connection cannot make them disappear.
	Identity Headers
	// Body is the request body as the proxy stage forwards it, kept here so
	// that wrapping it costs no allocation; see Body.
	Body Body
}

// Body wraps a request body and remembers the first error reading it
// failed with, so that the proxy stage can tell a body the client framed
// badly or cut short (the client's fault) from an upstream failure. One
// goroutine reads it; another may ask Err once the reads have failed.
type Body struct {
	io.ReadCloser
	failed atomic.Bool // set after err is, so Err sees err
	err    error
}

// Wrap makes b read from rc, forgetting any earlier error.
func (b *Body) Wrap(rc io.ReadCloser) {
	b.ReadCloser, b.err = rc, nil
	b.failed.Store(false)
}

// Read reads from the wrapped body, remembering its first error other than
// io.EOF.
func (b *Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !b.failed.Load() {
		b.err = err
		b.failed.Store(true)
	}
	return n, err
}

// Err is the error a read of the body failed with, or nil.
func (b *Body) Err() error {
	if b.failed.Load() {
		return b.err
	}
	return nil
}

// Headers is a short list of headers to set, kept inside Info so that
// recording the usual few costs no allocation. It is filled by one stage and
// read by a later one of the same request.
type Headers struct {
	n     int
	fixed [4]header
	more  []header
}

type header struct{ name, value string }

// Set records name: value, replacing an earlier value for the same name
// (names compared as given). It has http.Header's signature so code that
// computes headers can fill either.
func (h *Headers) Set(name, value string) {
	for i := range h.n {
		if e := h.at(i); e.name == name {
			e.value = value
			return
		}
	}
	if h.n < len(h.fixed) {
		h.fixed[h.n] = header{name, value}
	} else {
		h.more = append(h.more, header{name, value})
	}
	h.n++
}

func (h *Headers) at(i int) *header {
	if i < len(h.fixed) {
		return &h.fixed[i]
	}
	return &h.more[i-len(h.fixed)]
}

// Len is the number of headers recorded.
func (h *Headers) Len() int { return h.n }

// Sets reports whether SetOn writes the header map key key (a canonical
// key naming a recorded header, in any case): a change that would remove
// or rewrite that key is overridden by SetOn.
func (h *Headers) Sets(key string) bool {
	for i := range h.n {
		if e := h.at(i); strings.EqualFold(e.name, key) && http.CanonicalHeaderKey(key) == key {
			return true
		}
	}
	return false
}

// SetOn sets every recorded header on dst, replacing any value there.
func (h *Headers) SetOn(dst http.Header) {
	for i := range h.n {
		e := h.at(i)
		dst.Set(e.name, e.value)
	}
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
