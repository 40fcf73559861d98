package vpp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/wireguard"

	mwireguard "github.com/vwire/vwire/mechanisms/wireguard"
)

// lastPeerAdd is the last wireguard_peer_add node n was sent.
func lastPeerAdd(t *testing.T, n *testNode) wireguard.WireguardPeer {
	t.Helper()
	sent := n.vpp.sentOf("wireguard_peer_add")
	if len(sent) == 0 {
		t.Fatal("no wireguard_peer_add sent")
	}
	return sent[len(sent)-1].(*wireguard.WireguardPeerAdd).Peer
}

// The node that accepts a WireGuard tunnel builds first and adds its peer
// passive (port 0: VPP starts no handshake the other node, not built yet,
// would drop); the offering node, built after it, adds its peer with the
// port and starts the one handshake. A restore after VPP restarted starts
// its own again: the far end holds a session VPP lost.
func TestWireguardAcceptorPassive(t *testing.T) {
	a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
	remotePair(t, a, b, mwireguard.Type, payload.IP, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))

	if p := lastPeerAdd(t, a); p.Port != mwireguard.DefaultPort || p.Endpoint.String() != "192.0.2.2" {
		t.Fatalf("offering node's peer: port %d endpoint %s, want %d 192.0.2.2", p.Port, p.Endpoint, mwireguard.DefaultPort)
	}
	if p := lastPeerAdd(t, b); p.Port != 0 || p.Endpoint.String() != "192.0.2.1" {
		t.Fatalf("accepting node's peer: port %d endpoint %s, want passive (port 0) 192.0.2.1", p.Port, p.Endpoint)
	}
	crashVPP(t, b.vpp)
	b.vpp.revive()
	// Restored: both sides back (their VLAN and table ids may differ),
	// cross-connected.
	deadline := time.Now().Add(10 * time.Second)
	for s := b.vpp.snapshot(); !strings.Contains(s, `tag="vwire/in/b"`) || !strings.Contains(s, `tag="vwire/out/b"`) || !strings.Contains(s, "l3xc 2"); s = b.vpp.snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("vWire not restored:\n%s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(b.vpp.sentOf("wireguard_peer_add")); n != 2 {
		t.Fatalf("%d wireguard_peer_add sent, want 2 (the build, the restore)", n)
	}
	if p := lastPeerAdd(t, b); p.Port != mwireguard.DefaultPort {
		t.Fatalf("restored peer: port %d, want %d (a restore starts its own handshake)", p.Port, mwireguard.DefaultPort)
	}
	if err := b.dp.Disconnect(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
}

func TestPassivePeer(t *testing.T) {
	for _, tc := range []struct {
		role, typ string
		first     bool
		want      bool
	}{
		{roleIn, mwireguard.Type, true, true},
		{roleIn, mwireguard.Type, false, false}, // rebuild, rollback, restore
		{roleOut, mwireguard.Type, true, false}, // the offering side starts the handshake
		{roleIn, "VXLAN", true, false},
	} {
		if got := passivePeer(&side{role: tc.role, typ: tc.typ}, tc.first); got != tc.want {
			t.Errorf("passivePeer(%s %s, first %v) = %v, want %v", tc.role, tc.typ, tc.first, got, tc.want)
		}
	}
}

