package forwarder

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// vwireDesc reports a dataplane's per-vWire counters (VPP's interface
// statistics) as Prometheus series, read at scrape time.
var vwireDesc = prometheus.NewDesc("vwire_forwarder_vwire_counter",
	"Per-vWire dataplane counters (rx/tx packets and bytes, drops), by connection and network service.",
	[]string{"conn", "service", "counter"}, nil)

// metricsSource is a dataplane that counts per vWire (the VPP dataplane).
type metricsSource interface {
	Metrics(id string) map[string]string
}

// Collector returns the forwarder's Prometheus collector: live vWires, and
// each vWire's counters when the dataplane keeps them.
func (f *Forwarder) Collector() prometheus.Collector { return collector{f} }

type collector struct{ f *Forwarder }

var liveDesc = prometheus.NewDesc("vwire_forwarder_vwires", "Live vWires on this forwarder.", nil, nil)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- liveDesc
	ch <- vwireDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	type entry struct{ id, service string }
	c.f.mu.Lock()
	entries := make([]entry, 0, len(c.f.conns))
	for id, v := range c.f.conns {
		entries = append(entries, entry{id, v.in.GetNetworkService()})
	}
	c.f.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(liveDesc, prometheus.GaugeValue, float64(len(entries)))
	ms, ok := c.f.dp.(metricsSource)
	if !ok {
		return
	}
	for _, e := range entries {
		for name, val := range ms.Metrics(e.id) {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(vwireDesc, prometheus.CounterValue, v, e.id, e.service, name)
		}
	}
}
