package vpp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/internal/ethtool"
	"github.com/vwire/vwire/internal/netnsrun"
	"github.com/vwire/vwire/internal/tcbpf"
	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// Linux side of KERNEL interfaces: a veth pair whose far end is created in
// the workload's namespace (when VPP cannot make a tap), and the workload
// end's addresses and routes, whichever way it was made.

// netnsPath returns the path of the network namespace a mechanism names.
// The dataplane is given paths only: the manager and the forwarder turn
// inode:// URLs into the path of the descriptor that came with them.
func netnsPath(raw string) (string, error) {
	u, err := inodeurl.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.IsInode() {
		return "", fmt.Errorf("netns %s: an inode URL reached the dataplane without its descriptor; the manager and forwarder give it paths only", raw)
	}
	return u.Path, nil
}

// hostNet is what the dataplane does in Linux; netlinkHost does it, tests
// give a fake.
type hostNet interface {
	// createVeth makes a veth pair, host in the forwarder's namespace
	// (aliased hostAlias, joined to the KERNEL trunk in vlan), its peer
	// set up in the workload's. A vWire's workload end that holds the
	// name there already is deleted first; replaced is its alias.
	createVeth(host, hostAlias string, vlan uint16, w workloadLink) (replaced string, err error)
	// createTrunk makes the KERNEL trunk's veth, or checks that of a
	// previous run (see trunk.go).
	createTrunk(mtu int) error
	// trunkVlans returns the VLAN of each veth joined to the trunk, by
	// link name.
	trunkVlans() (map[string]uint16, error)
	// deleteTrunkVlan takes a VLAN off the trunk (its veth is gone).
	deleteTrunkVlan(vlan uint16) error
	// deleteLink removes a link of ours from the forwarder's namespace.
	deleteLink(name, alias string) error
	// vethState reads a KERNEL side's veth: whether its host end (host,
	// aliased hostAlias) is in the forwarder's namespace, and the alias of
	// the link holding the workload end's name in the workload's namespace
	// ("" when no link has it).
	vethState(host, hostAlias string, w workloadLink) (hostOK bool, heldBy string, err error)
	// configureWorkload sets up a workload end that exists already (a
	// tap's host end).
	configureWorkload(w workloadLink) error
	// uplink reads a host interface of the forwarder's namespace.
	uplink(name string) (uplinkInfo, error)
	// links returns the aliases of the forwarder namespace's links that
	// have one, by link name.
	links() (map[string]string, error)
	close()
}

// uplinkInfo is what VPP copies from the host's uplink interface.
type uplinkInfo struct {
	mac      net.HardwareAddr
	mtu      int
	prefixes []netip.Prefix
	gateways []Route // Via is left unset
}

// netlinkHost is hostNet with netlink, in the forwarder's namespace.
type netlinkHost struct {
	nl *netlink.Handle
}

