package vpp

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
)

func TestUplinkAtStart(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	snap := n.vpp.snapshot()
	if !strings.Contains(snap, `host-eth0 tag="vwire/uplink/eth0" up=true`) {
		t.Fatalf("uplink not made:\n%s", snap)
	}
	if n.dp.tunnel.String() != "192.0.2.1" || n.dp.underlayMTU != 1500 {
		t.Fatalf("tunnel %s mtu %d", n.dp.tunnel, n.dp.underlayMTU)
	}
}

func TestLocalKernelToKernel(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	in := conn(kernelMech(nsClient, "nsm-c"), payload.IP)
	out := conn(kernelMech(nsServer, "nsm-e"), payload.IP)
	if err := n.dp.Connect(ctx, "conn-1", in, out); err != nil {
		t.Fatal(err)
	}
	want := []string{
		// client side: a shared IP table (both families: the first
		// vWire makes it), veth + a sub-interface of the KERNEL trunk,
		// tagged, into the table, the endpoint's address, a route to the
		// client, mtu, up
		"ip_table_add_del", "ip_table_add_del", "create_vlan_subif", "sw_interface_tag_add_del",
		"sw_interface_set_table", "sw_interface_add_del_address", "ip_route_add_del", "sw_interface_set_mtu", "sw_interface_set_flags",
		// endpoint side, the same, in a second table: its route is
		// the client side's address
		"ip_table_add_del", "ip_table_add_del", "create_vlan_subif", "sw_interface_tag_add_del",
		"sw_interface_set_table", "sw_interface_add_del_address", "ip_route_add_del", "sw_interface_set_mtu", "sw_interface_set_flags",
		// IP payload: l3xc both ways, each Rx cleared of one a deleted
		// interface of the same index left (see CreateL3XCs)
		"l3xc_del", "l3xc_del", "l3xc_update", "l3xc_update",
	}
	if got := n.vpp.requests(false); !slices.Equal(got, want) {
		t.Fatalf("requests:\n got %v\nwant %v", got, want)
	}
	if in.GetContext().GetMTU() != DefaultMTU {
		t.Fatalf("mtu %d", in.GetContext().GetMTU())
	}
	if n.host.linkCount() != 2 {
		t.Fatalf("veths: %v", n.host.calls)
	}
	// A refresh checks its two interfaces and changes nothing.
	if err := n.dp.Connect(ctx, "conn-1", in, out); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.requests(true); !slices.Equal(got, []string{"sw_interface_dump", "sw_interface_dump"}) {
		t.Fatalf("refresh sent %v", got)
	}
	if err := n.dp.Disconnect(ctx, "conn-1"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Fatalf("disconnect left VPP changed:\n%s\nwas\n%s", got, before)
	}
	if n.host.linkCount() != 0 {
		t.Fatalf("veths left: %v", n.host.linkAlias)
	}
	// Disconnecting twice is fine.
	if err := n.dp.Disconnect(ctx, "conn-1"); err != nil {
		t.Fatal(err)
	}
}

// TestDisconnectOutlivesItsCaller: a Disconnect whose caller has given up
// still removes the whole vWire: cut off half-way it left the rest for a
// sweep, a listing of every interface.
func TestDisconnectOutlivesItsCaller(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	if err := n.dp.Connect(context.Background(), "gone", conn(kernelMech(nsClient, "nsm-c"), ""), conn(kernelMech(nsServer, "nsm-e"), "")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.dp.Disconnect(ctx, "gone"); err != nil {
		t.Fatalf("disconnect after the caller gave up: %v", err)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Fatalf("disconnect left VPP changed:\n%s\nwas\n%s", got, before)
	}
}

// TestConnectOutlivesItsCaller: a Connect whose caller has given up still
// builds (or rolls back) everything it starts, tagged, so that nothing VPP
// creates comes back to nobody.
func TestConnectOutlivesItsCaller(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.dp.Connect(ctx, "gone", conn(kernelMech(nsClient, "nsm-c"), ""), conn(kernelMech(nsServer, "nsm-e"), "")); err != nil {
		t.Fatalf("connect after the caller gave up: %v", err)
	}
	n.vpp.mu.Lock()
	defer n.vpp.mu.Unlock()
	for _, i := range n.vpp.ifaces {
		if i.kind != "local" && i.host != "eth0" && i.tag == "" {
			t.Errorf("untagged interface %s", i.name)
		}
	}
}
