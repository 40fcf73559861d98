package vpp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
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