func newNetlinkHost(netnsPath string) (*netlinkHost, error) {
	if netnsPath == "" {
		nl, err := netlink.NewHandle()
		return &netlinkHost{nl: nl}, err
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	return &netlinkHost{nl: nl}, err
}

func (h *netlinkHost) close() { h.nl.Close() }

func (h *netlinkHost) links() (map[string]string, error) {
	ls, err := h.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := map[string]string{}
	for _, l := range ls {
		if a := l.Attrs().Alias; a != "" {
			out[l.Attrs().Name] = a
		}
	}
	return out, nil
}

func (h *netlinkHost) uplink(name string) (uplinkInfo, error) {
	link, err := h.nl.LinkByName(name)
	if err != nil {
		return uplinkInfo{}, fmt.Errorf("uplink %s: %w", name, err)
	}
	u := uplinkInfo{mac: link.Attrs().HardwareAddr, mtu: link.Attrs().MTU}
	addrs, err := h.nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return uplinkInfo{}, fmt.Errorf("uplink %s: addresses: %w", name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		u.prefixes = append(u.prefixes, netip.PrefixFrom(ip.Unmap(), ones))
	}
	routes, err := h.nl.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return uplinkInfo{}, fmt.Errorf("uplink %s: routes: %w", name, err)
	}
	for _, r := range routes {
		if r.Gw == nil {
			continue
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		gw = gw.Unmap()
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if r.Dst != nil {
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			dst = netip.PrefixFrom(ip.Unmap(), ones)
		}
		u.gateways = append(u.gateways, Route{Prefix: dst, NextHop: gw})
	}
	return u, nil
}

// workloadLink is the workload end of a KERNEL interface.
type workloadLink struct {
	netns  string // path of the workload's namespace
	name   string // interface name inside it
	alias  string
	mtu    int
	addrs  []netip.Prefix
	routes []route
	// noOffload turns checksum offload (and with it TSO) off on the
	// workload's end, so that its packets reach VPP complete, for a vWire
	// whose other side is a tunnel: VPP 25.10's WireGuard encrypts a
	// packet whose checksum was left to offload as it is (the far end
	// drops it: TCP stalled while ping passed), and it mis-segments a GSO
	// frame after popping the trunk's VLAN tag (the inner IP length and
	// checksum are left as they were; no TCP bulk crossed VXLAN).
	noOffload bool
}

// route is a route inside a workload's namespace.
type route struct {
	dst netip.Prefix
	via netip.Addr // zero: on-link
}

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE: no IPv6 link-local address.
const addrGenModeNone = 1

// createVeth makes a veth pair: host in the forwarder's namespace, its peer
// named w.name directly in the workload's namespace, then sets the peer up
// with its addresses and routes, and joins the host end to the KERNEL trunk
// in vlan (internal/tcbpf). On error nothing is left.
//
// The workload's interface name may be held by another vWire's workload
// end: one whose Close has not come yet (a client that requests anew under
// a new connection id, after its old connection expired, asks for the same
// name before the manager closes the old one), or one a failed attempt or
// another dataplane left. A namespace cannot hold two links of one name and
// the newer Request is the one the workload waits for, so that link is
// deleted (with its host end) and its alias returned as replaced; the old
// vWire's Close then finds its veth gone and removes the rest. A link of
// that name that is not a vWire's is left alone and the Request fails.
func (h *netlinkHost) createVeth(host, hostAlias string, vlan uint16, w workloadLink) (replaced string, err error) {
	ns, err := netns.GetFromPath(w.netns)
	if err != nil {
		return "", fmt.Errorf("veth %s: open netns %s: %w", host, w.netns, err)
	}
	defer ns.Close()
	trunk, err := h.nl.LinkByName(trunkPort)
	if err != nil {
		return "", fmt.Errorf("veth %s: KERNEL trunk %s: %w", host, trunkPort, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: host, MTU: w.mtu},
		PeerName:      w.name,
		PeerMTU:       uint32(w.mtu),
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	err = h.nl.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		var ferr error
		if replaced, ferr = freeWorkloadName(ns, w.name); ferr != nil {
			return "", fmt.Errorf("veth %s<->%s: create: %w", host, w.name, errors.Join(err, ferr))
		}
		if replaced != "" {
			err = h.nl.LinkAdd(veth)
		}
	}
	if err != nil {
		return "", fmt.Errorf("veth %s<->%s: create: %w", host, w.name, err)
	}
	link, err := h.nl.LinkByName(host)
	if err == nil {
		err = h.nl.LinkSetAlias(link, hostAlias)
	}
	if err == nil {
		// The host end only passes frames to and from the trunk: no
		// IPv6 link-local address, so the kernel sends no DAD, router
		// solicitation or MLD of its own to the workload.
		err = h.nl.LinkSetIP6AddrGenMode(link, addrGenModeNone)
	}
	if err == nil {
		err = tcbpf.Join(h.nl, link, trunk, vlan, host)
	}
	if err == nil {
		err = configureIn(ns, w)
	}
	if err == nil {
		err = h.nl.LinkSetUp(link)
	}
	if err != nil {
		_ = h.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}})
		_ = h.deleteTrunkVlan(vlan)
		return replaced, fmt.Errorf("veth %s<->%s (VLAN %d): %w", host, w.name, vlan, err)
	}
	return replaced, nil
}

