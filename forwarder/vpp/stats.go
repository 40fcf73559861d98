package vpp

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"go.fd.io/govpp/adapter"
)

// statsReader is what the dataplane needs of VPP's stats segment
// (govpp's adapter.StatsAPI has it).
type statsReader interface {
	ListStats(patterns ...string) ([]adapter.StatIdentifier, error)
	PrepareDirOnIndex(indexes ...uint32) (*adapter.StatDir, error)
}

// Counters are one interface's packet counters.
type Counters struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// Drops counts packets VPP dropped on the interface, and receive and
	// transmit errors.
	Drops uint64
}

// The stats segment's interface counters a vWire's metrics are made of.
const (
	statRx      = "/if/rx"
	statTx      = "/if/tx"
	statDrops   = "/if/drops"
	statRxError = "/if/rx-error"
	statTxError = "/if/tx-error"
)

var ifCounterNames = []string{statRx, statTx, statDrops, statRxError, statTxError}

// ifCounters reads ifCounterNames, and nothing else, from the stats
// segment, by their directory indexes, listed once: VPP keeps an entry at
// its index for as long as it runs (a counter's vector may move, the
// entry then points at the new one). Why not govpp's GetInterfaceStats:
// it reads all twenty interface counters and every interface's name, and
// lists the whole directory (thousands of entries, each matched against a
// regular expression) again whenever the directory's epoch moved, which
// creating an interface does: on a node building vWires that was every
// Request, about 1 ms of a local memif vWire's 3.6 (vwire bench
// vpp-scale). Not safe for concurrent use (Dataplane.statsMu).
type ifCounters struct {
	s   statsReader
	idx []uint32 // directory indexes of ifCounterNames, in that order; nil until listed
}

// ifCounterReads bounds the attempts of one read: a listing or a read VPP
// changed the directory under (ErrStatsDataBusy), or a read that found
// other entries at the listed indexes (a VPP that restarted), lists again.
const ifCounterReads = 3

// read returns the counters of the given interfaces; interfaces the
// segment does not count (yet) are left out of the result.
func (r *ifCounters) read(idx ...SwIfIndex) (map[SwIfIndex]Counters, error) {
	var err error
	for range ifCounterReads {
		if r.idx == nil {
			if err = r.list(); err != nil {
				continue // VPP may have changed the directory meanwhile
			}
		}
		var dir *adapter.StatDir
		if dir, err = r.s.PrepareDirOnIndex(r.idx...); err != nil {
			r.idx = nil
			continue
		}
		var out map[SwIfIndex]Counters
		if out, err = r.countersOf(dir, idx); err != nil {
			r.idx = nil
			continue
		}
		return out, nil
	}
	return nil, fmt.Errorf("read interface stats: %w", err)
}

// list finds the directory index of each of ifCounterNames.
func (r *ifCounters) list() error {
	patterns := make([]string, len(ifCounterNames))
	for i, n := range ifCounterNames {
		patterns[i] = "^" + regexp.QuoteMeta(n) + "$"
	}
	ids, err := r.s.ListStats(patterns...)
	if err != nil {
		return fmt.Errorf("list interface counters: %w", err)
	}
	found := make([]uint32, len(ifCounterNames))
	for i, n := range ifCounterNames {
		j := slices.IndexFunc(ids, func(id adapter.StatIdentifier) bool { return string(id.Name) == n })
		if j < 0 {
			return fmt.Errorf("list interface counters: the stats segment has no %s", n)
		}
		found[i] = ids[j].Index
	}
	r.idx = found
	return nil
}

// countersOf takes the counters of idx from dir, the entries read at
// r.idx; it fails when those are not ifCounterNames.
func (r *ifCounters) countersOf(dir *adapter.StatDir, idx []SwIfIndex) (map[SwIfIndex]Counters, error) {
	if dir == nil || len(dir.Entries) != len(ifCounterNames) {
		return nil, fmt.Errorf("the stats segment's directory changed: %d entries read of %d", entryCount(dir), len(ifCounterNames))
	}
	out := map[SwIfIndex]Counters{}
	for _, i := range idx {
		var c Counters
		counted := false
		for k, e := range dir.Entries {
			if string(e.Name) != ifCounterNames[k] {
				return nil, fmt.Errorf("the stats segment's directory changed: %s where %s was", e.Name, ifCounterNames[k])
			}
			switch d := e.Data.(type) {
			case adapter.CombinedCounterStat:
				v, ok := combinedAt(d, int(i))
				counted = counted || ok
				switch string(e.Name) {
				case statRx:
					c.RxPackets, c.RxBytes = v[0], v[1]
				case statTx:
					c.TxPackets, c.TxBytes = v[0], v[1]
				}
			case adapter.SimpleCounterStat:
				v, ok := simpleAt(d, int(i))
				counted = counted || ok
				c.Drops += v
			default:
				return nil, fmt.Errorf("stats segment %s: %T, not a counter vector", e.Name, e.Data)
			}
		}
		if counted {
			out[i] = c
		}
	}
	return out, nil
}

func entryCount(dir *adapter.StatDir) int {
	if dir == nil {
		return 0
	}
	return len(dir.Entries)
}

// combinedAt sums counter i over VPP's threads; ok is false when no
// thread counts i.
func combinedAt(s adapter.CombinedCounterStat, i int) (v [2]uint64, ok bool) {
	for _, w := range s {
		if i >= 0 && i < len(w) {
			v[0] += w[i][0]
			v[1] += w[i][1]
			ok = true
		}
	}
	return v, ok
}

// simpleAt sums counter i over VPP's threads; ok is false when no thread
// counts i.
func simpleAt(s adapter.SimpleCounterStat, i int) (v uint64, ok bool) {
	for _, w := range s {
		if i >= 0 && i < len(w) {
			v += uint64(w[i])
			ok = true
		}
	}
	return v, ok
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
