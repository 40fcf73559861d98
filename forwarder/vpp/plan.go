package vpp

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// A plan is everything Connect will make for one vWire, worked out and
// checked before the first VPP call: a bad parameter fails the plan, and
// nothing is created.
type plan struct {
	id  string
	l3  bool   // IP cross-connect (l3xc); else Ethernet (l2xc)
	mtu uint32 // the vWire's MTU
	ip6 bool   // the vWire carries IPv6 (l3: cross-connect IPv6 too)
	ip4 bool
	in  side
	out side
}

// side is one side of a vWire on this node.
type side struct {
	role string // roleIn or roleOut
	typ  string // mechanism type

	// KERNEL
	tap      bool // tapv2 with its host end in the workload's namespace; else veth + af_packet
	workload workloadLink

	// MEMIF
	memifSocket string // VPP's socket filename (a path, or abstract:...)
	memifSlave  bool   // VPP connects to the endpoint's socket (memiffile.go)

	// VXLAN
	vxlan VxlanTunnel

	// WIREGUARD
	wgIface WireguardInterfaceSpec
	wgPeer  WireguardPeerSpec

	// IPSEC
	ipip  IpipTunnel
	saOut SA
	saIn  SA

	// IP payload: on local sides the VPP interface holds the far end's
	// addresses (so the workload's ARP/ND find it) and reaches the
	// workload's own addresses (peerAddrs) as attached routes; out of any
	// side, packets go to the first of peerAddrs.
	vppAddrs  []netip.Prefix
	peerAddrs []netip.Prefix
}

func (s side) local() bool { return s.typ == kernel.Type || s.typ == memif.Type }

