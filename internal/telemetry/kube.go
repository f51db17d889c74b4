package telemetry

import "github.com/prometheus/client_golang/prometheus"

// KubeRoutes are the series of the Route-object watcher, registered only
// by a process that reads routes from Kubernetes.
type KubeRoutes struct {
	routes *prometheus.GaugeVec
	leader prometheus.Gauge
}

// NewKubeRoutes registers the watcher's series in m's registry.
func (m *Metrics) NewKubeRoutes() *KubeRoutes {
	k := &KubeRoutes{
		routes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sekisho_kube_routes",
			Help: "Route objects in the last compile, by state: accepted (served), invalid, conflicted.",
		}, []string{"state"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sekisho_kube_status_leader",
			Help: "1 when this replica holds the Lease and so writes the status and Events of Route objects.",
		}),
	}
	m.Registry.MustRegister(k.routes, k.leader)
	for _, s := range []string{"accepted", "invalid", "conflicted"} {
		k.routes.WithLabelValues(s)
	}
	return k
}

// Routes records the number of Route objects in each state.
func (k *KubeRoutes) Routes(accepted, invalid, conflicted int) {
	k.routes.WithLabelValues("accepted").Set(float64(accepted))
	k.routes.WithLabelValues("invalid").Set(float64(invalid))
	k.routes.WithLabelValues("conflicted").Set(float64(conflicted))
}

// Leader records whether this replica writes the status of Route objects.
func (k *KubeRoutes) Leader(leader bool) {
	v := 0.0
	if leader {
		v = 1
	}
	k.leader.Set(v)
}