func (h *netlinkHost) vethState(host, hostAlias string, w workloadLink) (bool, string, error) {
	var nf netlink.LinkNotFoundError
	l, err := h.nl.LinkByName(host)
	if err != nil && !errors.As(err, &nf) {
		return false, "", fmt.Errorf("veth %s: %w", host, err)
	}
	hostOK := err == nil && l.Attrs().Alias == hostAlias
	ns, err := netns.GetFromPath(w.netns)
	if err != nil {
		return hostOK, "", fmt.Errorf("veth %s: open netns %s: %w", host, w.netns, err)
	}
	defer ns.Close()
	wh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return hostOK, "", fmt.Errorf("netlink in workload namespace %s: %w", w.netns, err)
	}
	defer wh.Close()
	wl, err := wh.LinkByName(w.name)
	if errors.As(err, &nf) {
		return hostOK, "", nil
	}
	if err != nil {
		return hostOK, "", fmt.Errorf("find %s in workload namespace %s: %w", w.name, w.netns, err)
	}
	return hostOK, wl.Attrs().Alias, nil
}

// freeWorkloadName deletes the link named name in the workload's namespace
// ns when it is a vWire's workload end (alias vwire/wl/..., made by either
// dataplane), and returns its alias; "" when there is no link of that name
// (it went in the meantime). Any other link of that name is an error.
func freeWorkloadName(ns netns.NsHandle, name string) (string, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", fmt.Errorf("netlink in workload namespace: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return "", nil
		}
		return "", fmt.Errorf("find %s in workload namespace: %w", name, err)
	}
	a := l.Attrs().Alias
	if t, ok := ParseTag(a); !ok || t.Role != roleWL {
		return "", fmt.Errorf("%s in the workload namespace is not a vWire's (alias %q): left alone", name, a)
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return "", fmt.Errorf("delete stale %s (%s) in workload namespace: %w", name, a, err)
	}
	return a, nil
}

// deleteTrunkVlan removes the trunk's filter of vlan; a missing one is not
// an error.
func (h *netlinkHost) deleteTrunkVlan(vlan uint16) error {
	trunk, err := h.nl.LinkByName(trunkPort)
	if err != nil {
		return fmt.Errorf("KERNEL trunk %s: %w", trunkPort, err)
	}
	if err := tcbpf.Leave(h.nl, trunk, vlan); err != nil {
		return fmt.Errorf("KERNEL trunk: %w", err)
	}
	return nil
}

// createTrunk makes the KERNEL trunk's veth pair: one end VPP takes, the
// other gets a clsact qdisc for the vWires' filters. A trunk of a previous
// run (with the trunk's alias) is kept; a link of that name without it is
// refused.
func (h *netlinkHost) createTrunk(mtu int) error {
	l, err := h.nl.LinkByName(trunkPort)
	if err == nil {
		if l.Attrs().Alias != trunkAlias {
			return fmt.Errorf("link %s exists and is not the KERNEL trunk's (alias %q)", trunkPort, l.Attrs().Alias)
		}
		return nil
	}
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) {
		return fmt.Errorf("find link %s: %w", trunkPort, err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: trunkPort, MTU: mtu}, PeerName: trunkVPP, PeerMTU: uint32(mtu)}
	if err := h.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s<->%s: create: %w", trunkPort, trunkVPP, err)
	}
	if err := h.setupTrunk(); err != nil {
		_ = h.nl.LinkDel(veth)
		return fmt.Errorf("veth %s<->%s: %w", trunkPort, trunkVPP, err)
	}
	return nil
}

