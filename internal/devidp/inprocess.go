package devidp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
)

// Transport returns a RoundTripper that serves requests for this provider's
// issuer in-process and sends every other request to next. The gateway's
// own login flow then does not depend on its listener being reachable from
// inside the pod (hairpin) or already started.
func (p *Provider) Transport(next http.RoundTripper) http.RoundTripper {
	u, _ := url.Parse(p.issuer)
	return inProcess{host: u.Host, prefix: u.Path + "/", h: p.handler, next: next}
}

type inProcess struct {
	host   string
	prefix string
	h      http.Handler
	next   http.RoundTripper
}

// matches reports whether r is for the provider.
func (t inProcess) matches(r *http.Request) bool {
	return r.URL.Host == t.host && strings.HasPrefix(r.URL.Path, t.prefix)
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if !t.matches(r) {
		return t.next.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// Router serves the built-in providers of a process in-process to
// sekisho's other HTTP clients, above all the JWT verifier fetching their
// keys: a `jwt:` issuer that is sekisho's own built-in provider (so the
// token webhook and bearer routes accept what `sekisho kube login` gets
// from it) must not wait for its own listener, nor go out and back in
// through the network. Providers come and go with reloads, so the router
// is asked at each request. Use NewRouter.
type Router struct {
	mu     sync.RWMutex
	routes map[string]route // issuer URL → its provider
}

type route struct {
	p  *Provider
	in inProcess
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{routes: map[string]route{}} }

// Add serves p's issuer in-process until remove is called; a later Add for
// the same issuer (a reload) replaces it, and then the earlier remove does
// nothing.
func (r *Router) Add(p *Provider) (remove func()) {
	r.mu.Lock()
	r.routes[p.issuer] = route{p: p, in: p.Transport(nil).(inProcess)}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.routes[p.issuer].p == p {
			delete(r.routes, p.issuer)
		}
		r.mu.Unlock()
	}
}

// Transport returns a RoundTripper that serves requests for the issuers
// added at the time of each request in-process, and sends every other
// request to next.
func (r *Router) Transport(next http.RoundTripper) http.RoundTripper {
	return routerTransport{r: r, next: next}
}

type routerTransport struct {
	r    *Router
	next http.RoundTripper
}

func (t routerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.r.mu.RLock()
	var in inProcess
	found := false
	for _, rt := range t.r.routes {
		if rt.in.matches(req) {
			in, found = rt.in, true
			break
		}
	}
	t.r.mu.RUnlock()
	if !found {
		return t.next.RoundTrip(req)
	}
	in.next = t.next
	return in.RoundTrip(req)
}