// nextHop is where an l3xc of family ip6 sends packets leaving by this side:
// the first address of that family of the workload beyond it.
func (s side) nextHop(ip6 bool) netip.Addr {
	for _, p := range s.peerAddrs {
		if p.Addr().Is6() == ip6 {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// invalid wraps a planning error: the mechanisms cannot be built here.
func invalid(role string, err error) error {
	return fmt.Errorf("%w: %s side: %w", forwarder.ErrNoMechanism, role, err)
}

// isIPPayload reports whether conn carries IP packets; vwire's default
// payload (as the registry's) is IP.
func isIPPayload(conn *networkservice.Connection) bool {
	return conn.GetPayload() != payload.Ethernet
}

// plan works out and checks the vWire id from in and out. It calls nothing
// in VPP or Linux (but reads the keys held for id).
func (d *Dataplane) plan(id string, in, out *networkservice.Connection) (*plan, error) {
	p := &plan{id: id, in: side{role: roleIn, typ: in.GetMechanism().GetType()}, out: side{role: roleOut, typ: out.GetMechanism().GetType()}}
	ipPayload := isIPPayload(in)
	vx := p.in.typ == vxlan.Type || p.out.typ == vxlan.Type
	p.l3 = ipPayload && !vx
	if ipPayload && vx && (p.in.typ == memif.Type || p.out.typ == memif.Type) {
		return nil, invalid(roleOut, errors.New("an IP-payload memif cannot be carried over VXLAN (an Ethernet tunnel); use WIREGUARD or IPSEC"))
	}
	if !ipPayload && (p.in.typ == wireguard.Type || p.in.typ == ipsec.Type || p.out.typ == wireguard.Type || p.out.typ == ipsec.Type) {
		return nil, invalid(roleOut, errors.New("WIREGUARD and IPSEC carry IP packets; an ETHERNET payload needs VXLAN"))
	}

	ipc := in.GetContext().GetIpContext()
	src, err := parseAddrs("src_ip_addrs", ipc.GetSrcIpAddrs())
	if err != nil {
		return nil, invalid(roleIn, err)
	}
	dst, err := parseAddrs("dst_ip_addrs", ipc.GetDstIpAddrs())
	if err != nil {
		return nil, invalid(roleOut, err)
	}
	srcRoutes, err := parseRoutes("src_routes", ipc.GetSrcRoutes())
	if err != nil {
		return nil, invalid(roleIn, err)
	}
	dstRoutes, err := parseRoutes("dst_routes", ipc.GetDstRoutes())
	if err != nil {
		return nil, invalid(roleOut, err)
	}
	for _, a := range append(append([]netip.Prefix(nil), src...), dst...) {
		if a.Addr().Is6() {
			p.ip6 = true
		} else {
			p.ip4 = true
		}
	}
	if !p.ip6 {
		p.ip4 = true
	}

	p.mtu = d.mtu(in, out)
	// The client's side holds the client's (source) addresses; the
	// endpoint's side the endpoint's (destination) ones.
	if err := d.planSide(id, &p.in, in.GetMechanism(), p, src, dst, srcRoutes); err != nil {
		return nil, invalid(roleIn, err)
	}
	if err := d.planSide(id, &p.out, out.GetMechanism(), p, dst, src, dstRoutes); err != nil {
		return nil, invalid(roleOut, err)
	}
	return p, nil
}

// planSide fills s from its mechanism m. mine are the addresses of the
// workload on this side, theirs the other end's.
func (d *Dataplane) planSide(id string, s *side, m *networkservice.Mechanism, p *plan, mine, theirs []netip.Prefix, routes []route) error {
	if p.l3 {
		if s.local() {
			for _, a := range theirs {
				s.vppAddrs = append(s.vppAddrs, hostPrefix(a))
			}
		}
		// The workload beyond this side: the next hop of the l3xc out of
		// it (a WireGuard interface is multipoint: its peer is found by
		// next hop), and on local sides an attached route.
		for _, a := range mine {
			s.peerAddrs = append(s.peerAddrs, hostPrefix(a))
		}
	}
	switch s.typ {
	case kernel.Type:
		k, err := kernel.FromMechanism(m)
		if err != nil {
			return err
		}
		ns, err := netnsPath(k.NetNSURL)
		if err != nil {
			return err
		}
		s.tap = d.kernelTap
		s.workload = workloadLink{netns: ns, name: k.Name, alias: tagOf(roleWL, id).String(), mtu: int(p.mtu), addrs: mine, routes: routes,
			noOffload: !p.in.local() || !p.out.local()}
	case memif.Type:
		var err error
		if s.memifSocket, s.memifSlave, err = d.memifSocket(s.role, m); err != nil {
			return err
		}
	case vxlan.Type:
		v, err := vxlan.FromMechanism(m)
		if err != nil {
			return err
		}
		local, remote := v.SrcIP, v.DstIP // we sent the Request onward
		if s.role == roleIn {
			local, remote = v.DstIP, v.SrcIP // we received it
		}
		if err := d.checkTunnel(local, remote); err != nil {
			return err
		}
		s.vxlan = VxlanTunnel{Src: local, Dst: remote, Port: v.Port(), VNI: v.VNI}
	case wireguard.Type:
		w, err := wireguard.FromMechanism(m)
		if err != nil {
			return err
		}
		t := tunnelEnds(s.role, w.SrcIP, w.DstIP, w.SrcPort, w.DstPort, w.SrcPublicKey, w.DstPublicKey)
		if err := d.checkTunnel(t.local, t.remote); err != nil {
			return err
		}
		priv, err := d.privateKey(id, s.role, wireguard.Type, t.localKey)
		if err != nil {
			return err
		}
		peer, err := wireguard.DecodeKey(t.remoteKey)
		if err != nil {
			return err
		}
		s.wgIface = WireguardInterfaceSpec{PrivateKey: priv, Src: t.local, Port: t.localPort}
		s.wgPeer = WireguardPeerSpec{PublicKey: peer, Endpoint: t.remote, Port: t.remotePort,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	case ipsec.Type:
		ip, err := ipsec.FromMechanism(m)
		if err != nil {
			return err
		}
		t := tunnelEnds(s.role, ip.SrcIP, ip.DstIP, ip.SrcPort, ip.DstPort, ip.SrcPublicKey, ip.DstPublicKey)
		if err := d.checkTunnel(t.local, t.remote); err != nil {
			return err
		}
		priv, err := d.privateKey(id, s.role, ipsec.Type, t.localKey)
		if err != nil {
			return err
		}
		peer, err := ipsec.DecodeKey(t.remoteKey)
		if err != nil {
			return err
		}
		keys, err := ipsec.DeriveSAKeys(priv, peer)
		if err != nil {
			return err
		}
		s.ipip = IpipTunnel{Src: t.local, Dst: t.remote}
		s.saOut = SA{ID: keys.Outbound.SPI, SPI: keys.Outbound.SPI, Key: keys.Outbound.EncryptionKey, Salt: keys.Outbound.Salt,
			UDPSrcPort: t.localPort, UDPDstPort: t.remotePort}
		s.saIn = SA{ID: keys.Inbound.SPI, SPI: keys.Inbound.SPI, Key: keys.Inbound.EncryptionKey, Salt: keys.Inbound.Salt, Inbound: true,
			UDPSrcPort: t.remotePort, UDPDstPort: t.localPort}
	default:
		return fmt.Errorf("mechanism %q is not supported by the VPP dataplane", s.typ)
	}
	return nil
}

// ends are the two ends of a key-named tunnel seen from this node.
type ends struct {
	local, remote         netip.Addr
	localPort, remotePort uint16
	localKey, remoteKey   string
}

func tunnelEnds(role string, srcIP, dstIP netip.Addr, srcPort, dstPort uint16, srcKey, dstKey string) ends {
	if role == roleIn { // we received the Request: we are the destination
		return ends{dstIP, srcIP, dstPort, srcPort, dstKey, srcKey}
	}
	return ends{srcIP, dstIP, srcPort, dstPort, srcKey, dstKey}
}

// checkTunnel checks that this node can be the local end of a tunnel.
func (d *Dataplane) checkTunnel(local, remote netip.Addr) error {
	switch {
	case !d.tunnel.IsValid() || d.uplinkIndex() == NoInterface:
		return errors.New("this forwarder has no uplink (--uplink) for tunnels")
	case local != d.tunnel:
		return fmt.Errorf("tunnel address %s is not this node's (%s)", local, d.tunnel)
	case remote.Is4() != local.Is4():
		return fmt.Errorf("peer %s is not of the address family of %s", remote, local)
	}
	return nil
}

// Overheads of the tunnels over an IPv4 underlay (IPv6 adds 20).
const (
	// VXLAN: outer IP, UDP, VXLAN, inner Ethernet.
	vxlanOverhead = 20 + 8 + 8 + 14
	// WireGuard: outer IP, UDP, WireGuard data header, Poly1305 tag.
	wireguardOverhead = 20 + 8 + 16 + 16
	// ESP in UDP over IP-in-IP with AES-GCM: outer IP, UDP, ESP header, IV,
	// at most 3 bytes of padding, pad length and next header, ICV.
	ipsecOverhead = 20 + 8 + 8 + 8 + 3 + 2 + 16
	// DefaultMTU is a vWire's MTU when no tunnel or endpoint asks less.
	DefaultMTU = 1500
)

func (d *Dataplane) overhead(typ string) int {
	o := 0
	switch typ {
	case vxlan.Type:
		o = vxlanOverhead
	case wireguard.Type:
		o = wireguardOverhead
	case ipsec.Type:
		o = ipsecOverhead
	default:
		return 0
	}
	if d.tunnel.Is6() {
		o += 20
	}
	return o
}

// mtu is the smallest MTU on the path: the underlay's less the tunnel's
// overhead, what either mechanism advertises, what the endpoint asked.
func (d *Dataplane) mtu(in, out *networkservice.Connection) uint32 {
	mtu := DefaultMTU
	for _, m := range []*networkservice.Mechanism{in.GetMechanism(), out.GetMechanism()} {
		if o := d.overhead(m.GetType()); o > 0 && d.underlayMTU-o < mtu {
			mtu = d.underlayMTU - o
		}
		if v := mechanismMTU(m); v > 0 && v < mtu {
			mtu = v
		}
	}
	if v := int(out.GetContext().GetMTU()); v > 0 && v < mtu {
		mtu = v
	}
	return uint32(mtu)
}

func mechanismMTU(m *networkservice.Mechanism) int {
	var v uint32
	switch m.GetType() {
	case kernel.Type:
		p, _ := kernel.FromOffer(m)
		v = p.MTU
	case vxlan.Type:
		p, _ := vxlan.FromOffer(m)
		v = p.MTU
	case wireguard.Type:
		p, _ := wireguard.FromOffer(m)
		v = p.MTU
	case ipsec.Type:
		p, _ := ipsec.FromOffer(m)
		v = p.MTU
	}
	return int(v)
}
