package kernel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmkernel "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	nsmvxlan "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/vxlan"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vwire/vwire/internal/netnsrun"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// WIREGUARD in the kernel dataplane.
//
// Each vWire side that is WIREGUARD gets its own WireGuard device (named
// and aliased like every other link of ours) with its own key pair, its own
// UDP listening port and exactly one peer, the other node's device, whose
// allowed IPs are everything: the device is point to point. The device is
// the kernel's where it has WireGuard, else wireguard-go's in this process
// on a TUN device (wguser.go); either is a link in the forwarder's
// namespace, and the rest below holds for both.
//
// WireGuard carries IP packets, not Ethernet frames, so the tc redirect that
// joins a veth and a VXLAN device cannot join a veth and a WireGuard device
// (a redirect into the veth would send packets with no Ethernet header).
// Such a vWire is cross-connected by routing in the forwarder's namespace
// instead, still without a bridge:
//
//   - a policy rule per side and family, "iif <side> lookup <table of that
//     side>", and in that table one default route per family out of the
//     other side: "dev <wg>" into a WireGuard device, "via <workload
//     address> dev <veth> onlink" into an Ethernet side (a veth or VXLAN
//     device), like the VPP dataplane's l3xc;
//   - on the Ethernet side, proxy ARP answers the workload's ARP for any
//     address, and proxy NDP entries its neighbour solicitations for the
//     addresses beyond the other side (the rule steers the look-up to the
//     WireGuard device);
//   - forwarding is switched on per device, never for the whole namespace
//     where the kernel allows it (IPv6 before Linux 6.17 does not: see
//     forwardIPv6).
//
// Consequences, said plainly:
//   - WIREGUARD is neither offered nor accepted for an ETHERNET payload: it
//     would need an Ethernet-in-IP encapsulation the kernel does not have
//     (the VPP dataplane refuses it too).
//   - The IPv4 reverse-path filter passes the vWire's packets in any mode
//     (net.ipv4.conf.all.rp_filter 1 or 2 included): for a packet it
//     forwards, the kernel looks the source up as if the packet came in
//     from the device it goes out of, and that device's rule steers the
//     look-up into the table whose route leaves by the side the packet
//     came in on. Nothing needs switching off (the devices' own rp_filter
//     is set to 0 all the same).
//   - Without WireGuard (no "wireguard" generic netlink family and no
//     /dev/net/tun, or Config.WireGuard says so) WIREGUARD is simply not
//     offered or accepted.
//   - A userspace device's keys and sessions live in this process: a
//     restarted forwarder offers (or accepts) the vWire anew with new keys
//     on the next refresh, and the other node rebuilds its side to match.

// Ports and routing tables of WireGuard devices.
const (
	// wgFirstPort and wgPorts bound the UDP ports the devices listen on,
	// one per device.
	wgFirstPort = wireguard.DefaultPort
	wgPorts     = 4096
	// wgTableBase is the first routing table of routed cross-connects; a
	// vWire uses two, numbered from the port of its WireGuard device.
	wgTableBase = 0x7677_0000
	// wgRulePriority is the priority of the rules that steer packets from
	// a side of a routed cross-connect into its table: before the main
	// table (32766), after the local one (0).
	wgRulePriority = 1000
	// wgOverhead is what WireGuard over IPv4 adds to a packet: outer IP,
	// UDP, WireGuard's data header and Poly1305 tag (IPv6 adds 20).
	wgOverhead = 20 + 8 + 16 + 16
	// wgFamily is the generic netlink family of kernel WireGuard.
	wgFamily = "wireguard"
)

// Sentinel errors of WireGuard.
var (
	errNoWireguard = errors.New("wireguard: this forwarder has no WireGuard (none in the kernel, no /dev/net/tun or switched off)")
	errNoFreePort  = errors.New("wireguard: no free listening port")
	errPortInUse   = errors.New("wireguard: listening port in use")
)

// wgHold is what one side of a vWire holds for its WireGuard device. The
// private key never leaves this process (and the kernel).
type wgHold struct {
	private [wireguard.KeyLen]byte
	port    uint16
}

