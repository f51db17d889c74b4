package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

// Kinds of upstream failure, as reported to Options.OnUpstreamError.
const (
	kindConnect = "connect"
	kindTimeout = "timeout"
	kindOther   = "other"
)

// roundTripper picks the backend for each attempt, so that a retry on
// another backend happens below ReverseProxy, which sees one round trip.
type roundTripper struct{ p *Pool }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	info := reqinfo.From(req.Context())
	retries := 0
	if replayable(req) {
		retries = p.retries
	}
	var tried uint64
	var lastErr error
	for attempt := 0; ; attempt++ {
		i := p.pick(tried)
		if i < 0 {
			return nil, lastErr // only after a failed attempt: every backend was tried
		}
		tried |= 1 << i
		b := p.backends[i]
		if info != nil {
			info.Upstream = b.name
		}
		out, err := p.outbound(req, b, attempt)
		if err != nil {
			return nil, err
		}
		rt := b.rt
		if b.lean != nil && leanEligible(out) {
			rt = b.lean
		}
		resp, err := rt.RoundTrip(out)
		if err == nil {
			p.succeeded(b)
			return resp, nil
		}
		if req.Context().Err() != nil || clientBodyError(req) != nil {
			return nil, err // the client gave up or sent a broken body: not the backend's fault
		}
		kind := classify(err)
		p.onError(b.name, kind)
		if kind != kindConnect {
			return nil, err
		}
		p.connectFailed(b)
		if attempt >= retries {
			return nil, err
		}
		p.log.Warn("upstream connect failed, retrying on another backend",
			"route", p.route, "request_id", requestID(info), "upstream", b.name, "error", err)
		lastErr = err
	}
}

// outbound addresses a shallow copy of req to b. A retry gets a fresh body
// from GetBody because the failed attempt's transport closed the first one.
func (p *Pool) outbound(req *http.Request, b *backend, attempt int) (*http.Request, error) {
	out := new(http.Request)
	*out = *req
	if b.scheme != "" {
		u := *req.URL
		u.Scheme, u.Host = b.scheme, b.host
		out.URL = &u
		if p.rewriteHost {
			out.Host = "" // the transport then sends the URL's host
		}
	}
	if attempt > 0 && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		out.Body = body
	}
	return out, nil
}

// replayable reports whether req may be sent again after a failed connect:
// its method is idempotent and its body, if any, can be produced again.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// classify sorts a transport error. A failed dial means the request never
// left: it is safe to retry and counts against the backend's health.
func classify(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return kindConnect
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return kindTimeout
	}
	return kindOther
}

func requestID(info *reqinfo.Info) string {
	if info == nil {
		return ""
	}
	return info.ID
}

// newTransport returns a transport tuned for proxying: many idle connections
// per backend, no proxy from the environment, and the per-route timeout on
// response headers. With h2c it speaks HTTP/2 without TLS to http URLs.
func newTransport(o Options, h2c bool) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		ExpectContinueTimeout: 1 * time.Second,
		// A proxy passes bodies through as they are: never ask for gzip the
		// client did not ask for, never decompress on its behalf.
		DisableCompression: true,
	}
	if h2c {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	} else if o.TLS != nil {
		t.TLSClientConfig = o.TLS.Clone()
	}
	return t
}

// bufferPool recycles ReverseProxy's copy buffers: without it every response
// allocates 32 KiB.
type bufferPool struct{ pool sync.Pool }

var buffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

func (bp *bufferPool) Get() []byte  { return *bp.pool.Get().(*[]byte) }
func (bp *bufferPool) Put(b []byte) { bp.pool.Put(&b) }
