package manager

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

// metricSet is the manager's share of its process's Prometheus metrics.
type metricSet struct {
	requests  *prometheus.HistogramVec
	closes    prometheus.Histogram
	refusals  *prometheus.CounterVec
	reselects prometheus.Counter
	heals     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, m *Manager) *metricSet {
	s := &metricSet{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vwire_manager_request_duration_seconds", Help: "Request handling time, by result (gRPC code).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"code"}),
		closes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vwire_manager_close_duration_seconds", Help: "Close handling time.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vwire_policy_refusals_total", Help: "Requests and registrations the policy refused.",
		}, []string{"action"}),
		reselects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vwire_manager_reselections_total", Help: "Connections moved to another endpoint after their refresh failed.",
		}),
		heals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vwire_manager_heals_total", Help: "Connections the manager rebuilt on its own after a next hop went away or came back.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.requests, s.closes, s.refusals, s.reselects, s.heals, connCollector{m})
	}
	return s
}

func (s *metricSet) observeRequest(start time.Time, err error) {
	s.requests.WithLabelValues(status.Code(err).String()).Observe(time.Since(start).Seconds())
}

// connCollector reports the live connections by service and mechanism at
// scrape time, from the manager's own table.
type connCollector struct{ m *Manager }

var connDesc = prometheus.NewDesc("vwire_manager_connections", "Live connections, by network service, mechanism and state.",
	[]string{"service", "mechanism", "state"}, nil)

func (c connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- connDesc }

func (c connCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ svc, mech, state string }
	counts := map[key]int{}
	c.m.mu.Lock()
	for _, conn := range c.m.conns {
		counts[key{conn.conn.GetNetworkService(), conn.conn.GetMechanism().GetType(), conn.conn.GetState().String()}]++
	}
	c.m.mu.Unlock()
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(connDesc, prometheus.GaugeValue, float64(n), k.svc, k.mech, k.state)
	}
}
