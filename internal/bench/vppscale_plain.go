package bench

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/vwire/vwire/forwarder/vpp"
)

// The plain loop of the vpp-scale group: the VPP objects vwire's dataplane
// makes for a vWire, made by a plain sequence of VPP API calls (govpp's
// generated bindings behind forwarder/vpp's Client, one round trip each,
// nothing of vwire above it): the dataplane's own floor, next to which the
// mesh's figures show vwire's overhead.
const (
	// plainTagPrefix starts the plain loop's interface tags: not vwire's
	// tag form, so that the forwarders on the same VPPs leave them alone.
	plainTagPrefix = "bench-plain/"
	// plainVNIBase keeps the plain loop's VNIs apart from the forwarders'.
	plainVNIBase = 1 << 23
	// plainTable is the one IP table the plain loop's IP sides share on
	// each node, as the forwarders' do.
	plainTable = 0x76780000
	// plainWGPortBase + i is the UDP port of plain WireGuard vWire i at
	// both ends.
	plainWGPortBase = 40000
	// plainMTU is the MTU of a local memif vWire's interfaces; a remote
	// one's is that less its tunnel's overhead.
	plainMTU = 1500
)

// abstractSocket is VPP's name of the abstract unix socket name in the
// network namespace at nsPath.
func abstractSocket(name, nsPath string) string {
	return "abstract:" + name + ",netns_name=" + nsPath
}

// plainMemifVWire makes local memif vWire i's objects on vc: for the
// client (in nsClient) and for the endpoint (in nsEndpoint) a memif socket
// and a memif on it, tagged, MTU set and up; then the cross-connect both
// ways. undo removes what was made, also after a failure.
func plainMemifVWire(ctx context.Context, vc *vpp.Client, i int, nsClient, nsEndpoint string) (undo undoList, err error) {
	var ifs [2]vpp.SwIfIndex
	for k, side := range []struct{ role, ns string }{{"c", nsClient}, {"e", nsEndpoint}} {
		sock, err := vc.CreateMemifSocket(ctx, abstractSocket(fmt.Sprintf("vs-plain-%d-%s", i, side.role), side.ns))
		if err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteMemifSocket(ctx, sock) })
		idx, err := vc.CreateMemif(ctx, vpp.MemifSpec{SocketID: sock})
		if err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteMemif(ctx, idx) })
		if err := plainSetup(ctx, vc, idx, fmt.Sprintf("%s%s/%d", plainTagPrefix, side.role, i), plainMTU); err != nil {
			return undo, err
		}
		ifs[k] = idx
	}
	for _, x := range []vpp.L2XC{{Rx: ifs[0], Tx: ifs[1]}, {Rx: ifs[1], Tx: ifs[0]}} {
		if err := vc.CreateL2XC(ctx, x); err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteL2XC(ctx, x.Rx) })
	}
	return undo, nil
}

// plainSetup tags idx, sets its MTU and sets it up: three calls.
func plainSetup(ctx context.Context, vc *vpp.Client, idx vpp.SwIfIndex, tag string, mtu uint32) error {
	if err := vc.SetInterfaceTag(ctx, idx, tag); err != nil {
		return err
	}
	if err := vc.SetInterfaceMTU(ctx, idx, mtu); err != nil {
		return err
	}
	return vc.SetInterfaceUp(ctx, idx)
}

// plainSide is one node of a plain remote vWire: its VPP, its uplink
// (the tunnels' source) and the namespace of its workload's memif socket.
type plainSide struct {
	vc     *vpp.Client
	uplink vpp.SwIfIndex
	addr   netip.Addr // the node's tunnel address
	nsPath string
}

// plainRemoteVWire makes remote vWire i of the given kind by the plain
// loop: node b's side (the endpoint's), then node a's (the client's), each
// with a WireGuard key of its own.
func plainRemoteVWire(ctx context.Context, a, b plainSide, wireguard bool, i int) (undo undoList, err error) {
	var priv, pub [2][vpp.WireguardKeyLen]byte
	for k := range priv {
		key, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return undo, err
		}
		copy(priv[k][:], key.Bytes())
		copy(pub[k][:], key.PublicKey().Bytes())
	}
	client := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.1/32", 200+i/250, i%250))
	endpoint := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.2/32", 200+i/250, i%250))
	err = plainRemoteSide(ctx, &undo, b, a.addr, wireguard, i, "e", priv[1], pub[0], endpoint, client)
	if err == nil {
		err = plainRemoteSide(ctx, &undo, a, b.addr, wireguard, i, "c", priv[0], pub[1], client, endpoint)
	}
	return undo, err
}

