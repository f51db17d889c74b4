package listen

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/sekisho/sekisho/internal/httperr"
	"github.com/sekisho/sekisho/internal/normalize"
)

// redirectToHTTPS answers every plain request with a permanent redirect to
// the same resource on the HTTPS listener at httpsPort. The target is built
// from parts with net/url, from a validated host, so a crafted Host header or
// request-target cannot turn it into a redirect to another site; the escaped
// path and raw query are kept exactly as sent.
func redirectToHTTPS(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := normalize.Host(r.Host)
		if !ok {
			httperr.Write(w, r, http.StatusBadRequest, "invalid Host header")
			return
		}
		if httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		} else if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + host + "]"
		}
		target := url.URL{
			Scheme:   "https",
			Host:     host,
			Path:     r.URL.Path,
			RawPath:  r.URL.RawPath,
			RawQuery: r.URL.RawQuery,
		}
		w.Header().Set("Location", target.String())
		// 301 for reads; 308 for the rest, which tells clients to repeat
		// the same method and body instead of turning a POST into a GET.
		status := http.StatusMovedPermanently
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusPermanentRedirect
		}
		w.WriteHeader(status)
	})
}
