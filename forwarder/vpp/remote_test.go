package vpp

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/binapi/ipsec"

	mipsec "github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// remotePair builds a vWire client node A -> server node B in the
// protocol's order: A offers, B accepts and builds, A builds.
func remotePair(t *testing.T, a, b *testNode, typ, pl string, inA, outB *networkservice.Mechanism) (accepted *networkservice.Mechanism, connA *networkservice.Connection) {
	t.Helper()
	ctx := context.Background()
	c := &networkservice.Connection{Payload: pl}
	offers, err := a.dp.Offer(ctx, "a", c, true)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == typ })
	if i < 0 {
		t.Fatalf("%s not offered: %v", typ, offers)
	}
	accepted, err = b.dp.Accept(ctx, "b", c, offers[i:i+1])
	if err != nil {
		t.Fatal(err)
	}
	inB := conn(accepted, pl)
	if err := b.dp.Connect(ctx, "b", inB, conn(outB, pl)); err != nil {
		t.Fatal(err)
	}
	connA = conn(inA, pl)
	if err := a.dp.Connect(ctx, "a", connA, conn(accepted, pl)); err != nil {
		t.Fatal(err)
	}
	return accepted, connA
}

func TestRemoteMechanisms(t *testing.T) {
	for _, tc := range []struct {
		name      string
		typ       string
		payload   string
		wantMTU   uint32
		tunnelReq []string // the tunnel side's creates on the client node
	}{
		{name: "vxlan", typ: vxlan.Type, payload: payload.Ethernet, wantMTU: 1500 - vxlanOverhead,
			tunnelReq: []string{"vxlan_add_del_tunnel_v3", "sw_interface_tag_add_del", "sw_interface_set_mtu", "feature_gso_enable_disable", "sw_interface_set_flags"}},
		{name: "vxlan ip payload", typ: vxlan.Type, payload: payload.IP, wantMTU: 1500 - vxlanOverhead,
			tunnelReq: []string{"vxlan_add_del_tunnel_v3", "sw_interface_tag_add_del", "sw_interface_set_mtu", "feature_gso_enable_disable", "sw_interface_set_flags"}},
		{name: "wireguard", typ: wireguard.Type, payload: payload.IP, wantMTU: 1500 - wireguardOverhead,
			tunnelReq: []string{"wireguard_interface_create", "sw_interface_tag_add_del", "wireguard_peer_add", "sw_interface_set_unnumbered", "sw_interface_set_mtu", "sw_interface_set_flags"}},
		{name: "ipsec", typ: mipsec.Type, payload: payload.IP, wantMTU: 1500 - ipsecOverhead,
			tunnelReq: []string{"ipsec_sad_entry_add_v2", "ipsec_sad_entry_add_v2", "ipip_add_tunnel", "sw_interface_tag_add_del", "ipsec_tunnel_protect_update", "sw_interface_set_unnumbered", "sw_interface_set_mtu", "sw_interface_set_flags"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestNode(t, "192.0.2.1")
			b := newTestNode(t, "192.0.2.2")
			beforeA, beforeB := a.vpp.snapshot(), b.vpp.snapshot()
			_, ca := remotePair(t, a, b, tc.typ, tc.payload, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))
			if ca.GetContext().GetMTU() != tc.wantMTU {
				t.Fatalf("mtu %d, want %d", ca.GetContext().GetMTU(), tc.wantMTU)
			}
			if tc.typ == mipsec.Type {
				checkMirroredSAs(t, a, b)
			}
			reqs := a.vpp.requests(false)
			// The client node's requests: kernel side first, then the tunnel.
			i := slices.Index(reqs, tc.tunnelReq[0])
			if i < 0 || !slices.Equal(reqs[i:i+len(tc.tunnelReq)], tc.tunnelReq) {
				t.Fatalf("requests:\n got %v\nwant ... %v ...", reqs, tc.tunnelReq)
			}
			xc := "l3xc_update"
			if tc.typ == vxlan.Type {
				xc = "sw_interface_set_l2_xconnect"
			}
			if got := reqs[len(reqs)-2:]; !slices.Equal(got, []string{xc, xc}) {
				t.Fatalf("cross-connect: %v", got)
			}
			for _, n := range []*testNode{a, b} {
				id := map[*testNode]string{a: "a", b: "b"}[n]
				if err := n.dp.Disconnect(context.Background(), id); err != nil {
					t.Fatal(err)
				}
			}
			if got := a.vpp.snapshot(); got != beforeA {
				t.Fatalf("node A not clean:\n%s\nwas\n%s", got, beforeA)
			}
			if got := b.vpp.snapshot(); got != beforeB {
				t.Fatalf("node B not clean:\n%s\nwas\n%s", got, beforeB)
			}
		})
	}
}

