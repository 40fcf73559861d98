package vpp

import (
	"fmt"
	"strconv"

	"go.fd.io/govpp/api"
)

// statsReader is what the dataplane needs of VPP's stats segment
// (*core.StatsConnection has it).
type statsReader interface {
	GetInterfaceStats(*api.InterfaceStats) error
}

// Counters are one interface's packet counters.
type Counters struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// Drops counts packets VPP dropped on the interface, and receive and
	// transmit errors.
	Drops uint64
}

// interfaceCounters reads the counters of the given interfaces from the
// stats segment; interfaces it does not list are left out of the result.
func interfaceCounters(s statsReader, idx ...SwIfIndex) (map[SwIfIndex]Counters, error) {
	var st api.InterfaceStats
	if err := s.GetInterfaceStats(&st); err != nil {
		return nil, fmt.Errorf("read interface stats: %w", err)
	}
	want := map[SwIfIndex]bool{}
	for _, i := range idx {
		want[i] = true
	}
	out := map[SwIfIndex]Counters{}
	for _, ic := range st.Interfaces {
		i := SwIfIndex(ic.InterfaceIndex)
		if !want[i] {
			continue
		}
		out[i] = Counters{
			RxPackets: ic.Rx.Packets, RxBytes: ic.Rx.Bytes,
			TxPackets: ic.Tx.Packets, TxBytes: ic.Tx.Bytes,
			Drops: ic.Drops + ic.RxErrors + ic.TxErrors,
		}
	}
	return out, nil
}

// metricsOf renders a vWire's counters as path segment metrics, seen from
// the vWire's client: rx is what entered the vWire on this node's incoming
// side, tx what left it there; drops add up both sides.
func metricsOf(in, out Counters) map[string]string {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return map[string]string{
		"rx_packets": u(in.RxPackets),
		"rx_bytes":   u(in.RxBytes),
		"tx_packets": u(in.TxPackets),
		"tx_bytes":   u(in.TxBytes),
		"drops":      u(in.Drops + out.Drops),
	}
}
