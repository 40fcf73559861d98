package kernel

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"golang.org/x/sys/unix"
)

// BenchmarkConnectSteps times each step of a local vWire's Connect (one
// pair, see direct.go) on its own, p50 per step: the route sockets in the
// two workloads' namespaces (rtnl.go), the look-up that finds no pair,
// the pair's record (records.go), its creation with the look-up of its
// client end, the client's end (alias, addresses, routes: one exchange),
// the endpoint's end (alias and up, addresses, routes), the Close (set
// down and into the group: one request) and the record's removal (the
// reaper's, once the pair is deleted). The pairs are deleted after each
// round, outside the timing.
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
	// The first round's sockets are held on, as they are while another
	// vWire lives in those namespaces; VWIRE_STEPS_COLD=1 leaves them to
	// be opened every round (no vWire in either namespace between two).
	held := os.Getenv("VWIRE_STEPS_COLD") == ""
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
		h, err := d.openPair(p)
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
		c, err := d.addPair(h, p)
		if err != nil {
			b.Fatal(err)
		}
		lap("create-pair")
		if err := configureEnd(h.in.rtnl, c.Attrs().Index, p.in, false); err != nil {
			b.Fatal(err)
		}
		lap("client-end")
		if err := configureEnd(h.out.rtnl, c.Attrs().ParentIndex, p.out, true); err != nil {
			b.Fatal(err)
		}
		lap("endpoint-end")
		if errs, _, err := h.in.rtnl.exchange(setLinkReq(c.Attrs().Index, "", 0, unix.IFF_UP, reapGroup)); err != nil || errs[0] != nil {
			b.Fatal(err, errs)
		}
		lap("close")
		if err := d.recs.remove(rec); err != nil { // the reaper's, after the pass
			b.Fatal(err)
		}
		lap("unrecord")
		b.StopTimer()
		if errs, _, err := h.in.rtnl.exchange(delLinkReq(c.Attrs().Index)); err != nil || errs[0] != nil {
			b.Fatal(err, errs)
		}
		if held {
			d.conns.hold(id, h.in, h.out) // as a live vWire in each namespace would
			held = false
		}
		h.close()
		b.StartTimer()
	}
	for _, s := range steps {
		slices.Sort(took[s])
		b.ReportMetric(float64(took[s][len(took[s])/2])/float64(time.Millisecond), s+"-p50-ms")
	}
}