// TestRemoteConnectRoundTrips: a node's side of a remote vWire with a
// memif end (IPv4 here) is two round trips to VPP: every create (the
// memif socket, with an id chosen by the dataplane, its memif, the
// tunnel), then both sides' setups with the cross-connect. Besides: a
// node's first IP table, and its first socket id's listing of VPP's
// sockets. The accepting node, built first, the same, its WireGuard peer
// passive.
func TestRemoteConnectRoundTrips(t *testing.T) {
	wgSetup := []string{"sw_interface_tag_add_del", "wireguard_peer_add", "sw_interface_set_unnumbered", "sw_interface_set_mtu", "sw_interface_set_flags"}
	memifIPSetup := []string{"sw_interface_tag_add_del", "sw_interface_set_table", "sw_interface_add_del_address", "ip_route_add_del", "sw_interface_set_mtu", "sw_interface_set_flags"}
	for _, tc := range []struct {
		name    string
		typ     string
		payload string
		a, b    [][]string // the offering node's round trips, the accepting node's
	}{
		{name: "wireguard", typ: mwireguard.Type, payload: payload.IP,
			a: [][]string{
				{"ip_table_add_del"}, {"ip_table_add_del"}, // the node's first IP vWire: its shared table
				{"memif_socket_filename_dump"}, // the node's first socket id
				{"memif_socket_filename_add_del_v2", "memif_create_v2", "wireguard_interface_create"},
				concat(memifIPSetup, wgSetup, []string{"l3xc_del", "l3xc_del", "l3xc_update", "l3xc_update"}),
			},
			b: [][]string{
				{"ip_table_add_del"}, {"ip_table_add_del"},
				{"memif_socket_filename_dump"},
				{"wireguard_interface_create", "memif_socket_filename_add_del_v2", "memif_create_v2"},
				concat(wgSetup, memifIPSetup, []string{"l3xc_del", "l3xc_del", "l3xc_update", "l3xc_update"}),
			}},
		{name: "vxlan", typ: "VXLAN", payload: payload.Ethernet,
			a: [][]string{
				{"memif_socket_filename_dump"},
				{"memif_socket_filename_add_del_v2", "memif_create_v2", "vxlan_add_del_tunnel_v3"},
				{"sw_interface_tag_add_del", "sw_interface_set_mtu", "sw_interface_set_flags",
					"sw_interface_tag_add_del", "sw_interface_set_mtu", "feature_gso_enable_disable", "sw_interface_set_flags",
					"sw_interface_set_l2_xconnect", "sw_interface_set_l2_xconnect"},
			},
			b: [][]string{
				{"memif_socket_filename_dump"},
				{"vxlan_add_del_tunnel_v3", "memif_socket_filename_add_del_v2", "memif_create_v2"},
				{"sw_interface_tag_add_del", "sw_interface_set_mtu", "feature_gso_enable_disable", "sw_interface_set_flags",
					"sw_interface_tag_add_del", "sw_interface_set_mtu", "sw_interface_set_flags",
					"sw_interface_set_l2_xconnect", "sw_interface_set_l2_xconnect"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
			ta, tb := recordTrips(a), recordTrips(b)
			remotePair(t, a, b, tc.typ, tc.payload, memifMech("c.sock"), memifMech("e.sock"))
			for _, n := range []struct {
				name string
				got  [][]string
				want [][]string
			}{{"offering node", ta.take(), tc.a}, {"accepting node", tb.take(), tc.b}} {
				if !slices.EqualFunc(n.got, n.want, slices.Equal) {
					t.Errorf("%s's round trips:\n got %q\nwant %q", n.name, n.got, n.want)
				}
			}
			if tc.typ == mwireguard.Type {
				if p := lastPeerAdd(t, b); p.Port != 0 {
					t.Errorf("accepting node's peer port %d, want 0 (passive)", p.Port)
				}
			}
		})
	}
}

func concat(ls ...[]string) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l...)
	}
	return out
}

