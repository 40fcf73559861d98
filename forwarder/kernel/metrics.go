package kernel

import "github.com/prometheus/client_golang/prometheus"

// wgInfoDesc says which WireGuard the kernel dataplane uses, and how many
// userspace devices it runs.
var (
	wgInfoDesc = prometheus.NewDesc("vwire_forwarder_wireguard_info",
		"The WireGuard the kernel dataplane uses for WIREGUARD vWires: kernel, userspace (wireguard-go in the forwarder) or none; always 1.",
		[]string{"implementation"}, nil)
	wgUserDesc = prometheus.NewDesc("vwire_forwarder_wireguard_userspace_devices",
		"WireGuard devices the forwarder runs in its own process (userspace WireGuard).", nil, nil)
)

// Collector returns the kernel dataplane's Prometheus collector.
func (d *Dataplane) Collector() prometheus.Collector { return wgCollector{d} }

type wgCollector struct{ d *Dataplane }

func (c wgCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- wgInfoDesc
	ch <- wgUserDesc
}

func (c wgCollector) Collect(ch chan<- prometheus.Metric) {
	impl := c.d.WireGuard()
	if impl == "" {
		impl = "none"
	}
	ch <- prometheus.MustNewConstMetric(wgInfoDesc, prometheus.GaugeValue, 1, impl)
	n := 0
	if u, ok := c.d.wg.(*wgUser); ok {
		n = u.Len()
	}
	ch <- prometheus.MustNewConstMetric(wgUserDesc, prometheus.GaugeValue, float64(n))
}