// plainRemoteSide makes one node's objects of remote vWire i, in the
// order vwire's dataplane makes them: a memif (IP mode for WireGuard, then
// in plainTable with the far workload's address and a route to its own
// workload mine), tagged, MTU set, up; the tunnel to remote (VXLAN, or a
// WireGuard interface with key priv, its peer peerPub, unnumbered to the
// uplink), tagged, MTU set, up; and the cross-connect both ways.
func plainRemoteSide(ctx context.Context, undo *undoList, s plainSide, remote netip.Addr, wireguard bool, i int, role string,
	priv, peerPub [vpp.WireguardKeyLen]byte, mine, theirs netip.Prefix,
) error {
	vc := s.vc
	mtu := uint32(plainMTU - 50) // VXLAN: outer IP, UDP, VXLAN, inner Ethernet
	if wireguard {
		mtu = plainMTU - 60 // outer IP, UDP, WireGuard header and tag
	}
	sock, err := vc.CreateMemifSocket(ctx, abstractSocket(fmt.Sprintf("vs-plain-r%d-%s", i, role), s.nsPath))
	if err != nil {
		return err
	}
	undo.push(func(ctx context.Context) { _ = vc.DeleteMemifSocket(ctx, sock) })
	m, err := vc.CreateMemif(ctx, vpp.MemifSpec{SocketID: sock, IP: wireguard})
	if err != nil {
		return err
	}
	undo.push(func(ctx context.Context) { _ = vc.DeleteMemif(ctx, m) })
	if wireguard {
		if err := vc.SetInterfaceTable(ctx, m, plainTable, false); err != nil {
			return err
		}
		if err := vc.AddInterfaceAddress(ctx, m, theirs); err != nil {
			return err
		}
		r := vpp.Route{Table: plainTable, Prefix: mine, Via: m}
		if err := vc.CreateRoute(ctx, r); err != nil {
			return err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteRoute(ctx, r) })
	}
	if err := plainSetup(ctx, vc, m, fmt.Sprintf("%sr%s/%d", plainTagPrefix, role, i), mtu); err != nil {
		return err
	}
	var tun vpp.SwIfIndex
	tunTag := fmt.Sprintf("%sr%s-tun/%d", plainTagPrefix, role, i)
	if wireguard {
		port := uint16(plainWGPortBase + i)
		if tun, err = vc.CreateWireguardInterface(ctx, vpp.WireguardInterfaceSpec{PrivateKey: priv, Src: s.addr, Port: port}); err != nil {
			return err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteWireguardInterface(ctx, tun) })
		if err := vc.SetInterfaceTag(ctx, tun, tunTag); err != nil {
			return err
		}
		peer, err := vc.CreateWireguardPeer(ctx, vpp.WireguardPeerSpec{Interface: tun, PublicKey: peerPub, Endpoint: remote, Port: port,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
		if err != nil {
			return err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteWireguardPeer(ctx, peer) })
		if err := vc.SetInterfaceUnnumbered(ctx, tun, s.uplink); err != nil {
			return err
		}
	} else {
		t := vpp.VxlanTunnel{Src: s.addr, Dst: remote, VNI: plainVNIBase + uint32(i)}
		if tun, err = vc.CreateVxlanTunnel(ctx, t); err != nil {
			return err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteVxlanTunnel(ctx, t) })
		if err := vc.SetInterfaceTag(ctx, tun, tunTag); err != nil {
			return err
		}
	}
	if err := vc.SetInterfaceMTU(ctx, tun, mtu); err != nil {
		return err
	}
	if err := vc.SetInterfaceUp(ctx, tun); err != nil {
		return err
	}
	if wireguard {
		for _, x := range []vpp.L3XC{{Rx: m, Tx: tun, NextHop: theirs.Addr()}, {Rx: tun, Tx: m, NextHop: mine.Addr()}} {
			if err := vc.CreateL3XC(ctx, x); err != nil {
				return err
			}
			undo.push(func(ctx context.Context) { _ = vc.DeleteL3XC(ctx, x.Rx, false) })
		}
		return nil
	}
	for _, x := range []vpp.L2XC{{Rx: m, Tx: tun}, {Rx: tun, Tx: m}} {
		if err := vc.CreateL2XC(ctx, x); err != nil {
			return err
		}
		undo.push(func(ctx context.Context) { _ = vc.DeleteL2XC(ctx, x.Rx) })
	}
	return nil
}
