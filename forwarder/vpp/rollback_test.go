package vpp

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/api"

	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// VPP answering an error half way through a Connect: Connect fails, and
// exactly what was made is removed, last first.
func TestConnectFailsHalfway(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kernel   KernelMode
		payload  string
		remote   string // mechanism type between the nodes; "" for a local vWire
		in, out  *networkservice.Mechanism
		failMsg  string
		failNth  int
		wantUndo []string // requests after the failing one
	}{
		{
			name: "kernel to kernel, second l3xc", payload: payload.IP,
			in: kernelMech(nsClient, "nsm-c"), out: kernelMech(nsServer, "nsm-e"),
			failMsg: "l3xc_update", failNth: 2,
			wantUndo: []string{"l3xc_del", "ip_route_add_del", "delete_subif", "ip_table_add_del", "ip_table_add_del", "ip_route_add_del", "delete_subif", "ip_table_add_del", "ip_table_add_del"},
		},
		{
			name: "memif to memif IP, route of the first", payload: payload.IP,
			in: memifMech("a.sock"), out: memifMech("b.sock"),
			failMsg: "ip_route_add_del", failNth: 1,
			// Both sides' setups and the cross-connect go pipelined:
			// all ran after the route failed; the second side's route
			// and the l3xc are removed, the first's route was not made;
			// each table goes with its only side.
			wantUndo: []string{"sw_interface_set_mtu", "sw_interface_set_flags",
				"sw_interface_tag_add_del", "sw_interface_set_table", "sw_interface_add_del_address", "ip_route_add_del", "sw_interface_set_mtu", "sw_interface_set_flags",
				"l3xc_del", "l3xc_del", "l3xc_update", "l3xc_update",
				"l3xc_del", "l3xc_del", "ip_route_add_del", "memif_delete", "memif_socket_filename_add_del_v2", "memif_delete", "memif_socket_filename_add_del_v2",
				"ip_table_add_del", "ip_table_add_del", "ip_table_add_del", "ip_table_add_del"},
		},
		{
			name: "memif to memif ethernet, second l2xc", payload: payload.Ethernet,
			in: memifMech("a.sock"), out: memifMech("b.sock"),
			failMsg: "sw_interface_set_l2_xconnect", failNth: 2,
			// (The l2xc before the undo is the first of its two removals.)
			wantUndo: []string{"sw_interface_set_l2_xconnect", "memif_delete", "memif_socket_filename_add_del_v2", "memif_delete", "memif_socket_filename_add_del_v2"},
		},
		{
			name: "memif, tag after create", payload: payload.Ethernet,
			in: memifMech("a.sock"), out: memifMech("b.sock"),
			failMsg: "sw_interface_tag_add_del", failNth: 1,
			// Both sides' setups and the cross-connect go pipelined:
			// all ran after the tag failed.
			wantUndo: []string{"sw_interface_set_mtu", "sw_interface_set_flags",
				"sw_interface_tag_add_del", "sw_interface_set_mtu", "sw_interface_set_flags",
				"sw_interface_set_l2_xconnect", "sw_interface_set_l2_xconnect", "sw_interface_set_l2_xconnect", "sw_interface_set_l2_xconnect",
				"memif_delete", "memif_socket_filename_add_del_v2", "memif_delete", "memif_socket_filename_add_del_v2"},
		},
		{
			name: "tap to tap, mtu of the second", kernel: KernelTap, payload: payload.Ethernet,
			in: kernelMech(nsClient, "nsm-c"), out: kernelMech(nsServer, "nsm-e"),
			failMsg: "sw_interface_set_mtu", failNth: 2,
			// MTU and up go pipelined: up ran after the MTU failed.
			wantUndo: []string{"sw_interface_set_flags", "tap_delete_v2", "tap_delete_v2"},
		},
		{
			name: "vxlan, tunnel create", payload: payload.Ethernet, remote: vxlan.Type,
			in: kernelMech(nsClient, "nsm-c"), out: kernelMech(nsServer, "nsm-e"),
			failMsg: "vxlan_add_del_tunnel_v3", failNth: 1,
			wantUndo: []string{"delete_subif"},
		},
		{
			name: "wireguard, peer", payload: payload.IP, remote: wireguard.Type,
			in: kernelMech(nsClient, "nsm-c"), out: kernelMech(nsServer, "nsm-e"),
			failMsg: "wireguard_peer_add", failNth: 1,
			// Tag, peer, unnumbered, MTU and up go pipelined: the three
			// after the peer ran.
			wantUndo: []string{"sw_interface_set_unnumbered", "sw_interface_set_mtu", "sw_interface_set_flags", "wireguard_interface_delete", "ip_route_add_del", "delete_subif", "ip_table_add_del", "ip_table_add_del"},
		},
		{
			name: "ipsec, tunnel protection", payload: payload.IP, remote: ipsec.Type,
			in: kernelMech(nsClient, "nsm-c"), out: kernelMech(nsServer, "nsm-e"),
			failMsg: "ipsec_tunnel_protect_update", failNth: 1,
			wantUndo: []string{"ipip_del_tunnel", "ipsec_sad_entry_del", "ipsec_sad_entry_del", "ip_route_add_del", "delete_subif", "ip_table_add_del", "ip_table_add_del"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			opt := func(c *Config) { c.Kernel = KernelVeth }
			if tc.kernel != "" {
				opt = func(c *Config) { c.Kernel = tc.kernel }
			}
			a := newTestNode(t, "192.0.2.1", opt)
			out := tc.out
			if tc.remote != "" {
				// The server node builds fine; node A (the client's) fails.
				b := newTestNode(t, "192.0.2.2", opt)
				c := &networkservice.Connection{Payload: tc.payload}
				offers, err := a.dp.Offer(ctx, "a", c, true)
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == tc.remote })
				if out, err = b.dp.Accept(ctx, "b", c, offers[i:i+1]); err != nil {
					t.Fatal(err)
				}
				if err := b.dp.Connect(ctx, "b", conn(out, tc.payload), conn(tc.out, tc.payload)); err != nil {
					t.Fatal(err)
				}
			}
			before := a.vpp.snapshot()
			a.vpp.failNth(tc.failMsg, tc.failNth, int32(api.INVALID_VALUE))
			err := a.dp.Connect(ctx, "a", conn(tc.in, tc.payload), conn(out, tc.payload))
			var apiErr api.VPPApiError
			if !errors.As(err, &apiErr) || apiErr != api.INVALID_VALUE {
				t.Fatalf("connect: %v, want VPP's error", err)
			}
			reqs := a.vpp.requests(false)
			// The failing request is the last tc.failMsg before the undo.
			undo := reqs[len(reqs)-len(tc.wantUndo):]
			if !slices.Equal(undo, tc.wantUndo) || reqs[len(reqs)-len(tc.wantUndo)-1] != tc.failMsg {
				t.Fatalf("requests:\n got %v\nwant ... %s %v", reqs, tc.failMsg, tc.wantUndo)
			}
			if got := a.vpp.snapshot(); got != before {
				t.Fatalf("VPP changed by a failed connect:\n%s\nwas\n%s", got, before)
			}
			if n := a.host.linkCount(); n != 0 {
				t.Fatalf("links left: %v", a.host.linkAlias)
			}
			// The same Connect without the failure succeeds afterwards.
			if err := a.dp.Connect(ctx, "a", conn(tc.in, tc.payload), conn(out, tc.payload)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDisconnectOfUnbuiltIsFree: the Close of a connection whose Connect
// never ran (its next hop refused) asks VPP nothing, where a sweep would
// dump every interface and IP table (a burst of those, each a megabyte at
// node scale, ran VPP 25.10 out of main heap); one whose Connect failed
// after calling VPP is swept, and once swept costs nothing again.
func TestDisconnectOfUnbuiltIsFree(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "10.0.0.1")
	c := conn(memifMech("unbuilt.sock"), payload.Ethernet)
	if _, err := n.dp.Accept(ctx, "unbuilt", c, []*networkservice.Mechanism{memifMech("unbuilt.sock")}); err != nil {
		t.Fatal(err)
	}
	n.vpp.requests(true)
	if err := n.dp.Disconnect(ctx, "unbuilt"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.requests(true); len(got) != 0 {
		t.Errorf("Disconnect of a vWire never built sent %v, want nothing", got)
	}

	n.vpp.failNth("memif_create_v2", 2, int32(api.INVALID_VALUE))
	if err := n.dp.Connect(ctx, "failed", conn(memifMech("f1.sock"), payload.Ethernet), conn(memifMech("f2.sock"), payload.Ethernet)); err == nil {
		t.Fatal("Connect succeeded with VPP refusing a memif")
	}
	n.vpp.requests(true)
	if err := n.dp.Disconnect(ctx, "failed"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.requests(true); !slices.Contains(got, "sw_interface_dump") {
		t.Errorf("Disconnect after a failed Connect sent %v, want a sweep (sw_interface_dump)", got)
	}
	if err := n.dp.Disconnect(ctx, "failed"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.requests(true); len(got) != 0 {
		t.Errorf("a second Disconnect sent %v, want nothing", got)
	}
}