// portAllocator hands out WireGuard listening ports from first to
// first+n-1. Allocate starts its search at a random point of the range.
type portAllocator struct {
	first, n int

	mu   sync.Mutex      // guards used
	used map[uint16]bool // ports taken
}

func newPortAllocator(first, n int) *portAllocator {
	return &portAllocator{first: first, n: n, used: map[uint16]bool{}}
}

// Allocate takes a free port, or fails with errNoFreePort.
func (a *portAllocator) Allocate() (uint16, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := rand.IntN(a.n)
	for i := range a.n {
		p := uint16(a.first + (start+i)%a.n)
		if !a.used[p] {
			a.used[p] = true
			return p, nil
		}
	}
	return 0, errNoFreePort
}

// Reserve takes a given port (one found on a device after a restart).
func (a *portAllocator) Reserve(p uint16) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if int(p) < a.first || int(p) >= a.first+a.n {
		return fmt.Errorf("wireguard: port %d is outside %d-%d", p, a.first, a.first+a.n-1)
	}
	if a.used[p] {
		return fmt.Errorf("%w: %d", errPortInUse, p)
	}
	a.used[p] = true
	return nil
}

// Release returns p to the free pool; releasing a free port does nothing.
func (a *portAllocator) Release(p uint16) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, p)
}

// wgTables returns the two routing tables of a routed cross-connect whose
// WireGuard device listens on port: packets from the incoming side are
// looked up in the first, from the outgoing side in the second.
func wgTables(port uint16) (fromIn, fromOut int) {
	t := wgTableBase + 2*(int(port)-wgFirstPort)
	return t, t + 1
}

// openWireguard picks the WireGuard of the forwarder's namespace as mode
// asks: the kernel's where it has it (the "wireguard" generic netlink
// family), else wireguard-go in this process on a TUN device; or none.
func (d *Dataplane) openWireguard(mode string) error {
	switch mode {
	case "", WireGuardAuto, WireGuardKernel, WireGuardUserspace:
	case WireGuardOff:
		d.log.Info("WireGuard switched off: WIREGUARD is not offered or accepted")
		return nil
	default:
		return fmt.Errorf("wireguard %q: want one of %v", mode, WireGuardModes)
	}
	_, famErr := d.nl.GenlFamilyGet(wgFamily)
	ports := fmt.Sprintf("%d-%d", wgFirstPort, wgFirstPort+wgPorts-1)
	switch {
	case mode == WireGuardUserspace || mode != WireGuardKernel && famErr != nil:
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			d.log.Warn("no WireGuard: the kernel has none and userspace WireGuard needs /dev/net/tun; WIREGUARD is not offered or accepted", "kernel_err", famErr, "err", err)
			return nil
		}
		d.wg = newWgUser(d.nl, d.inNetNS, d.log)
		d.log.Info("userspace WireGuard (wireguard-go in this process, on TUN devices): WIREGUARD offered for IP payloads", "kernel_wireguard", famErr == nil, "ports", ports)
	case famErr != nil:
		d.log.Info("kernel WireGuard not available and --wireguard kernel asked for no other: WIREGUARD is not offered or accepted", "err", famErr)
		return nil
	default:
		var c *wgctrl.Client
		err := d.inNetNS(func() (err error) {
			c, err = wgctrl.New()
			return err
		})
		if err != nil {
			return fmt.Errorf("wireguard: open wgctrl: %w", err)
		}
		d.wg = &wgKernel{nl: d.nl, ctl: c}
		d.log.Info("kernel WireGuard available: WIREGUARD offered for IP payloads", "ports", ports)
	}
	return nil
}

// WireGuard names the WireGuard implementation in use: "kernel",
// "userspace", or "" for none.
func (d *Dataplane) WireGuard() string {
	if d.wg == nil {
		return ""
	}
	return d.wg.Kind()
}

// wireguardOK reports whether WIREGUARD can be used for conn.
func (d *Dataplane) wireguardOK(conn *networkservice.Connection) error {
	switch {
	case d.wg == nil:
		return errNoWireguard
	case conn.GetPayload() == payload.Ethernet:
		return errors.New("wireguard: carries IP packets, the payload is ETHERNET (use VXLAN)")
	case !d.tunnel.IsValid():
		return errors.New("wireguard: this forwarder has no tunnel address")
	}
	return nil
}

