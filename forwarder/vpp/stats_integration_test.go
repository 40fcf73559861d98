package vpp

import (
	"context"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/api"
)

// listCounting counts a stats segment's directory listings.
type listCounting struct {
	statsReader
	lists atomic.Int32
}

func (l *listCounting) ListStats(p ...string) ([]adapter.StatIdentifier, error) {
	l.lists.Add(1)
	return l.statsReader.ListStats(p...)
}

// checkMetrics checks, on a real VPP after traffic went through vWire id,
// that its metrics hold the counters govpp's full read of the segment
// gives (taken before and after: counters only grow), that traffic was
// counted, and that three reads list the directory once at most (see
// ifCounters).
func checkMetrics(t *testing.T, d *Dataplane, id string) {
	t.Helper()
	d.mu.Lock()
	st := d.conns[id]
	d.mu.Unlock()
	if st == nil || d.statsConn == nil {
		t.Fatalf("vWire %s: no state or no stats segment", id)
	}
	d.statsMu.Lock()
	lc := &listCounting{statsReader: d.stats.s}
	d.stats.s = lc
	d.statsMu.Unlock()
	defer func() {
		d.statsMu.Lock()
		d.stats.s = lc.statsReader
		d.statsMu.Unlock()
	}()
	full := func() api.InterfaceCounters {
		var all api.InterfaceStats
		if err := d.statsConn.GetInterfaceStats(&all); err != nil {
			t.Fatal(err)
		}
		if int(st.in) >= len(all.Interfaces) {
			t.Fatalf("govpp's read has no interface %d", st.in)
		}
		return all.Interfaces[st.in]
	}
	for range 3 {
		before := full()
		m := d.Metrics(id)
		after := full()
		for _, c := range []struct {
			key           string
			before, after uint64
		}{
			{"rx_packets", before.Rx.Packets, after.Rx.Packets},
			{"rx_bytes", before.Rx.Bytes, after.Rx.Bytes},
			{"tx_packets", before.Tx.Packets, after.Tx.Packets},
			{"tx_bytes", before.Tx.Bytes, after.Tx.Bytes},
		} {
			v, err := strconv.ParseUint(m[c.key], 10, 64)
			if err != nil {
				t.Fatalf("metrics %v: %s: %v", m, c.key, err)
			}
			if v == 0 || v < c.before || v > c.after {
				t.Fatalf("metrics %v: %s %d, govpp's read %d before and %d after (and traffic went through)", m, c.key, v, c.before, c.after)
			}
		}
	}
	if n := lc.lists.Load(); n > 1 {
		t.Fatalf("3 reads of a vWire's metrics listed the stats directory %d times", n)
	}
}

// BenchmarkVWireMetrics measures one read of a vWire's counters on a real
// VPP (VPP_BIN) after an interface was created since the last read, as on
// a node building vWires: through ifCounters (vwire) and through govpp's
// GetInterfaceStats, which Metrics used before (govpp: it lists the whole
// directory again once its epoch moved). The memif made and removed
// between reads is outside the timer.
func BenchmarkVWireMetrics(b *testing.B) {
	needVPP(b)
	ctx := context.Background()
	d := startNode(b, newNS(b, "node"), "")
	if err := d.Connect(ctx, "vm", conn(memifMech("vm-c.sock"), payload.Ethernet), conn(memifMech("vm-e.sock"), payload.Ethernet)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Disconnect(ctx, "vm") })
	st := d.conns["vm"]
	sock, err := d.vpp.CreateMemifSocket(ctx, filepath.Join(d.memifDir, "vm-churn.sock"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.vpp.DeleteMemifSocket(ctx, sock) })
	for _, mode := range []string{"vwire", "govpp"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				idx, err := d.vpp.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: uint32(i)})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				d.statsMu.Lock()
				if mode == "vwire" {
					_, err = d.stats.read(st.in, st.out)
				} else {
					err = d.statsConn.GetInterfaceStats(&api.InterfaceStats{})
				}
				d.statsMu.Unlock()
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if err := d.vpp.DeleteMemif(ctx, idx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
