package vpp

import (
	"context"
	"net/netip"
)

// The plain loop: the VPP objects build makes for a vWire, made by a plain
// sequence of API calls, one round trip each, with nothing of the
// dataplane above them (no plan, pipeline, undo stack or state). It is the
// floor vwire's own overhead sits on, for the benchmarks that put the two
// side by side (BenchmarkMemifConnect, BenchmarkRemoteConnect and `vwire
// bench --only vpp-scale`).

// PlainUndo removes what a plain loop made, last first; errors are
// ignored (a benchmark's clean-up).
type PlainUndo []func(context.Context)

func (u *PlainUndo) push(f func(context.Context)) { *u = append(*u, f) }

// Run removes everything, last made first.
func (u PlainUndo) Run(ctx context.Context) {
	for i := len(u) - 1; i >= 0; i-- {
		u[i](ctx)
	}
}

// PlainMemifVWire makes a local memif vWire's objects on c: for each of
// the two sockets (VPP socket filenames) a memif socket and a memif on
// it, tagged tags[k], MTU 1500, up; then the cross-connect both ways. The
// undo removes what was made, also after a failure.
func PlainMemifVWire(ctx context.Context, c *Client, sockets, tags [2]string) (PlainUndo, error) {
	var undo PlainUndo
	var ifs [2]SwIfIndex
	for k := range sockets {
		sock, err := c.CreateMemifSocket(ctx, sockets[k])
		if err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteMemifSocket(ctx, sock) })
		idx, err := c.CreateMemif(ctx, MemifSpec{SocketID: sock})
		if err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteMemif(ctx, idx) })
		if err := plainSetup(ctx, c, idx, tags[k], 1500); err != nil {
			return undo, err
		}
		ifs[k] = idx
	}
	for _, x := range []L2XC{{Rx: ifs[0], Tx: ifs[1]}, {Rx: ifs[1], Tx: ifs[0]}} {
		if err := c.CreateL2XC(ctx, x); err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteL2XC(ctx, x.Rx) })
	}
	return undo, nil
}

// PlainRemoteSide is one node's side of a remote vWire for the plain loop.
type PlainRemoteSide struct {
	Socket           string     // the memif's socket filename
	MemifTag, TunTag string     // the two interfaces' tags
	WireGuard        bool       // a WireGuard tunnel (IP payload); else VXLAN
	Local, Remote    netip.Addr // tunnel source and destination
	VNI              uint32     // VXLAN
	Port             uint16     // WireGuard, at both ends
	PrivateKey       [WireguardKeyLen]byte
	PeerKey          [WireguardKeyLen]byte
	Uplink           SwIfIndex // the WireGuard interface is unnumbered to it
	// Table is the IP table of the memif (WireGuard); Mine and Theirs are
	// the workloads' addresses on this side and beyond the tunnel.
	Table        uint32
	Mine, Theirs netip.Prefix
}

// Make makes the side's objects on c, in build's order: a memif (IP mode
// for WireGuard, then in Table with Theirs as its address and a route to
// Mine), tagged, MTU set, up; the tunnel (VXLAN, or a WireGuard interface
// with its peer, unnumbered to Uplink), tagged, MTU set, up; and the
// cross-connect both ways. The undo removes what was made, also after a
// failure.
func (s PlainRemoteSide) Make(ctx context.Context, c *Client) (PlainUndo, error) {
	var undo PlainUndo
	mtu := uint32(1500 - 50) // outer IP, UDP, VXLAN, inner Ethernet
	if s.WireGuard {
		mtu = 1500 - 60 // outer IP, UDP, WireGuard header and tag
	}
	sock, err := c.CreateMemifSocket(ctx, s.Socket)
	if err != nil {
		return undo, err
	}
	undo.push(func(ctx context.Context) { _ = c.DeleteMemifSocket(ctx, sock) })
	m, err := c.CreateMemif(ctx, MemifSpec{SocketID: sock, IP: s.WireGuard})
	if err != nil {
		return undo, err
	}
	undo.push(func(ctx context.Context) { _ = c.DeleteMemif(ctx, m) })
	if s.WireGuard {
		if err := c.SetInterfaceTable(ctx, m, s.Table, false); err != nil {
			return undo, err
		}
		if err := c.AddInterfaceAddress(ctx, m, s.Theirs); err != nil {
			return undo, err
		}
		r := Route{Table: s.Table, Prefix: s.Mine, Via: m}
		if err := c.CreateRoute(ctx, r); err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteRoute(ctx, r) })
	}
	if err := plainSetup(ctx, c, m, s.MemifTag, mtu); err != nil {
		return undo, err
	}
	var tun SwIfIndex
	if s.WireGuard {
		if tun, err = c.CreateWireguardInterface(ctx, WireguardInterfaceSpec{PrivateKey: s.PrivateKey, Src: s.Local, Port: s.Port}); err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteWireguardInterface(ctx, tun) })
		peer, err := c.CreateWireguardPeer(ctx, WireguardPeerSpec{Interface: tun, PublicKey: s.PeerKey, Endpoint: s.Remote, Port: s.Port,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
		if err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteWireguardPeer(ctx, peer) })
		if err := c.SetInterfaceUnnumbered(ctx, tun, s.Uplink); err != nil {
			return undo, err
		}
	} else {
		t := VxlanTunnel{Src: s.Local, Dst: s.Remote, VNI: s.VNI}
		if tun, err = c.CreateVxlanTunnel(ctx, t); err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteVxlanTunnel(ctx, t) })
	}
	if err := plainSetup(ctx, c, tun, s.TunTag, mtu); err != nil {
		return undo, err
	}
	if s.WireGuard {
		for _, x := range []L3XC{{Rx: m, Tx: tun, NextHop: s.Theirs.Addr()}, {Rx: tun, Tx: m, NextHop: s.Mine.Addr()}} {
			if err := c.CreateL3XC(ctx, x); err != nil {
				return undo, err
			}
			undo.push(func(ctx context.Context) { _ = c.DeleteL3XC(ctx, x.Rx, false) })
		}
		return undo, nil
	}
	for _, x := range []L2XC{{Rx: m, Tx: tun}, {Rx: tun, Tx: m}} {
		if err := c.CreateL2XC(ctx, x); err != nil {
			return undo, err
		}
		undo.push(func(ctx context.Context) { _ = c.DeleteL2XC(ctx, x.Rx) })
	}
	return undo, nil
}

// plainSetup tags idx, sets its MTU and sets it up: three calls.
func plainSetup(ctx context.Context, c *Client, idx SwIfIndex, tag string, mtu uint32) error {
	if err := c.SetInterfaceTag(ctx, idx, tag); err != nil {
		return err
	}
	if err := c.SetInterfaceMTU(ctx, idx, mtu); err != nil {
		return err
	}
	return c.SetInterfaceUp(ctx, idx)
}