// holdWireguard returns the public key and port that id's side role uses,
// making the key pair and taking the port the first time.
func (d *Dataplane) holdWireguard(id, role string) ([wireguard.KeyLen]byte, uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.wgHeld[id][role]
	if !ok {
		priv, _, err := wireguard.GenerateKey()
		if err != nil {
			return [wireguard.KeyLen]byte{}, 0, err
		}
		port, err := d.wgPorts.Allocate()
		if err != nil {
			return [wireguard.KeyLen]byte{}, 0, err
		}
		h = wgHold{private: priv, port: port}
		d.holdWireguardLocked(id, role, h)
	}
	pub, err := wireguard.PublicKey(h.private)
	return pub, h.port, err
}

func (d *Dataplane) holdWireguardLocked(id, role string, h wgHold) {
	if d.wgHeld[id] == nil {
		d.wgHeld[id] = map[string]wgHold{}
	}
	d.wgHeld[id][role] = h
}

// releaseWireguard frees the port and forgets the key of id's side role.
func (d *Dataplane) releaseWireguard(id, role string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h, ok := d.wgHeld[id][role]; ok {
		d.wgPorts.Release(h.port)
		delete(d.wgHeld[id], role)
	}
	if len(d.wgHeld[id]) == 0 {
		delete(d.wgHeld, id)
	}
}

// offerWireguard is the WIREGUARD offer of id's outgoing side.
func (d *Dataplane) offerWireguard(id string) (*networkservice.Mechanism, error) {
	pub, port, err := d.holdWireguard(id, roleOut)
	if err != nil {
		return nil, err
	}
	p := wireguard.Offer(d.tunnel, port, pub)
	p.MTU = uint32(d.underlayMTU - d.wgOverhead())
	return wireguard.New(p), nil
}

// acceptWireguard completes a WIREGUARD offer for id's incoming side.
func (d *Dataplane) acceptWireguard(id string, conn *networkservice.Connection, m *networkservice.Mechanism) (*networkservice.Mechanism, error) {
	if err := d.wireguardOK(conn); err != nil {
		return nil, err
	}
	offer, err := wireguard.FromOffer(m)
	if err != nil {
		return nil, err
	}
	if offer.SrcIP.Is4() != d.tunnel.Is4() {
		return nil, fmt.Errorf("wireguard: peer %s is not of the address family of %s", offer.SrcIP, d.tunnel)
	}
	pub, port, err := d.holdWireguard(id, roleIn)
	if err != nil {
		return nil, err
	}
	p := wireguard.Accept(offer, d.tunnel, port, pub)
	p.MTU = uint32(d.underlayMTU - d.wgOverhead())
	return wireguard.New(p), nil
}

func (d *Dataplane) wgOverhead() int {
	if d.tunnel.Is6() {
		return wgOverhead + 20
	}
	return wgOverhead
}

// wgEnds are the two ends of a WireGuard tunnel seen from this node.
type wgEnds struct {
	local, remote         netip.Addr
	localPort, remotePort uint16
	localKey, remoteKey   string
}

func wireguardEnds(role string, p wireguard.Params) wgEnds {
	if role == roleIn { // we received the Request: we are the destination
		return wgEnds{p.DstIP, p.SrcIP, p.DstPort, p.SrcPort, p.DstPublicKey, p.SrcPublicKey}
	}
	return wgEnds{p.SrcIP, p.DstIP, p.SrcPort, p.DstPort, p.SrcPublicKey, p.DstPublicKey}
}