// TestWireguardOneHandshakeVPP: on real VPPs, the accepting node (built
// first) starts no handshake: while the offering node has not built its
// side its peer stays passive (port 0, no session), and the offering
// node, already holding another WireGuard interface on the port, drops
// no handshake for want of an interface ("Invalid MAC handshake"). Once
// the offering node builds, its handshake completes on both ends and the
// accepting node has learnt its endpoint; Disconnect leaves both VPPs as
// they were.
func TestWireguardOneHandshakeVPP(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	n1, n2 := twoNodes(t)
	base1, base2 := vppObjects(t, n1), vppObjects(t, n2)
	wg := remoteKind{mwireguard.Type, payload.IP}
	// A vWire standing first: node 1 listens on the WireGuard port, so a
	// handshake it has no interface for is counted, not refused by UDP.
	if err := remoteVWire(ctx, n1, n2, wg, 0, "hs-0-a", "hs-0-b"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, id := range []string{"hs-0-a", "hs-1-a"} {
			_ = n1.Disconnect(ctx, id)
		}
		for _, id := range []string{"hs-0-b", "hs-1-b"} {
			_ = n2.Disconnect(ctx, id)
		}
	})
	peerOf := func(dp *Dataplane, id string) (WireguardPeer, error) {
		dp.mu.Lock()
		st := dp.conns[id]
		dp.mu.Unlock()
		if st == nil {
			return WireguardPeer{}, fmt.Errorf("%s: no vWire", id)
		}
		peers, err := dp.vpp.ListWireguardPeers(ctx)
		if err != nil {
			return WireguardPeer{}, err
		}
		for _, p := range peers {
			if p.Interface == st.in || p.Interface == st.out {
				return p, nil
			}
		}
		return WireguardPeer{}, fmt.Errorf("%s: no wireguard peer", id)
	}
	vppCLI(t, n1, "clear errors")
	err := remoteVWireThen(ctx, n1, n2, wg, 1, "hs-1-a", "hs-1-b", func() error {
		// VPP starts a peer's first handshake within 340 ms of its
		// interface going up.
		time.Sleep(time.Second)
		p, err := peerOf(n2, "hs-1-b")
		if err != nil {
			return err
		}
		if p.Port != 0 || p.Established {
			return fmt.Errorf("accepting node's peer before the offering node built: port %d established %v, want passive", p.Port, p.Established)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	eventually(t, 20*time.Second, func() error {
		for _, c := range []struct {
			dp *Dataplane
			id string
		}{{n1, "hs-1-a"}, {n2, "hs-1-b"}} {
			p, err := peerOf(c.dp, c.id)
			if err != nil {
				return err
			}
			if !p.Established || p.Port == 0 { // each side listens on a port of its own (holdWireguard)
				return fmt.Errorf("%s: peer %s:%d established %v", c.id, p.Endpoint, p.Port, p.Established)
			}
		}
		return nil
	})
	t.Logf("session established on both nodes %v after the offering node's Connect", time.Since(built).Round(time.Millisecond))
	if out := vppCLI(t, n1, "show errors"); strings.Contains(out, "Invalid MAC handshake") {
		t.Errorf("offering node dropped a handshake:\n%s", out)
	}
	for _, id := range []string{"hs-1-a", "hs-0-a"} {
		if err := n1.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"hs-1-b", "hs-0-b"} {
		if err := n2.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if after := vppObjects(t, n1); !maps.Equal(after, base1) {
		t.Errorf("node 1 after Disconnect: %v, want %v", after, base1)
	}
	if after := vppObjects(t, n2); !maps.Equal(after, base2) {
		t.Errorf("node 2 after Disconnect: %v, want %v", after, base2)
	}
}

// TestMemifSocketIDs: the ids the dataplane gives memif sockets skip
// those VPP has (listed once), and after forget VPP is listed again.
func TestMemifSocketIDs(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	cl := a.dp.vpp
	have, err := cl.ListMemifSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	taken := map[uint32]bool{}
	for _, s := range have {
		taken[s.ID] = true
	}
	// VPP's own choice for a socket made outside the dataplane's ids.
	other, err := cl.CreateMemifSocket(ctx, "/run/other.sock")
	if err != nil {
		t.Fatal(err)
	}
	taken[other] = true
	var ids socketIDs
	for range 5 {
		id, err := ids.take(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if taken[id] || id == 0 || id == ^uint32(0) {
			t.Fatalf("socket id %d: VPP has it, or reserved (taken %v)", id, taken)
		}
		taken[id] = true
	}
	trips := recordTrips(a)
	ids.forget()
	if _, err := ids.take(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if _, err := ids.take(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if got := trips.take(); !slices.EqualFunc(got, [][]string{{"memif_socket_filename_dump"}}, slices.Equal) {
		t.Fatalf("after forget: %q, want one listing", got)
	}
}

// TestMemifSocketIDTaken: a socket id VPP had after all (a socket made
// after the dataplane listed them) fails the Connect with VPP's error, and
// what the pipelined creates made (the memif on that socket too) is rolled
// back.
func TestMemifSocketIDTaken(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	if err := a.dp.Connect(ctx, "first", conn(memifMech("f1.sock"), payload.Ethernet), conn(memifMech("f2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	// The next id the dataplane will give, taken behind its back.
	a.dp.memifSockIDs.mu.Lock()
	next := a.dp.memifSockIDs.next + 1
	a.dp.memifSockIDs.mu.Unlock()
	if err := a.dp.vpp.pipeline(ctx, createMemifSocketCall("/run/intruder.sock", next, func(uint32) {})); err != nil {
		t.Fatal(err)
	}
	withIntruder := a.vpp.snapshot()
	err := a.dp.Connect(ctx, "second", conn(memifMech("s1.sock"), payload.Ethernet), conn(memifMech("s2.sock"), payload.Ethernet))
	var apiErr api.VPPApiError
	if !errors.As(err, &apiErr) || apiErr != api.ENTRY_ALREADY_EXISTS {
		t.Fatalf("Connect: %v, want VPP's ENTRY_ALREADY_EXISTS", err)
	}
	if got := a.vpp.snapshot(); got != withIntruder {
		t.Fatalf("VPP after the failed Connect:\n%s\nwant\n%s", got, withIntruder)
	}
	// The ids after it are free: the same Connect succeeds.
	if err := a.dp.Connect(ctx, "second", conn(memifMech("s1.sock"), payload.Ethernet), conn(memifMech("s2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
}

// TestPassivePeerMadeActive: an accepting node's passive peer that hears
// no handshake (a far end that starts none as it comes up, such as the
// kernel dataplane's WireGuard) is added again with its port after the
// fallback, so that VPP starts one; Disconnect then removes the new peer.
// A peer the far end answered (its port known to VPP) is left alone.
func TestPassivePeerMadeActive(t *testing.T) {
	ctx := context.Background()
	short := func(c *Config) { c.passiveFallback = 50 * time.Millisecond }
	a, b := newTestNode(t, "192.0.2.1", short), newTestNode(t, "192.0.2.2", short)
	before := b.vpp.snapshot()
	remotePair(t, a, b, mwireguard.Type, payload.IP, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))
	deadline := time.Now().Add(10 * time.Second)
	for len(b.vpp.sentOf("wireguard_peer_add")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("passive peer not made active")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := lastPeerAdd(t, b); p.Port != mwireguard.DefaultPort {
		t.Fatalf("peer added again with port %d, want %d", p.Port, mwireguard.DefaultPort)
	}
	if n := len(b.vpp.sentOf("wireguard_peer_remove")); n != 1 {
		t.Fatalf("%d peers removed, want the passive one", n)
	}
	// The offering node's peer was never passive: nothing to do there.
	time.Sleep(100 * time.Millisecond)
	if n := len(a.vpp.sentOf("wireguard_peer_add")); n != 1 {
		t.Fatalf("offering node: %d peers added, want 1", n)
	}
	if err := b.dp.Disconnect(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := b.vpp.snapshot(); got != before {
		t.Fatalf("after Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestPassivePeerFallbackVPP: on real VPPs, an offering node that builds
// only after the fallback finds the accepting node's peer made active,
// and the session comes up all the same.
func TestPassivePeerFallbackVPP(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	n1, n2 := twoNodes(t)
	wg := remoteKind{mwireguard.Type, payload.IP}
	t.Cleanup(func() {
		_ = n1.Disconnect(ctx, "fb-a")
		_ = n2.Disconnect(ctx, "fb-b")
	})
	peers := func(dp *Dataplane) []WireguardPeer {
		p, err := dp.vpp.ListWireguardPeers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	err := remoteVWireThen(ctx, n1, n2, wg, 0, "fb-a", "fb-b", func() error {
		time.Sleep(n2.passiveFallback + time.Second)
		if p := peers(n2); len(p) != 1 || p[0].Port != mwireguard.DefaultPort {
			return fmt.Errorf("accepting node's peers after the fallback: %+v, want one with port %d", p, mwireguard.DefaultPort)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for i, dp := range []*Dataplane{n1, n2} {
			if p := peers(dp); len(p) != 1 || !p[0].Established {
				return fmt.Errorf("node %d peers %+v, want one established", i+1, p)
			}
		}
		return nil
	})
}
