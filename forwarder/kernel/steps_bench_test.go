package kernel

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// BenchmarkConnectSteps times each step of a local vWire's Connect (one
// pair, see direct.go) on its own, p50 per step: the netlink handles in
// the two workloads' namespaces, the look-up that finds no pair, the
// pair's record (records.go), its creation, the client's end (alias,
// addresses, up, routes), the endpoint's end, the Close (set down, group)
// and the record's removal (the reaper's, once the pair is deleted). The
// pairs are deleted after each round, outside the timing.
//
// Run it as root: go test -run '^$' -bench ConnectSteps ./forwarder/kernel/
func BenchmarkConnectSteps(b *testing.B) {
	needRoot(b)
	_, nodePath := netnsFor(b, "node")
	_, clientPath := netnsFor(b, "nsc")
	_, epPath := netnsFor(b, "nse")
	d := newDP(b, nodePath, "", 0)
	steps := []string{"open-handles", "lookup", "record", "create-pair", "client-end", "endpoint-end", "close", "unrecord"}
	took := map[string][]time.Duration{}
	seq := 0
	for b.Loop() {
		seq++
		id := fmt.Sprintf("steps-%d", seq)
		cc := ipContext("169.254.30.1", "169.254.30.2")
		in, out := kernelMech(clientPath, "nsm-c"), kernelMech(epPath, "nsm-e")
		p, _, err := directFor(id, &networkservice.Connection{Mechanism: in, Context: cc}, &networkservice.Connection{Mechanism: out, Context: cc}, DefaultMTU)
		if err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		lap := func(step string) {
			now := time.Now()
			took[step] = append(took[step], now.Sub(t))
			t = now
		}
		h, err := openPair(p)
		if err != nil {
			b.Fatal(err)
		}
		lap("open-handles")
		directIntact(h, id, p)
		lap("lookup")
		rec, err := d.recs.write(id, h, p)
		if err != nil {
			b.Fatal(err)
		}
		lap("record")
		if err := d.addPair(h, p); err != nil {
			b.Fatal(err)
		}
		lap("create-pair")
		c, err := h.in.LinkByName(p.in.name)
		if err == nil {
			err = configurePeerWith(h.in, c, p.in)
		}
		if err != nil {
			b.Fatal(err)
		}
		lap("client-end")
		if err := configurePeer(h.out, c.Attrs().ParentIndex, p.out); err != nil {
			b.Fatal(err)
		}
		lap("endpoint-end")
		if err := h.in.LinkSetDown(c); err != nil {
			b.Fatal(err)
		}
		if err := h.in.LinkSetGroup(c, reapGroup); err != nil {
			b.Fatal(err)
		}
		lap("close")
		if err := d.recs.remove(rec); err != nil { // the reaper's, after the pass
			b.Fatal(err)
		}
		lap("unrecord")
		b.StopTimer()
		if err := h.in.LinkDel(c); err != nil {
			b.Fatal(err)
		}
		h.close()
		b.StartTimer()
	}
	for _, s := range steps {
		slices.Sort(took[s])
		b.ReportMetric(float64(took[s][len(took[s])/2])/float64(time.Millisecond), s+"-p50-ms")
	}
}