// wireguardDevice works out the configuration of id's WireGuard device on
// side role from the agreed mechanism m and what this node holds.
func (d *Dataplane) wireguardDevice(role, id string, m *networkservice.Mechanism) (wgtypes.Config, error) {
	p, err := wireguard.FromMechanism(m)
	if err != nil {
		return wgtypes.Config{}, err
	}
	e := wireguardEnds(role, p)
	// The local end is the tunnel address, or another address this node
	// holds: the public address of an interdomain vWire (--public-ip) is
	// left in place when the host has it. A WireGuard device listens on
	// its port on every address, so either serves.
	if e.local != d.tunnel {
		if _, err := d.mtuOf(e.local); err != nil {
			return wgtypes.Config{}, fmt.Errorf("wireguard: tunnel address %s is not this node's (%s)", e.local, d.tunnel)
		}
	}
	d.mu.Lock()
	h, ok := d.wgHeld[id][role]
	d.mu.Unlock()
	if !ok {
		return wgtypes.Config{}, errors.New("wireguard: this forwarder holds no key for this vWire (did it offer or accept it, before a restart?)")
	}
	pub, err := wireguard.PublicKey(h.private)
	if err != nil {
		return wgtypes.Config{}, err
	}
	if got := wireguard.EncodeKey(pub); got != e.localKey {
		return wgtypes.Config{}, fmt.Errorf("wireguard: the mechanism names public key %s for this node, which holds %s", e.localKey, got)
	}
	if e.localPort != h.port {
		return wgtypes.Config{}, fmt.Errorf("wireguard: the mechanism names port %d for this node, which holds %d", e.localPort, h.port)
	}
	peer, err := wireguard.DecodeKey(e.remoteKey)
	if err != nil {
		return wgtypes.Config{}, err
	}
	return wgDeviceConfig(h.private, h.port, peer, e.remote, e.remotePort), nil
}

