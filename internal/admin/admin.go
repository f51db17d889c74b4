// Package admin serves the operator endpoints on their own listener, apart
// from client traffic: liveness, readiness, Prometheus metrics and,
// when asked for, pprof.
package admin

import (
	"net/http"
	"net/http/pprof"
)

// Options says what the admin handler reports on.
type Options struct {
	// Ready reports whether the process should receive traffic: a snapshot
	// is live and it is not draining.
	Ready func() bool
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Pprof exposes /debug/pprof/. Off by default: profiles reveal internals.
	Pprof bool
}

// Handler returns the admin mux.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil && o.Ready() {
			text(w, http.StatusOK, "ready\n")
			return
		}
		text(w, http.StatusServiceUnavailable, "not ready\n")
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
