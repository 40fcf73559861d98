package kernel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// WIREGUARD in the kernel dataplane.
//
// Each vWire side that is WIREGUARD gets its own kernel WireGuard device
// (named and aliased like every other link of ours) with its own key pair,
// its own UDP listening port and exactly one peer, the other node's device,
// whose allowed IPs are everything: the device is point to point.
//
// WireGuard carries IP packets, not Ethernet frames, so the tc redirect that
// joins a veth and a VXLAN device cannot join a veth and a WireGuard device
// (a redirect into the veth would send packets with no Ethernet header).
// Such a vWire is cross-connected by routing in the forwarder's namespace
// instead, still without a bridge:
//
//   - a policy rule per side, "iif <side> lookup <table of that side>", and
//     in that table one default route out of the other side: "dev <wg>" into
//     a WireGuard device, "via <workload address> dev <veth> onlink" into an
//     Ethernet side (a veth or VXLAN device), like the VPP dataplane's l3xc;
//   - on the Ethernet side, proxy ARP answers the workload's ARP for any
//     address (the rule steers the look-up to the WireGuard device);
//   - forwarding is switched on per device, never for the whole namespace.
//
// Consequences, said plainly:
//   - WIREGUARD is neither offered nor accepted for an ETHERNET payload: it
//     would need an Ethernet-in-IP encapsulation the kernel does not have
//     (the VPP dataplane refuses it too).
//   - The payload must be IPv4: IPv6 would need the namespace-wide
//     net.ipv6.conf.all.forwarding and proxy NDP entries per address, which
//     this dataplane does not set up; Connect says so.
//   - Packets from the tunnel pass the forwarder namespace's reverse-path
//     filter, which looks in the main table: keep
//     net.ipv4.conf.all.rp_filter at 0 there (New warns otherwise).
//   - A kernel without WireGuard (no "wireguard" generic netlink family) is
//     probed once, in New; WIREGUARD is then simply not offered or accepted.

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
	errNoWireguard = errors.New("wireguard: this kernel has no WireGuard (no \"wireguard\" generic netlink family)")
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

// openWireguard probes the kernel for WireGuard in the forwarder's
// namespace and, when present, opens the wgctrl client there.
func (d *Dataplane) openWireguard() error {
	if _, err := d.nl.GenlFamilyGet(wgFamily); err != nil {
		d.log.Info("kernel WireGuard not available: WIREGUARD is not offered or accepted", "err", err)
		return nil
	}
	err := d.inNetNS(func() error {
		c, err := wgctrl.New()
		d.wgctl = c
		return err
	})
	if err != nil {
		return fmt.Errorf("wireguard: open wgctrl: %w", err)
	}
	d.log.Info("kernel WireGuard available: WIREGUARD offered for IP payloads", "ports", fmt.Sprintf("%d-%d", wgFirstPort, wgFirstPort+wgPorts-1))
	if v, err := d.readSysctl("net/ipv4/conf/all/rp_filter"); err == nil && v != "0" {
		d.log.Warn("reverse-path filtering is on in the forwarder's namespace: packets out of WireGuard vWires will be dropped; set net.ipv4.conf.all.rp_filter=0", "rp_filter", v)
	}
	return nil
}