// wgDeviceConfig is the whole configuration of a vWire's WireGuard device:
// its key and port, and its one peer, which may send from and is sent
// every address.
func wgDeviceConfig(private [wireguard.KeyLen]byte, port uint16, peer [wireguard.KeyLen]byte, endpoint netip.Addr, endpointPort uint16) wgtypes.Config {
	key := wgtypes.Key(private)
	listen := int(port)
	return wgtypes.Config{
		PrivateKey:   &key,
		ListenPort:   &listen,
		ReplacePeers: true,
		Peers: []wgtypes.PeerConfig{{
			PublicKey:         wgtypes.Key(peer),
			Endpoint:          &net.UDPAddr{IP: endpoint.AsSlice(), Port: int(endpointPort)},
			ReplaceAllowedIPs: true,
			AllowedIPs: []net.IPNet{
				{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
				{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
			},
		}},
	}
}

// createWireguard makes id's WireGuard device on side role, configured and
// up. On error nothing is left.
func (d *Dataplane) createWireguard(role, id string, m *networkservice.Mechanism, mtu int) (netlink.Link, error) {
	if d.wg == nil {
		return nil, errNoWireguard
	}
	cfg, err := d.wireguardDevice(role, id, m)
	if err != nil {
		return nil, err
	}
	return d.wg.Create(linkName(role, id), alias(role, id), mtu, cfg)
}

// routedXC is a routed cross-connect, worked out before anything is made.
type routedXC struct {
	// fromIn and fromOut are the tables of packets arriving on the
	// incoming and the outgoing side.
	fromIn, fromOut int
	// in and out are the incoming and outgoing sides when those are
	// Ethernet sides; nil for WireGuard sides.
	in, out *ethSide
	// v4 and v6 say which families the vWire carries: each gets its
	// rules and routes.
	v4, v6 bool
	// devices are the configurations of the WireGuard devices by name.
	devices map[string]wgtypes.Config
}

// ethSide is the Ethernet side (a veth or VXLAN device) of a routed
// cross-connect and the workload beyond it.
type ethSide struct {
	// gw4 and gw6 are the workload's addresses: packets leave by this side
	// via them. Invalid for a family the workload has no address of.
	gw4, gw6 netip.Addr
	// ndp are the IPv6 addresses beyond the other side this side answers
	// neighbour solicitations for (proxy NDP: IPv6 has no proxy ARP for
	// any address).
	ndp []netip.Addr
}

// planRouted returns the routed cross-connect of a vWire with a WireGuard
// side, nil for one without, or why it cannot be built.
func (d *Dataplane) planRouted(id string, in, out *networkservice.Connection) (*routedXC, error) {
	inWG := in.GetMechanism().GetType() == wireguard.Type
	outWG := out.GetMechanism().GetType() == wireguard.Type
	if !inWG && !outWG {
		return nil, nil
	}
	if in.GetPayload() == payload.Ethernet {
		return nil, errors.New("wireguard: carries IP packets; an ETHERNET payload needs VXLAN")
	}
	ipc := in.GetContext().GetIpContext()
	src, err := hostAddrs("src_ip_addrs", ipc.GetSrcIpAddrs())
	if err != nil {
		return nil, err
	}
	dst, err := hostAddrs("dst_ip_addrs", ipc.GetDstIpAddrs())
	if err != nil {
		return nil, err
	}
	x := &routedXC{devices: map[string]wgtypes.Config{}}
	for _, a := range append(append([]netip.Addr(nil), src...), dst...) {
		x.v4, x.v6 = x.v4 || a.Is4(), x.v6 || a.Is6()
	}
	for _, s := range []struct {
		role string
		wg   bool
		m    *networkservice.Mechanism
	}{{roleIn, inWG, in.GetMechanism()}, {roleOut, outWG, out.GetMechanism()}} {
		if !s.wg {
			continue
		}
		cfg, err := d.wireguardDevice(s.role, id, s.m)
		if err != nil {
			return nil, err
		}
		x.devices[linkName(s.role, id)] = cfg
	}
	role := roleIn
	if !inWG {
		role = roleOut
	}
	d.mu.Lock()
	h := d.wgHeld[id][role] // wireguardDevice found it
	d.mu.Unlock()
	x.fromIn, x.fromOut = wgTables(h.port)
	// The client is beyond the incoming side, the endpoint beyond the
	// outgoing one; the other side's addresses and next hops are what a
	// workload solicits.
	if !inWG {
		if x.in, err = newEthSide("src_ip_addrs", src, dst, ipc.GetSrcRoutes()); err != nil {
			return nil, err
		}
	}
	if !outWG {
		if x.out, err = newEthSide("dst_ip_addrs", dst, src, ipc.GetDstRoutes()); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// hostAddrs parses the addresses of an IP context.
func hostAddrs(field string, addrs []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", field, a, err)
		}
		out = append(out, p.Addr())
	}
	return out, nil
}

func newEthSide(field string, own, other []netip.Addr, routes []*networkservice.Route) (*ethSide, error) {
	s := &ethSide{}
	for _, a := range own {
		switch {
		case a.Is4() && !s.gw4.IsValid():
			s.gw4 = a
		case a.Is6() && !s.gw6.IsValid():
			s.gw6 = a
		}
	}
	if !s.gw4.IsValid() && !s.gw6.IsValid() {
		return nil, fmt.Errorf("%s: a routed (WireGuard) vWire needs the workload's address, got %v", field, own)
	}
	for _, a := range other {
		if a.Is6() {
			s.ndp = append(s.ndp, a)
		}
	}
	for _, r := range routes {
		if nh, err := netip.ParseAddr(r.GetNextHop()); err == nil && nh.Is6() && !slices.Contains(s.ndp, nh) {
			s.ndp = append(s.ndp, nh)
		}
		if p, err := netip.ParsePrefix(r.GetPrefix()); err == nil && p.Addr().Is6() && p.IsSingleIP() && !slices.Contains(s.ndp, p.Addr()) {
			s.ndp = append(s.ndp, p.Addr())
		}
	}
	return s, nil
}

// routeConnect joins in and out by routing (see the top of this file).
func (d *Dataplane) routeConnect(in, out netlink.Link, x *routedXC) error {
	if err := d.routeSide(x, in, x.in, x.fromIn, out, x.out); err != nil {
		return err
	}
	return d.routeSide(x, out, x.out, x.fromOut, in, x.in)
}

// routeSide sends what arrives on from out of to: a rule per family into
// table, and its default routes. fromEth and toEth are from and to when
// those are Ethernet sides.
func (d *Dataplane) routeSide(x *routedXC, from netlink.Link, fromEth *ethSide, table int, to netlink.Link, toEth *ethSide) error {
	name := from.Attrs().Name
	var settings [][2]string
	if x.v4 {
		settings = append(settings, [2]string{"ipv4/conf/" + name + "/forwarding", "1"}, [2]string{"ipv4/conf/" + name + "/rp_filter", "0"})
		if fromEth != nil { // answer the workload's ARP, at once
			settings = append(settings, [2]string{"ipv4/conf/" + name + "/proxy_arp", "1"}, [2]string{"ipv4/neigh/" + name + "/proxy_delay", "0"})
		}
	}
	if x.v6 {
		if err := d.forwardIPv6(name, fromEth != nil); err != nil {
			return err
		}
		if fromEth != nil {
			settings = append(settings, [2]string{"ipv6/conf/" + name + "/proxy_ndp", "1"}, [2]string{"ipv6/neigh/" + name + "/proxy_delay", "0"})
		}
	}
	for _, s := range settings {
		if err := d.writeSysctl("net/"+s[0], s[1]); err != nil {
			return err
		}
	}
	if fromEth != nil {
		for _, a := range fromEth.ndp {
			n := &netlink.Neigh{LinkIndex: from.Attrs().Index, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: a.AsSlice()}
			if err := d.nl.NeighSet(n); err != nil {
				return fmt.Errorf("proxy NDP for %s on %s: %w", a, name, err)
			}
		}
	}
	for _, f := range []struct {
		on     bool
		family int
		bits   int
		gw     func(*ethSide) netip.Addr
	}{
		{x.v4, netlink.FAMILY_V4, 32, func(e *ethSide) netip.Addr { return e.gw4 }},
		{x.v6, netlink.FAMILY_V6, 128, func(e *ethSide) netip.Addr { return e.gw6 }},
	} {
		if !f.on {
			continue
		}
		zero := net.IPv4zero.To4()
		if f.family == netlink.FAMILY_V6 {
			zero = net.IPv6zero
		}
		route := &netlink.Route{Dst: &net.IPNet{IP: zero, Mask: net.CIDRMask(0, f.bits)}, LinkIndex: to.Attrs().Index, Table: table, Scope: netlink.SCOPE_LINK}
		if toEth != nil {
			gw := f.gw(toEth)
			if !gw.IsValid() {
				continue // the workload has no address of this family
			}
			route.Gw, route.Scope, route.Flags = net.IP(gw.AsSlice()), netlink.SCOPE_UNIVERSE, int(netlink.FLAG_ONLINK)
		}
		if err := d.nl.RouteReplace(route); err != nil {
			return fmt.Errorf("route from %s out of %s (table %d): %w", name, to.Attrs().Name, table, err)
		}
		rule := netlink.NewRule()
		rule.Family, rule.Priority, rule.IifName, rule.Table = f.family, wgRulePriority, name, table
		if err := d.nl.RuleAdd(rule); err != nil && !errors.Is(err, errExist) {
			return fmt.Errorf("rule iif %s lookup %d: %w", name, table, err)
		}
	}
	return nil
}

// forwardIPv6 lets IPv6 packets arriving on the link name be forwarded. The
// kernel forwards IPv6 only when the namespace-wide
// net.ipv6.conf.all.forwarding is on, or (Linux 6.17 and later) when the
// incoming device's force_forwarding is: the latter where the kernel has
// it. An Ethernet side (eth) also gets the device's own forwarding, which
// proxy NDP needs; a WireGuard side does not: it would make the device a
// router, which joins the all-routers groups and reports them (MLD)
// through the tunnel as it comes up, starting a handshake from this end
// that crosses the other end's.
func (d *Dataplane) forwardIPv6(name string, eth bool) error {
	if eth {
		if err := d.writeSysctl("net/ipv6/conf/"+name+"/forwarding", "1"); err != nil {
			return err
		}
	}
	err := d.writeSysctl("net/ipv6/conf/"+name+"/force_forwarding", "1")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if v, _ := d.readSysctl("net/ipv6/conf/all/forwarding"); v == "1" {
		return nil
	}
	d.log.Warn("this kernel forwards IPv6 only namespace-wide (no per-device force_forwarding): setting net.ipv6.conf.all.forwarding=1 in the forwarder's namespace for IPv6 over WireGuard (interfaces there stop taking router advertisements unless accept_ra=2)")
	return d.writeSysctl("net/ipv6/conf/all/forwarding", "1")
}

// wgMatches reports whether a device has the configuration want.
func wgMatches(dev *wgtypes.Device, want wgtypes.Config) bool {
	if dev.PrivateKey != *want.PrivateKey || dev.ListenPort != *want.ListenPort || len(dev.Peers) != len(want.Peers) {
		return false
	}
	for i, p := range dev.Peers {
		w := want.Peers[i]
		if p.PublicKey != w.PublicKey || p.Endpoint.String() != w.Endpoint.String() || len(p.AllowedIPs) != len(w.AllowedIPs) {
			return false
		}
	}
	return true
}

// hasRoutes reports whether a routed cross-connect's devices, rules and
// routes are all as planned.
func (d *Dataplane) hasRoutes(in, out netlink.Link, x *routedXC) bool {
	for name, want := range x.devices {
		if d.wg == nil {
			return false
		}
		dev, err := d.wg.Device(name)
		if err != nil || !wgMatches(dev, want) {
			return false
		}
	}
	for _, f := range []struct {
		on     bool
		family int
	}{{x.v4, netlink.FAMILY_V4}, {x.v6, netlink.FAMILY_V6}} {
		if !f.on {
			continue
		}
		rules, err := d.nl.RuleList(f.family)
		if err != nil {
			return false
		}
		for _, s := range []struct {
			from, to netlink.Link
			table    int
		}{{in, out, x.fromIn}, {out, in, x.fromOut}} {
			found := false
			for _, r := range rules {
				found = found || (r.Priority == wgRulePriority && r.IifName == s.from.Attrs().Name && r.Table == s.table)
			}
			if !found {
				return false
			}
			routes, err := d.nl.RouteListFiltered(f.family, &netlink.Route{Table: s.table}, netlink.RT_FILTER_TABLE)
			if err != nil || len(routes) > 1 {
				return false
			}
			// A side whose workload has no address of the family has no
			// route of it.
			if len(routes) == 1 && routes[0].LinkIndex != s.to.Attrs().Index {
				return false
			}
		}
	}
	return true
}

// removeRules deletes the rules of routed cross-connects whose input link
// drop names. Routes and proxy NDP entries go with the links they belong
// to.
func (d *Dataplane) removeRules(drop func(iif string) bool) error {
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := d.nl.RuleList(family)
		if err != nil {
			errs = append(errs, fmt.Errorf("list rules: %w", err))
			continue
		}
		for _, r := range rules {
			if r.Priority != wgRulePriority || r.Table < wgTableBase || r.Table >= wgTableBase+2*wgPorts || !drop(r.IifName) {
				continue
			}
			if err := d.nl.RuleDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("delete rule iif %s lookup %d: %w", r.IifName, r.Table, err))
			}
		}
	}
	return errors.Join(errs...)
}

