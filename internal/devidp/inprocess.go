package devidp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host || !strings.HasPrefix(r.URL.Path, t.prefix) {
		return t.next.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}