// wireguardOK reports whether WIREGUARD can be used for conn.
func (d *Dataplane) wireguardOK(conn *networkservice.Connection) error {
	switch {
	case d.wgctl == nil:
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
	if e.local != d.tunnel {
		return wgtypes.Config{}, fmt.Errorf("wireguard: tunnel address %s is not this node's (%s)", e.local, d.tunnel)
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
	if d.wgctl == nil {
		return nil, errNoWireguard
	}
	cfg, err := d.wireguardDevice(role, id, m)
	if err != nil {
		return nil, err
	}
	name := linkName(role, id)
	dev := &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := d.nl.LinkAdd(dev); err != nil {
		return nil, fmt.Errorf("wireguard %s (port %d): create: %w", name, *cfg.ListenPort, err)
	}
	link, err := d.nl.LinkByName(name)
	if err == nil {
		err = d.nl.LinkSetAlias(link, alias(role, id))
	}
	if err == nil {
		if err = d.wgctl.ConfigureDevice(name, cfg); err != nil {
			err = fmt.Errorf("configure: %w", err)
		}
	}
	if err == nil {
		err = d.nl.LinkSetUp(link)
	}
	if err != nil {
		_ = d.nl.LinkDel(dev)
		return nil, fmt.Errorf("wireguard %s: %w", name, err)
	}
	return link, nil
}

// routedXC is a routed cross-connect, worked out before anything is made.
type routedXC struct {
	// fromIn and fromOut are the tables of packets arriving on the
	// incoming and the outgoing side.
	fromIn, fromOut int
	// inGW and outGW are the IPv4 addresses of the workloads beyond the
	// incoming and outgoing sides when those are Ethernet sides; invalid
	// for WireGuard sides.
	inGW, outGW netip.Addr
	// devices are the configurations of the WireGuard devices by name.
	devices map[string]wgtypes.Config
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
	for _, a := range append(append([]string(nil), ipc.GetSrcIpAddrs()...), ipc.GetDstIpAddrs()...) {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is6() {
			return nil, fmt.Errorf("wireguard: %s: the kernel dataplane carries IPv4 only over WireGuard", a)
		}
	}
	x := &routedXC{devices: map[string]wgtypes.Config{}}
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
	var err error
	if !inWG {
		if x.inGW, err = firstIPv4("src_ip_addrs", ipc.GetSrcIpAddrs()); err != nil {
			return nil, err
		}
	}
	if !outWG {
		if x.outGW, err = firstIPv4("dst_ip_addrs", ipc.GetDstIpAddrs()); err != nil {
			return nil, err
		}
	}
	return x, nil
}

func firstIPv4(field string, addrs []string) (netip.Addr, error) {
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("%s: %q: %w", field, a, err)
		}
		if p.Addr().Is4() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: a routed (WireGuard) vWire needs the workload's IPv4 address, got %q", field, addrs)
}

// routeConnect joins in and out by routing (see the top of this file).
func (d *Dataplane) routeConnect(in, out netlink.Link, x *routedXC) error {
	if err := d.routeSide(in, x.inGW, x.fromIn, out, x.outGW); err != nil {
		return err
	}
	return d.routeSide(out, x.outGW, x.fromOut, in, x.inGW)
}

// routeSide sends what arrives on from out of to: a rule into table, and
// its default route. fromGW and toGW are the workloads beyond from and to
// when those are Ethernet sides.
func (d *Dataplane) routeSide(from netlink.Link, fromGW netip.Addr, table int, to netlink.Link, toGW netip.Addr) error {
	name := from.Attrs().Name
	settings := [][2]string{{"conf/" + name + "/forwarding", "1"}, {"conf/" + name + "/rp_filter", "0"}}
	if fromGW.IsValid() { // answer the workload's ARP, at once
		settings = append(settings, [2]string{"conf/" + name + "/proxy_arp", "1"}, [2]string{"neigh/" + name + "/proxy_delay", "0"})
	}
	for _, s := range settings {
		if err := d.writeSysctl("net/ipv4/"+s[0], s[1]); err != nil {
			return err
		}
	}
	route := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, LinkIndex: to.Attrs().Index, Table: table, Scope: netlink.SCOPE_LINK}
	if toGW.IsValid() {
		route.Gw, route.Scope, route.Flags = net.IP(toGW.AsSlice()), netlink.SCOPE_UNIVERSE, int(netlink.FLAG_ONLINK)
	}
	if err := d.nl.RouteReplace(route); err != nil {
		return fmt.Errorf("route from %s out of %s (table %d): %w", name, to.Attrs().Name, table, err)
	}
	rule := netlink.NewRule()
	rule.Family, rule.Priority, rule.IifName, rule.Table = netlink.FAMILY_V4, wgRulePriority, name, table
	if err := d.nl.RuleAdd(rule); err != nil && !errors.Is(err, errExist) {
		return fmt.Errorf("rule iif %s lookup %d: %w", name, table, err)
	}
	return nil
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
		if d.wgctl == nil {
			return false
		}
		dev, err := d.wgctl.Device(name)
		if err != nil || !wgMatches(dev, want) {
			return false
		}
	}
	rules, err := d.nl.RuleList(netlink.FAMILY_V4)
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
		routes, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: s.table}, netlink.RT_FILTER_TABLE)
		if err != nil || len(routes) != 1 || routes[0].LinkIndex != s.to.Attrs().Index {
			return false
		}
	}
	return true
}

// removeRules deletes the rules of routed cross-connects whose input link
// drop names. Routes go with the links they leave by.
func (d *Dataplane) removeRules(drop func(iif string) bool) error {
	rules, err := d.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	var errs []error
	for _, r := range rules {
		if r.Priority != wgRulePriority || r.Table < wgTableBase || r.Table >= wgTableBase+2*wgPorts || !drop(r.IifName) {
			continue
		}
		if err := d.nl.RuleDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("delete rule iif %s lookup %d: %w", r.IifName, r.Table, err))
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
			if d.wgctl == nil {
				break
			}
			dev, err := d.wgctl.Device(name)
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

// inNetNS runs fn on an OS thread in the forwarder's namespace: sockets
// and /proc/sys/net opened there belong to that namespace.
func (d *Dataplane) inNetNS(fn func() error) error {
	if d.netnsPath == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread stays locked, and so ends with this goroutine, if it
		// could not be moved back.
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(d.netnsPath)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", d.netnsPath, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", d.netnsPath, err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
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
