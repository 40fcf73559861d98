package vpp

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// TestMoveKernelSideOnTrunk moves a KERNEL→WireGuard→KERNEL vWire to
// another endpoint, with new addresses, as a heal does: each node keeps its
// WireGuard side and rebuilds its KERNEL side on the trunk (a new VLAN), and
// the moved vWire carries ping; Close leaves VPP and the trunk as before.
func TestMoveKernelSideOnTrunk(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	n1, n2 := twoNodes(t)
	before1, before2 := interfacesOf(t, n1), interfacesOf(t, n2)
	client := newWorkload(t, "kernel", "nsc", "172.16.150.1")
	ep1 := newWorkload(t, "kernel", "nse", "172.16.150.2")
	cc := ipCtx(client.addr, ep1.addr)
	c := &networkservice.Connection{Payload: payload.IP, Context: cc}
	in, err := n1.Accept(ctx, "mv-a", c, []*networkservice.Mechanism{client.clientMech()})
	if err != nil {
		t.Fatal(err)
	}
	offers, err := n1.Offer(ctx, "mv-a", c, true)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == wireguard.Type })
	if i < 0 {
		t.Fatalf("wireguard not offered: %v", offers)
	}
	wg, err := n2.Accept(ctx, "mv-b", c, offers[i:i+1])
	if err != nil {
		t.Fatal(err)
	}
	epMech := func(w *workload) *networkservice.Mechanism {
		return kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + w.ns.path})
	}
	connect := func(ep *workload, cc *networkservice.ConnectionContext) {
		t.Helper()
		if err := n2.Connect(ctx, "mv-b", &networkservice.Connection{Mechanism: wg, Context: cc, Payload: payload.IP},
			&networkservice.Connection{Mechanism: epMech(ep), Context: cc, Payload: payload.IP}); err != nil {
			t.Fatal(err)
		}
		if err := n1.Connect(ctx, "mv-a", &networkservice.Connection{Mechanism: in, Context: cc, Payload: payload.IP},
			&networkservice.Connection{Mechanism: wg, Context: cc, Payload: payload.IP}); err != nil {
			t.Fatal(err)
		}
	}
	connect(ep1, cc)
	eventually(t, 20*time.Second, func() error { return client.ping(t, ep1.addr) })

	// The heal: the same connection ids, another endpoint, new addresses.
	ep2 := newWorkload(t, "kernel", "nse", "172.16.151.2")
	client.addr = "172.16.151.1"
	vlans := func(d *Dataplane) map[string]uint16 {
		v, err := d.host.trunkVlans()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	was1, was2 := vlans(n1), vlans(n2)
	connect(ep2, ipCtx(client.addr, ep2.addr))
	if now := vlans(n2); len(now) != 1 || len(was2) != 1 || slices.Equal(mapValues(now), mapValues(was2)) {
		t.Errorf("node 2's trunk VLANs %v after the move, %v before: want one, another", now, was2)
	}
	t.Logf("trunk VLANs: node 1 %v → %v, node 2 %v → %v", was1, vlans(n1), was2, vlans(n2))
	eventually(t, 20*time.Second, func() error { return client.ping(t, ep2.addr) })
	eventually(t, 10*time.Second, func() error { return ep2.ping(t, client.addr) })

	for _, x := range []struct {
		d      *Dataplane
		id     string
		before string
	}{{n1, "mv-a", before1}, {n2, "mv-b", before2}} {
		if err := x.d.Disconnect(ctx, x.id); err != nil {
			t.Fatal(err)
		}
		if got := interfacesOf(t, x.d); got != x.before {
			t.Errorf("after close:\n%s\nbefore:\n%s", got, x.before)
		}
		if v := vlans(x.d); len(v) != 0 || x.d.trunk.inUse() != 0 {
			t.Errorf("trunk VLANs after close: %v in Linux, %d in use", v, x.d.trunk.inUse())
		}
	}
}

func mapValues[K comparable, V any](m map[K]V) []V {
	var out []V
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestStaleL3XCOnReusedIndex builds a remote KERNEL vWire whose client
// side's sub-interface gets the index of a deleted interface that still
// has a cross-connect (VPP 25.10 keeps an l3xc when its Rx goes, and a
// Connect whose l3xc_update was answered after its caller gave up leaves
// one when it rolls back): the vWire must carry ping. Before CreateL3XCs
// cleared the Rx first, l3xc_update took the new path without restacking
// the forwarding, every packet the client sent was dropped on its
// sub-interface, and so were 12 of the soak's 1,000 KERNEL vWires, all
// remote (a local one's ARP resolution restacks it).
func TestStaleL3XCOnReusedIndex(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	n1, n2 := twoNodes(t)
	cl := n1.vpp
	trunk := n1.trunk.ifIndex()
	x, err := cl.CreateVlanSubif(ctx, trunk, 4000)
	if err != nil {
		t.Fatal(err)
	}
	y, err := cl.CreateVlanSubif(ctx, trunk, 4001)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateL3XC(ctx, L3XC{Rx: x, Tx: y, NextHop: netip.MustParseAddr("10.99.0.1")}); err != nil {
		t.Fatal(err)
	}
	// y first: VPP gives the last index freed to the next interface made.
	for _, i := range []SwIfIndex{y, x} {
		if err := cl.DeleteSubif(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	xcs, err := cl.ListL3XCs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(xcs, func(c L3XC) bool { return c.Rx == x }) {
		t.Fatalf("VPP removed the l3xc of deleted interface %d (%v): this test's premise no longer holds", x, xcs)
	}

	v := &trunkVWire{remote: true, client: newNS(t, "nsc"), ep: newNS(t, "nse"), id: "stale-xc",
		name: "nsm-c", ename: "nsm-e", caddr: "172.16.160.1", eaddr: "172.16.160.2"}
	if err := v.connect(ctx, n1, n2); err != nil {
		t.Fatal(err)
	}
	n1.mu.Lock()
	got := n1.conns[v.id].in
	n1.mu.Unlock()
	if got != x {
		t.Fatalf("the client side got index %d, not the freed %d: this test's premise (VPP reuses the index) no longer holds", got, x)
	}
	// The endpoint must answer, not VPP: the client side has the
	// endpoint's address too (for ARP), and without its l3xc VPP would
	// answer the echo requests itself.
	eventually(t, 20*time.Second, func() error {
		before := inEchos(t, v.ep)
		out, err := exec.Command("ip", "netns", "exec", v.client.name, "ping", "-c", "1", "-W", "1", v.eaddr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s over a client side at a reused index: %v\n%s\n%s", v.eaddr, err, out, vppCLI(t, n1, "show l3xc"))
		}
		if inEchos(t, v.ep) == before {
			return fmt.Errorf("ping %s answered, but not by the endpoint\n%s", v.eaddr, vppCLI(t, n1, "show l3xc"))
		}
		return nil
	})
	if err := v.close(ctx, n1, n2); err != nil {
		t.Fatal(err)
	}
	if xcs, err = cl.ListL3XCs(ctx); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(xcs, func(c L3XC) bool { return c.Rx == x }); i >= 0 {
		t.Errorf("after close, an l3xc on %d is left: %v", x, xcs[i])
	}
}

// inEchos is the echo requests ns's kernel has taken (Icmp InEchos).
func inEchos(t testing.TB, ns itNS) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.name, "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "InEchos"); i > 0 && i < len(f) {
			n, err := strconv.Atoi(f[i])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Icmp InEchos in %s's /proc/net/snmp", ns.name)
	return 0
}
