package vpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter/mock"
	"go.fd.io/govpp/binapi/af_packet"
	"go.fd.io/govpp/binapi/l3xc"
	"go.fd.io/govpp/binapi/memif"
	"go.fd.io/govpp/binapi/tapv2"
	"go.fd.io/govpp/binapi/vxlan"
	"go.fd.io/govpp/binapi/wireguard"

	mmemif "github.com/vwire/vwire/mechanisms/memif"
	mvxlan "github.com/vwire/vwire/mechanisms/vxlan"
	mwireguard "github.com/vwire/vwire/mechanisms/wireguard"
)

// The fields of the requests that make each mechanism.

func TestTapRequest(t *testing.T) {
	for _, tc := range []struct {
		payload string
		tun     bool
	}{{payload.IP, true}, {payload.Ethernet, false}} {
		n := newTestNode(t, "192.0.2.1", func(c *Config) { c.Kernel = KernelTap })
		if err := n.dp.Connect(context.Background(), "t", conn(kernelMech(nsClient, "nsm-c"), tc.payload), conn(kernelMech(nsServer, "nsm-e"), tc.payload)); err != nil {
			t.Fatal(err)
		}
		taps := n.vpp.sentOf("tap_create_v3")
		if len(taps) != 2 {
			t.Fatalf("%d taps", len(taps))
		}
		c := taps[0].(*tapv2.TapCreateV3)
		if c.Tag != "vwire/in/t" || c.HostIfName != "nsm-c" || !c.HostIfNameSet || c.HostNamespace != nsClient || !c.HostNamespaceSet ||
			(c.TapFlags&tapv2.TAP_API_FLAG_TUN != 0) != tc.tun || !c.HostMtuSet || c.HostMtuSize != DefaultMTU || c.ID != ^uint32(0) || c.NumRxQueues != 1 {
			t.Fatalf("%s: tap_create_v3 %+v", tc.payload, c)
		}
		if len(n.vpp.sentOf("sw_interface_tag_add_del")) != 0 {
			t.Fatal("tap tagged after create: the create request carries the tag")
		}
	}
}

