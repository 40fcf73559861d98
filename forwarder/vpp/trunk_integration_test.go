package vpp

import (
	"context"
	"slices"
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
