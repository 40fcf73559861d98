package registry

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vwire/vwire/registry/store"
)

// metricSet is the registry's share of its process's Prometheus metrics.
type metricSet struct {
	watchers atomic.Int64
	// watchEvents counts the store changes delivered to Find watch
	// streams: each one woke a stream's goroutine.
	watchEvents prometheus.Counter
	refusals    prometheus.Counter
	interdomain *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) *metricSet {
	ms := &metricSet{refusals: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vwire_registry_policy_refusals_total", Help: "Registrations and look-ups the policy refused.",
	}), interdomain: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vwire_registry_interdomain_calls_total", Help: "Calls passed to other registry domains' registries, by result (ok, refused, unavailable, lookup_failed).",
	}, []string{"result"}), watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vwire_registry_watch_events_total", Help: "Store changes delivered to Find watch streams; each woke one stream. A watch naming a service is woken only by changes to that service's endpoints.",
	})}
	if reg != nil {
		reg.MustRegister(ms.refusals, ms.interdomain, ms.watchEvents, registryCollector{s})
	}
	return ms
}

var (
	entriesDesc  = prometheus.NewDesc("vwire_registry_entries", "Records in the registry, by kind (ns, nse).", []string{"kind"}, nil)
	watchersDesc = prometheus.NewDesc("vwire_registry_watchers", "Open Find watch streams.", nil, nil)
)

// registryCollector counts entries at scrape time from the store.
type registryCollector struct{ s *Server }

func (c registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- entriesDesc
	ch <- watchersDesc
}

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, kind := range []store.Kind{store.KindService, store.KindEndpoint} {
		if entries, err := c.s.store.List(ctx, kind, store.All); err == nil {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(len(entries)), string(kind))
		}
	}
	ch <- prometheus.MustNewConstMetric(watchersDesc, prometheus.GaugeValue, float64(c.s.metrics.watchers.Load()))
}