// checkMirroredSAs checks that each node's outbound SA is the other's
// inbound SA, keyed alike, and that both are ESP in UDP.
func checkMirroredSAs(t *testing.T, a, b *testNode) {
	t.Helper()
	sas := func(n *testNode) (out, in ipsec.IpsecSadEntryAddV2) {
		for _, m := range n.vpp.sentOf("ipsec_sad_entry_add_v2") {
			e := *m.(*ipsec.IpsecSadEntryAddV2)
			if e.Entry.Flags&64 != 0 { // IS_INBOUND
				in = e
			} else {
				out = e
			}
		}
		return out, in
	}
	aOut, aIn := sas(a)
	bOut, bIn := sas(b)
	if aOut.Entry.Spi == 0 || aOut.Entry.Spi != bIn.Entry.Spi || bOut.Entry.Spi != aIn.Entry.Spi {
		t.Fatalf("SPIs do not mirror: A out %d in %d, B out %d in %d", aOut.Entry.Spi, aIn.Entry.Spi, bOut.Entry.Spi, bIn.Entry.Spi)
	}
	if string(aOut.Entry.CryptoKey.Data[:32]) != string(bIn.Entry.CryptoKey.Data[:32]) || aOut.Entry.Salt != bIn.Entry.Salt {
		t.Fatal("A's outbound key is not B's inbound key")
	}
	if aOut.Entry.UDPDstPort != 4500 || aOut.Entry.Flags&16 == 0 { // UDP_ENCAP
		t.Fatalf("not ESP in UDP: %+v", aOut.Entry)
	}
}

// TestMoveKeepsTunnel: a vWire moved to another endpoint (new endpoint
// interface, new addresses) keeps its WireGuard side on both nodes, so the
// tunnel's session survives; only the local sides are rebuilt.
func TestMoveKeepsTunnel(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	b := newTestNode(t, "192.0.2.2")
	accepted, connA := remotePair(t, a, b, wireguard.Type, payload.IP, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))
	wgOf := func(n *testNode) uint32 {
		n.vpp.mu.Lock()
		defer n.vpp.mu.Unlock()
		for _, i := range n.vpp.ifaces {
			if i.kind == "wg" {
				return i.idx
			}
		}
		t.Fatal("no wireguard interface")
		return 0
	}
	wgA, wgB := wgOf(a), wgOf(b)

	moved := &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{"172.16.9.1/32"}, DstIpAddrs: []string{"172.16.9.2/32"},
		SrcRoutes: []*networkservice.Route{{Prefix: "172.16.9.2/32"}}, DstRoutes: []*networkservice.Route{{Prefix: "172.16.9.1/32"}},
	}}
	a.vpp.requests(true)
	b.vpp.requests(true)
	inB, outB := conn(accepted, payload.IP), conn(kernelMech("/var/run/netns/server2", "nsm-e2"), payload.IP)
	inB.Context, outB.Context = moved, moved
	if err := b.dp.Connect(ctx, "b", inB, outB); err != nil {
		t.Fatal(err)
	}
	connA.Context = moved
	outA := conn(accepted, payload.IP)
	outA.Context = moved
	if err := a.dp.Connect(ctx, "a", connA, outA); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{a, b} {
		reqs := n.vpp.requests(false)
		for _, r := range reqs {
			if strings.HasPrefix(r, "wireguard_") {
				t.Errorf("the move touched the tunnel: %v", reqs)
				break
			}
		}
		if !slices.Contains(reqs, "create_vlan_subif") || !slices.Contains(reqs, "delete_subif") {
			t.Errorf("the local side was not rebuilt: %v", reqs)
		}
	}
	if wgOf(a) != wgA || wgOf(b) != wgB {
		t.Error("a wireguard interface was replaced")
	}
	if got := b.host.linkCount(); got != 1 {
		t.Errorf("node B has %d veths, want the new endpoint's only", got)
	}
}