// setupTrunk aliases both trunk ends, turns their IPv6 link-local address
// off (the trunk carries the vWires' frames only), gives the Linux end its
// clsact qdisc and sets both up.
func (h *netlinkHost) setupTrunk() error {
	for _, name := range []string{trunkVPP, trunkPort} {
		l, err := h.nl.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.nl.LinkSetAlias(l, trunkAlias); err != nil {
			return fmt.Errorf("alias %s: %w", name, err)
		}
		if err := h.nl.LinkSetIP6AddrGenMode(l, addrGenModeNone); err != nil {
			return fmt.Errorf("addrgenmode %s: %w", name, err)
		}
		if name == trunkPort {
			if err := tcbpf.AddClsact(h.nl, l); err != nil {
				return err
			}
		}
		if err := h.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return nil
}

// trunkVlans returns the VLAN of each vWire's filter on the trunk, by the
// name of its host veth end.
func (h *netlinkHost) trunkVlans() (map[string]uint16, error) {
	trunk, err := h.nl.LinkByName(trunkPort)
	if err != nil {
		return nil, fmt.Errorf("KERNEL trunk %s: %w", trunkPort, err)
	}
	out, err := tcbpf.Filters(h.nl, trunk)
	if err != nil {
		return nil, fmt.Errorf("KERNEL trunk: %w", err)
	}
	return out, nil
}

// deleteLink removes a link of ours in the forwarder's namespace (a veth's
// peer goes with it); a missing link is not an error, one with another
// alias is left alone.
func (h *netlinkHost) deleteLink(name, alias string) error {
	l, err := h.nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if l.Attrs().Alias != alias {
		return fmt.Errorf("link %s is not ours (alias %q): left alone", name, l.Attrs().Alias)
	}
	if err := h.nl.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// configureWorkload configures the workload end found in the namespace at
// w.netns (a tap's host end, which VPP created there).
func (h *netlinkHost) configureWorkload(w workloadLink) error {
	ns, err := netns.GetFromPath(w.netns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", w.netns, err)
	}
	defer ns.Close()
	return configureIn(ns, w)
}

// configureIn sets the workload end up inside its namespace: alias, MTU,
// addresses, up, routes.
func configureIn(ns netns.NsHandle, w workloadLink) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in workload namespace: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(w.name)
	if err != nil {
		return fmt.Errorf("find %s in workload namespace: %w", w.name, err)
	}
	if err := h.LinkSetAlias(link, w.alias); err != nil {
		return fmt.Errorf("alias %s: %w", w.name, err)
	}
	if w.noOffload {
		if err := netnsrun.In(ns, func() error { return ethtool.SetTxChecksum(w.name, false) }); err != nil {
			return err
		}
	}
	if w.mtu > 0 && link.Attrs().MTU != w.mtu {
		if err := h.LinkSetMTU(link, w.mtu); err != nil {
			return fmt.Errorf("mtu %d on %s: %w", w.mtu, w.name, err)
		}
	}
	for _, a := range w.addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("add address %s to %s: %w", a, w.name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", w.name, err)
	}
	for _, r := range w.routes {
		nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: r.dst.Addr().AsSlice(), Mask: net.CIDRMask(r.dst.Bits(), r.dst.Addr().BitLen())}, Scope: netlink.SCOPE_LINK}
		if r.via.IsValid() {
			nr.Gw = r.via.AsSlice()
			nr.Scope = netlink.SCOPE_UNIVERSE
		}
		if err := h.RouteReplace(nr); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.dst, w.name, err)
		}
	}
	return nil
}

// parseAddrs parses CIDRs (a bare address is a host prefix).
func parseAddrs(what string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or prefix")
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP prefix")
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	return p, nil
}

// parseRoutes parses NSM routes.
func parseRoutes(what string, in []*networkservice.Route) ([]route, error) {
	var out []route
	for _, r := range in {
		dst, err := parsePrefix(r.GetPrefix())
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, r.GetPrefix(), err)
		}
		rt := route{dst: dst.Masked()}
		if nh := r.GetNextHop(); nh != "" {
			if rt.via, err = netip.ParseAddr(nh); err != nil {
				return nil, fmt.Errorf("%s %q: next hop %q is not an IP address", what, r.GetPrefix(), nh)
			}
		}
		out = append(out, rt)
	}
	return out, nil
}

// hostPrefix is a's address as a /32 or /128.
func hostPrefix(p netip.Prefix) netip.Prefix { return netip.PrefixFrom(p.Addr(), p.Addr().BitLen()) }
