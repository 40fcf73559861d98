package vpp

import (
	"context"
	"testing"
	"time"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// TestWireguardHandshakeBesideInterfaceInCreation: a WireGuard
// interface of another vWire, made and not yet given its peer (between
// its create and its setup), stands on each VPP while a vWire comes up.
// VPP 25.10 takes a handshake arriving on a port to every interface on
// it until one's key matches, and one with no peer puts the whole VPP
// "under load" (holdWireguard): the handshake then gets a cookie reply
// and is tried again 5 s later, and under a build burst, with such
// interfaces always there, vWires stayed silent. Each side listens on a
// port of its own, so the vWire's handshake meets only its own
// interface: no other WireGuard interface shares its port, and its peer
// is established by the first handshake (logged: about 0.2 s here
// against 5.3 s when both shared 51820).
func TestWireguardHandshakeBesideInterfaceInCreation(t *testing.T) {
	needVPP(t)
	n1, n2 := twoNodes(t)
	ctx := context.Background()
	for _, n := range []*Dataplane{n1, n2} {
		// Its port is held for it as Accept would.
		_, port, err := n.holdWireguard("wgpl-building", roleIn)
		if err != nil {
			t.Fatal(err)
		}
		priv, _, err := wireguard.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		idx, err := n.vpp.CreateWireguardInterface(ctx, WireguardInterfaceSpec{PrivateKey: priv, Src: n.tunnel, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.vpp.DeleteWireguardInterface(ctx, idx) })
	}
	client := newWorkload(t, "kernel", "nsc", "172.16.96.1")
	ep := newWorkload(t, "kernel", "nse", "172.16.96.2")
	idA, idB := "wgpl-a", "wgpl-b"
	t.Cleanup(func() {
		_ = n1.Disconnect(ctx, idA)
		_ = n2.Disconnect(ctx, idB)
	})
	w := tryWireguard(t, n1, n2, idA, idB, client, ep)
	start := time.Now()
	if err := w.connectA(ctx, n1, idA); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Dataplane{n1, n2} {
		wgs, err := n.vpp.ListWireguardInterfaces(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byPort := map[uint16]int{}
		for _, w := range wgs {
			byPort[w.Port]++
		}
		for port, c := range byPort {
			if c > 1 {
				t.Errorf("%d WireGuard interfaces share port %d: a handshake for one meets the peerless one", c, port)
			}
		}
	}
	waitUntil(t, "node 1's WireGuard peer is established", func() bool {
		ps, err := n1.vpp.ListWireguardPeers(ctx)
		return err == nil && len(ps) == 1 && ps[0].Established
	})
	t.Logf("node 1's peer established %v after its build", time.Since(start).Round(time.Millisecond))
	eventually(t, 30*time.Second, func() error { return client.ping(t, ep.addr) })
}