// TestTrunkRequests: VPP has two af_packet interfaces (uplink and KERNEL
// trunk), both up from the start and left in interrupt mode (see
// CreateAfPacket), whatever the number of KERNEL
// vWires; each KERNEL side is a sub-interface of the trunk in a VLAN of its
// own, the veth's VLAN, tag popped for an Ethernet payload.
func TestTrunkRequests(t *testing.T) {
	n := &testNode{vpp: newFakeVPP(), host: newFakeHost("192.0.2.1"), memifDir: t.TempDir()}
	dp, err := New(context.Background(), Config{Adapter: n.vpp, StatsAdapter: mock.NewStatsAdapter(), Uplink: "eth0", host: n.host,
		Kernel: KernelVeth, MemifDir: n.memifDir, StateDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	n.dp = dp
	for i, pl := range []string{payload.IP, payload.Ethernet, payload.IP} {
		id := fmt.Sprintf("k%d", i)
		if err := n.dp.Connect(context.Background(), id, conn(kernelMech(nsClient, "nsm-c"+id), pl), conn(kernelMech(nsServer, "nsm-e"+id), pl)); err != nil {
			t.Fatal(err)
		}
	}
	creates := n.vpp.sentOf("af_packet_create_v3")
	if len(creates) != 2 {
		t.Fatalf("%d af_packet_create_v3, want 2 (uplink and trunk)", len(creates))
	}
	if c := creates[1].(*af_packet.AfPacketCreateV3); c.HostIfName != trunkVPP || c.TxFramesPerBlock != trunkTxFrames {
		t.Errorf("trunk: af_packet_create_v3 %+v", c)
	}
	if got := n.vpp.sentOf("sw_interface_set_rx_mode"); len(got) != 0 {
		t.Errorf("sw_interface_set_rx_mode %v: want VPP's default (interrupt)", got)
	}
	n.vpp.mu.Lock()
	trunkIdx := uint32(n.dp.trunk.ifIndex())
	subs := map[uint32]*fakeIface{}
	for _, i := range n.vpp.ifaces {
		switch {
		case i.kind == "afpacket" && !i.up:
			t.Errorf("af_packet %s down", i.name)
		case i.sub:
			if i.sup != trunkIdx || !i.up {
				t.Errorf("sub-interface %s: of %d (trunk %d), up %v", i.name, i.sup, trunkIdx, i.up)
			}
			if i.vtrPop != strings.HasPrefix(i.tag, "vwire/in/k1") && i.vtrPop != strings.HasPrefix(i.tag, "vwire/out/k1") {
				t.Errorf("sub-interface %s (%s): tag popped %v, want for the Ethernet vWire only", i.name, i.tag, i.vtrPop)
			}
			subs[i.subID] = i
		}
	}
	n.vpp.mu.Unlock()
	if len(subs) != 6 {
		t.Fatalf("%d sub-interfaces in distinct VLANs, want 6", len(subs))
	}
	vlans, _ := n.host.trunkVlans()
	for link, v := range vlans {
		s, ok := subs[uint32(v)]
		if !ok {
			t.Errorf("veth %s in VLAN %d: no sub-interface", link, v)
			continue
		}
		tg, _ := ParseTag(s.tag)
		if link != linkName(tg.Role, tg.Key) {
			t.Errorf("VLAN %d: veth %s, sub-interface of %s", v, link, s.tag)
		}
	}

	// Closed, every VLAN is free again and nothing of the vWires is left.
	for i := range 3 {
		if err := n.dp.Disconnect(context.Background(), fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.dp.trunk.inUse(); got != 0 {
		t.Errorf("%d VLANs in use after Disconnect", got)
	}
	if got := n.host.linkCount(); got != 0 {
		t.Errorf("%d veths left", got)
	}
}

// TestTrunkVLANsTakenBack: a restarted forwarder finds the VLANs the
// bridge's ports and VPP's sub-interfaces hold, and gives none of them to a
// new vWire.
func TestTrunkVLANsTakenBack(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	if err := n.dp.Connect(context.Background(), "old", conn(kernelMech(nsClient, "nsm-c"), payload.IP), conn(kernelMech(nsServer, "nsm-e"), payload.IP)); err != nil {
		t.Fatal(err)
	}
	before, _ := n.host.trunkVlans()
	n.dp.Close()
	cfg := Config{Adapter: n.vpp, StatsAdapter: mock.NewStatsAdapter(), Uplink: "eth0", host: n.host, Kernel: KernelVeth, MemifDir: n.memifDir, StateDir: n.stateDir, Logger: testLogger(t)}
	dp, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if got := len(n.vpp.sentOf("af_packet_create_v3")); got != 0 {
		t.Errorf("%d af_packet_create_v3 at the restart, want none: uplink and trunk are taken back", got)
	}
	if got := dp.trunk.inUse(); got != 2 {
		t.Fatalf("%d VLANs in use after a restart, want 2", got)
	}
	for range 10 {
		v, err := dp.trunk.allocate("x")
		if err != nil {
			t.Fatal(err)
		}
		for l, u := range before {
			if u == v {
				t.Fatalf("VLAN %d of %s given again", v, l)
			}
		}
		dp.trunk.releaseLink("x")
	}
}

// TestTrunkVLANExhaustion: the 4095th KERNEL side is refused with
// ErrNoVLAN, and a released VLAN is taken last.
func TestTrunkVLANExhaustion(t *testing.T) {
	tr := newTrunk()
	for i := range maxVLAN {
		if _, err := tr.allocate(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.allocate("more"); !errors.Is(err, ErrNoVLAN) {
		t.Fatalf("4095th VLAN: %v, want ErrNoVLAN", err)
	}
	v, _ := tr.vlanOf("7")
	tr.releaseLink("7")
	if got, err := tr.allocate("more"); err != nil || got != v {
		t.Fatalf("after a release: VLAN %d, %v; want %d", got, err, v)
	}
}

func TestMemifRequests(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	abstract := mmemif.New(mmemif.Params{SocketFile: "memif-c", NetNSURL: "file://" + nsClient})
	if err := n.dp.Connect(context.Background(), "m", conn(abstract, payload.IP), conn(memifMech("e.sock"), payload.IP)); err != nil {
		t.Fatal(err)
	}
	socks := n.vpp.sentOf("memif_socket_filename_add_del_v2")
	if got := socks[0].(*memif.MemifSocketFilenameAddDelV2).SocketFilename; got != "abstract:memif-c,netns_name="+nsClient {
		t.Fatalf("abstract socket %q", got)
	}
	if got := socks[1].(*memif.MemifSocketFilenameAddDelV2).SocketFilename; got != n.memifDir+"/e.sock" {
		t.Fatalf("file socket %q", got)
	}
	for _, m := range n.vpp.sentOf("memif_create_v2") {
		c := m.(*memif.MemifCreateV2)
		if c.Role != memif.MEMIF_ROLE_API_MASTER || c.Mode != memif.MEMIF_MODE_API_IP {
			t.Fatalf("memif_create_v2 %+v", c)
		}
	}
	// IP-mode memifs are point to point: the l3xc has the workload's
	// address as next hop all the same.
	for _, m := range n.vpp.sentOf("l3xc_update") {
		x := m.(*l3xc.L3xcUpdate)
		if len(x.L3xc.Paths) != 1 || x.L3xc.IsIP6 {
			t.Fatalf("l3xc %+v", x)
		}
	}
}

func TestTunnelRequests(t *testing.T) {
	a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
	acc, _ := remotePair(t, a, b, mvxlan.Type, payload.Ethernet, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))
	p, err := mvxlan.FromMechanism(acc)
	if err != nil {
		t.Fatal(err)
	}
	v := a.vpp.sentOf("vxlan_add_del_tunnel_v3")[0].(*vxlan.VxlanAddDelTunnelV3)
	if !v.IsAdd || v.Vni != p.VNI || v.SrcAddress.String() != "192.0.2.1" || v.DstAddress.String() != "192.0.2.2" ||
		v.DstPort != 4789 || v.DecapNextIndex != ^uint32(0) || v.Instance != ^uint32(0) {
		t.Fatalf("vxlan %+v", v)
	}
	w := b.vpp.sentOf("vxlan_add_del_tunnel_v3")[0].(*vxlan.VxlanAddDelTunnelV3)
	if w.SrcAddress.String() != "192.0.2.2" || w.DstAddress.String() != "192.0.2.1" || w.Vni != p.VNI {
		t.Fatalf("server vxlan %+v", w)
	}

	c, d := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
	acc, _ = remotePair(t, c, d, mwireguard.Type, payload.IP, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))
	wp, err := mwireguard.FromMechanism(acc)
	if err != nil {
		t.Fatal(err)
	}
	peer := c.vpp.sentOf("wireguard_peer_add")[0].(*wireguard.WireguardPeerAdd).Peer
	if mwireguard.EncodeKey([32]byte(peer.PublicKey)) != wp.DstPublicKey || peer.Endpoint.String() != "192.0.2.2" || peer.Port != 51820 || len(peer.AllowedIps) != 2 {
		t.Fatalf("wireguard peer %+v", peer)
	}
	iface := d.vpp.sentOf("wireguard_interface_create")[0].(*wireguard.WireguardInterfaceCreate).Interface
	if iface.Port != 51820 || iface.SrcIP.String() != "192.0.2.2" || len(iface.PrivateKey) != 32 {
		t.Fatalf("wireguard interface %+v", iface)
	}
}
