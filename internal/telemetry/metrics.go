// Package telemetry holds sekisho's metrics and loggers. Metrics live in a
// registry of their own (not the process-global one) so tests and several
// gateways in one process do not collide.
package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's Prometheus series.
type Metrics struct {
	Registry *prometheus.Registry

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	generation     prometheus.Gauge
	lastReload     prometheus.Gauge
	unknownKID     *prometheus.CounterVec
	jwksRefreshes  *prometheus.CounterVec
	restart        prometheus.Gauge
	reviews        *prometheus.HistogramVec
	tokenCache     cacheCounters
	sessionCache   cacheCounters
}

// cacheCounters are one cache's hit, miss and eviction counters, resolved
// once so that the request path only adds to them.
type cacheCounters struct {
	hits, misses, evictions prometheus.Counter
}

func newCacheCounters(name, what string) cacheCounters {
	c := func(event, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sekisho_" + name + "_cache_" + event + "_total",
			Help: what + help,
		})
	}
	return cacheCounters{
		hits:      c("hits", ": lookups answered from the cache."),
		misses:    c("misses", ": lookups not in the cache (or expired there), which cost a full check."),
		evictions: c("evictions", ": entries dropped, unexpired, to make room within the cache's bounds. A steady rate means the working set does not fit."),
	}
}

func (c *cacheCounters) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.hits, c.misses, c.evictions}
}

// event counts "hit", "miss" or "eviction"; others are ignored.
func (c *cacheCounters) event(e string) {
	switch e {
	case "hit":
		c.hits.Inc()
	case "miss":
		c.misses.Inc()
	case "eviction":
		c.evictions.Inc()
	}
}

// NewMetrics registers the gateway's series in a new registry, together with
// the Go runtime and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_requests_total",
			Help: "Requests answered, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sekisho_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_upstream_errors_total",
			Help: "Failed attempts to reach an upstream, by route, backend and kind (connect, timeout, other).",
		}, []string{"route", "backend", "kind"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_config_reloads_total",
			Help: "Configuration loads, by result (success, failure).",
		}, []string{"result"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sekisho_config_generation",
			Help: "Generation of the configuration snapshot in use (1 for the first).",
		}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sekisho_config_last_success_timestamp_seconds",
			Help: "When the snapshot in use was loaded.",
		}),
		unknownKID: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_jwt_unknown_kid_total",
			Help: "Bearer JWTs refused because their issuer's keys have no key with their kid, by issuer. Each schedules a bounded JWKS refresh.",
		}, []string{"issuer"}),
		jwksRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_jwks_refreshes_total",
			Help: "JWKS fetches, by issuer and result (updated, unchanged, failed).",
		}, []string{"issuer", "result"}),
		restart: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sekisho_config_restart_required",
			Help: "1 when the loaded configuration changes settings read only at start (listen, admin, log format or access, decision) and the process runs on the old ones until restarted.",
		}),
		reviews: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sekisho_tokenreview_duration_seconds",
			Help:    "Kubernetes TokenReviews answered, by result (authenticated, unauthenticated, bad_request); the _count series counts them.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"result"}),
		tokenCache:   newCacheCounters("token", "Verified bearer JWTs"),
		sessionCache: newCacheCounters("session", "Decoded session cookies"),
	}
	reg.MustRegister(m.tokenCache.collectors()...)
	reg.MustRegister(m.sessionCache.collectors()...)
	reg.MustRegister(m.requests, m.duration, m.upstreamErrors, m.reloads, m.generation, m.lastReload,
		m.unknownKID, m.jwksRefreshes, m.restart, m.reviews,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}

// codes holds the label strings of common status codes so the hot path does
// not format them.
var codes = func() [600]string {
	var c [600]string
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codes) {
		return codes[code]
	}
	return strconv.Itoa(code)
}

// Request records one answered request. route is "" when no route matched.
func (m *Metrics) Request(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, codeLabel(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// UpstreamError records a failed upstream attempt.
func (m *Metrics) UpstreamError(route, backend, kind string) {
	m.upstreamErrors.WithLabelValues(route, backend, kind).Inc()
}

// Reload records a configuration load; generation is the snapshot now in use.
func (m *Metrics) Reload(ok bool, generation uint64) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.generation.Set(float64(generation))
	m.lastReload.SetToCurrentTime()
}

// JWTUnknownKID records a bearer JWT refused for a kid its issuer's keys
// lack. The issuer label is bounded: only configured issuers get this far.
func (m *Metrics) JWTUnknownKID(issuer string) {
	m.unknownKID.WithLabelValues(issuer).Inc()
}

// JWKSRefresh records a JWKS fetch and its result.
func (m *Metrics) JWKSRefresh(issuer, result string) {
	m.jwksRefreshes.WithLabelValues(issuer, result).Inc()
}

// TokenCache records a verified-token cache event: "hit", "miss" or
// "eviction". It runs on the request path: an atomic add, no label lookup.
func (m *Metrics) TokenCache(event string) { m.tokenCache.event(event) }

// SessionCache records a decoded-session cache event, as TokenCache.
func (m *Metrics) SessionCache(event string) { m.sessionCache.event(event) }

// RestartRequired records whether the loaded configuration differs from the
// running process in settings that take effect only at start.
func (m *Metrics) RestartRequired(required bool) {
	v := 0.0
	if required {
		v = 1
	}
	m.restart.Set(v)
}

// TokenReview records one answered TokenReview.
func (m *Metrics) TokenReview(result string, d time.Duration) {
	m.reviews.WithLabelValues(result).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
