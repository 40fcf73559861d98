package vpp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/core"
)

// apiBuckets resolve VPP API latency from a fast reply (tens of µs over the
// socket) to a main thread stalled for seconds, which is what govpp's
// health check declares dead.
var apiBuckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// Error kinds of vwire_vpp_api_errors_total.
const (
	ErrKindVPP          = "vpp_error"    // VPP answered with a negative retval
	ErrKindTimeout      = "timeout"      // no answer before the deadline
	ErrKindCanceled     = "canceled"     // the caller gave up
	ErrKindDisconnected = "disconnected" // govpp had no connection to VPP
	ErrKindOther        = "other"
)

// Connection states, as vwire_vpp_connection_* label them.
var connStates = map[core.ConnectionState]string{
	core.Connected:     "connected",
	core.NotResponding: "not_responding",
	core.Disconnected:  "disconnected",
	core.Failed:        "failed",
}

// Metrics are the VPP dataplane's Prometheus series: the latency and
// failures of every binary API call the Client makes, govpp's connection
// events and its health-check misses. The caller creates them, hands them to
// Config.Metrics (and GovppLogger) and registers them; a nil *Metrics records
// nothing.
type Metrics struct {
	apiSeconds   *prometheus.HistogramVec
	apiErrors    *prometheus.CounterVec
	connEvents   *prometheus.CounterVec
	connState    *prometheus.GaugeVec
	healthMisses prometheus.Counter
	restoreSecs  prometheus.Histogram
	restoredVW   *prometheus.CounterVec
	// The admission of vWire operations (admission.go), by op kind.
	admWaiting   *prometheus.GaugeVec
	admInFlight  prometheus.Gauge
	admWait      *prometheus.HistogramVec
	admAbandoned *prometheus.CounterVec
}

// NewMetrics returns unregistered VPP metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		apiSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vwire_vpp_api_seconds",
			Help:    "Latency of VPP binary API calls (a dump: until its last details message), by message.",
			Buckets: apiBuckets,
		}, []string{"msg"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vwire_vpp_api_errors_total",
			Help: "VPP binary API calls that failed, by message and kind (vpp_error, timeout, canceled, disconnected, other).",
		}, []string{"msg", "kind"}),
		connEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vwire_vpp_connection_events_total",
			Help: "govpp connection events, by the state they report (connected, not_responding, disconnected, failed).",
		}, []string{"state"}),
		connState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vwire_vpp_connection_state",
			Help: "1 for the state govpp last reported for the VPP connection, 0 for the others.",
		}, []string{"state"}),
		healthMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vwire_vpp_health_check_misses_total",
			Help: "govpp health-check probes VPP did not answer in time (--vpp-health-timeout).",
		}),
		restoreSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vwire_vpp_restore_seconds",
			Help:    "Time to rebuild every vWire once the connection to VPP came back (a VPP restart): from the reconnect to the last vWire rebuilt.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250},
		}),
		restoredVW: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vwire_vpp_restored_vwires_total",
			Help: "vWires rebuilt after the connection to VPP came back, by result (ok, failed, refused: no room in the reserved memif pool).",
		}, []string{"result"}),
		admWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vwire_vpp_admission_waiting",
			Help: "vWire operations waiting for a slot to talk to VPP (--vpp-max-in-flight), by kind (remove, build).",
		}, []string{"op"}),
		admInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vwire_vpp_admission_in_flight",
			Help: "vWire operations holding a slot to talk to VPP (at most --vpp-max-in-flight).",
		}),
		admWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vwire_vpp_admission_wait_seconds",
			Help:    "Time vWire operations waited for a slot to talk to VPP before they got one, by kind (remove, build); 0 for those that found one free.",
			Buckets: apiBuckets,
		}, []string{"op"}),
		admAbandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vwire_vpp_admission_abandoned_total",
			Help: "vWire operations whose caller gave up while they waited for a slot: they sent VPP nothing, by kind (remove, build).",
		}, []string{"op"}),
	}
	for k := range opKinds {
		m.admWaiting.WithLabelValues(k.String())
		m.admWait.WithLabelValues(k.String())
		m.admAbandoned.WithLabelValues(k.String())
	}
	m.restoredVW.WithLabelValues("ok")
	m.restoredVW.WithLabelValues("failed")
	m.restoredVW.WithLabelValues("refused")
	// Every state from the start, so that a scrape shows the zeros.
	for _, s := range connStates {
		m.connEvents.WithLabelValues(s)
		m.connState.WithLabelValues(s)
	}
	return m
}

// collectors are m's series, for Describe and Collect.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.apiSeconds, m.apiErrors, m.connEvents, m.connState, m.healthMisses, m.restoreSecs, m.restoredVW,
		m.admWaiting, m.admInFlight, m.admWait, m.admAbandoned}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// call records one API call.
func (m *Metrics) call(msg string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.apiSeconds.WithLabelValues(msg).Observe(took.Seconds())
	if err != nil {
		m.apiErrors.WithLabelValues(msg, ErrorKind(err)).Inc()
	}
}

// connEvent records one govpp connection event.
func (m *Metrics) connEvent(s core.ConnectionState) {
	if m == nil {
		return
	}
	name := stateName(s)
	m.connEvents.WithLabelValues(name).Inc()
	for _, other := range connStates {
		v := 0.0
		if other == name {
			v = 1
		}
		m.connState.WithLabelValues(other).Set(v)
	}
}

// restored records one restore: how long it took and how many vWires it
// rebuilt, failed to, or refused (no room in the memif pool).
func (m *Metrics) restored(took time.Duration, ok, failed, refused int) {
	if m == nil {
		return
	}
	m.restoreSecs.Observe(took.Seconds())
	m.restoredVW.WithLabelValues("ok").Add(float64(ok))
	m.restoredVW.WithLabelValues("failed").Add(float64(failed))
	m.restoredVW.WithLabelValues("refused").Add(float64(refused))
}

// waiting counts operations of kind op starting (+1) or ending (-1) a
// wait for admission.
func (m *Metrics) waiting(op opKind, delta float64) {
	if m != nil {
		m.admWaiting.WithLabelValues(op.String()).Add(delta)
	}
}

// admitted records an operation let into VPP after waiting that long.
func (m *Metrics) admitted(op opKind, waited time.Duration) {
	if m != nil {
		m.admInFlight.Inc()
		m.admWait.WithLabelValues(op.String()).Observe(waited.Seconds())
	}
}

// released records an operation done with VPP.
func (m *Metrics) released() {
	if m != nil {
		m.admInFlight.Dec()
	}
}

// abandoned records an operation whose caller gave up while it waited.
func (m *Metrics) abandoned(op opKind) {
	if m != nil {
		m.admAbandoned.WithLabelValues(op.String()).Inc()
	}
}

func (m *Metrics) healthMiss() {
	if m != nil {
		m.healthMisses.Inc()
	}
}

func stateName(s core.ConnectionState) string {
	if name, ok := connStates[s]; ok {
		return name
	}
	return strings.ToLower(s.String())
}

// ErrorKind classifies an error of a VPP API call for
// vwire_vpp_api_errors_total.
func ErrorKind(err error) string {
	var vppErr api.VPPApiError
	switch {
	case errors.As(err, &vppErr):
		return ErrKindVPP
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, core.ErrReplyTimeout):
		return ErrKindTimeout
	case errors.Is(err, context.Canceled):
		return ErrKindCanceled
	case errors.Is(err, core.ErrNotConnected), errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		return ErrKindDisconnected
	}
	return ErrKindOther
}