// reconcileWireguard takes back, after a restart, the keys and ports of the
// WireGuard devices of ours (named in devs by connection id and role) and
// removes rules whose links are gone (ours names every link of ours).
func (d *Dataplane) reconcileWireguard(devs map[string]map[string]string, ours map[string]bool) error {
	var errs []error
	for id, roles := range devs {
		for role, name := range roles {
			if d.wg == nil || d.wg.Kind() != WireGuardKernel {
				// Another run's kernel devices: no keys to take back;
				// they go when the grace ends or a refresh rebuilds them.
				break
			}
			dev, err := d.wg.Device(name)
			if err != nil {
				errs = append(errs, fmt.Errorf("wireguard %s: read: %w", name, err))
				continue
			}
			if err := d.wgPorts.Reserve(uint16(dev.ListenPort)); err != nil {
				errs = append(errs, fmt.Errorf("wireguard %s: %w", name, err))
				continue
			}
			d.mu.Lock()
			d.holdWireguardLocked(id, role, wgHold{private: dev.PrivateKey, port: uint16(dev.ListenPort)})
			d.mu.Unlock()
		}
	}
	if err := d.removeRules(func(iif string) bool { return !ours[iif] }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// inNetNS runs fn in the forwarder's namespace: sockets and
// /proc/sys/net opened there belong to that namespace.
func (d *Dataplane) inNetNS(fn func() error) error {
	if d.netnsPath == "" {
		return fn()
	}
	return netnsrun.InPath(d.netnsPath, fn)
}

// writeSysctl sets key (a path under /proc/sys) in the forwarder's
// namespace.
func (d *Dataplane) writeSysctl(key, value string) error {
	err := d.inNetNS(func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0) })
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// readSysctl reads key (a path under /proc/sys) in the forwarder's
// namespace.
func (d *Dataplane) readSysctl(key string) (string, error) {
	var v []byte
	err := d.inNetNS(func() (err error) {
		v, err = os.ReadFile("/proc/sys/" + key)
		return err
	})
	for len(v) > 0 && (v[len(v)-1] == '\n' || v[len(v)-1] == ' ') {
		v = v[:len(v)-1]
	}
	return string(v), err
}

// updateRouted makes a routed vWire what it must be while keeping its
// Ethernet sides where it can: a veth or VXLAN device built from the same
// mechanism and addresses stays (a workload's veth also when only its
// addresses changed, or after a restart, when what it was built from is
// not known: it is given the addresses it must have). A WireGuard side
// whose configuration changed (the other node restarted with new keys) and
// every side that cannot stay are made anew; the rules and routes are set
// again. The workload keeps its interface while the tunnel is rebuilt. On
// error nothing is left.
func (d *Dataplane) updateRouted(id string, prev built, known bool, now built, in, out *networkservice.Connection, mtu int, x *routedXC) error {
	conns := map[string]*networkservice.Connection{roleIn: in, roleOut: out}
	links := map[string]netlink.Link{}
	for _, role := range []string{roleIn, roleOut} {
		c := conns[role]
		name := linkName(role, id)
		link, err := d.nl.LinkByName(name)
		ours := err == nil && link.Attrs().Alias == alias(role, id)
		if ours && d.keepSide(role, id, prev, known, now, c, link, mtu) {
			links[role] = link
			continue
		}
		if d.wg != nil {
			d.wg.Release(name)
		}
		if ours {
			if err := d.nl.LinkDel(link); err != nil && !errors.Is(err, syscall.ENODEV) {
				d.removeLinks(id)
				return fmt.Errorf("%s side: delete %s: %w", role, name, err)
			}
		}
		if link, err = d.side(role, id, c.GetMechanism(), c.GetContext(), mtu); err != nil {
			d.removeLinks(id)
			return err
		}
		links[role] = link
	}
	names := map[string]bool{linkName(roleIn, id): true, linkName(roleOut, id): true}
	err := d.removeRules(func(iif string) bool { return names[iif] })
	if err == nil {
		err = d.routeConnect(links[roleIn], links[roleOut], x)
	}
	if err != nil {
		d.removeLinks(id)
	}
	return err
}

// keepSide reports whether the existing link of id's side role can stay
// for the connection c (see updateRouted).
func (d *Dataplane) keepSide(role, id string, prev built, known bool, now built, c *networkservice.Connection, link netlink.Link, mtu int) bool {
	switch c.GetMechanism().GetType() {
	case nsmkernel.MECHANISM:
		if _, ok := link.(*netlink.Veth); !ok {
			return false
		}
		if known && prev.mech(role) == now.mech(role) && prev.addrs(role) == now.addrs(role) {
			return true
		}
		if known && prev.mech(role) != now.mech(role) || link.Attrs().MTU != mtu {
			return false
		}
		spec, err := vethSpecFor(role, id, c.GetMechanism(), c.GetContext(), mtu)
		if err == nil {
			err = readdress(spec)
		}
		if err != nil {
			d.log.Info("re-addressing in place failed; rebuilding the side", "conn", id, "role", role, "err", err)
			return false
		}
		return true
	case nsmvxlan.MECHANISM:
		_, ok := link.(*netlink.Vxlan)
		return ok && known && prev.mech(role) == now.mech(role)
	}
	return false
}
