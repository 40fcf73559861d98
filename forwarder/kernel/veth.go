package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethSpec is one workload-facing veth pair.
type vethSpec struct {
	host    string // name in the forwarder's namespace
	role    string
	id      string
	netns   string // the workload's namespace (URL)
	name    string // interface name inside it
	mtu     int
	addrs   []string // CIDRs for the workload end
	routes  []*networkservice.Route
	payload string
	// redirected: the vWire joins this end to the other side with tc
	// redirects, so it gets no IPv6 address of its own (see setHostEnd).
	redirected bool
}

// createVeth makes the pair with its far end created directly in the
// workload's namespace, named, addressed, routed and up. On error nothing
// is left.
//
// Its netlink calls are the fewest that do it (a Connect makes two of
// these; each call is a system call and, but for the look-up, a turn of
// the kernel's rtnl lock): the pair is made with this end up, one look-up
// gives both ends' indexes (a veth's IFLA_LINK is its peer's index in the
// peer's namespace), and the workload's end is configured in one exchange
// on the route socket in its namespace (nsConns: a local vWire's there is
// shared, else one is opened for the call).
func (d *Dataplane) createVeth(s vethSpec) (netlink.Link, error) {
	ns, err := openNetNS(s.netns)
	if err != nil {
		return nil, err
	}
	x, err := d.conns.getNS(ns, s.netns)
	if err != nil {
		return nil, fmt.Errorf("veth %s<->%s: netlink in workload namespace: %w", s.host, s.name, err)
	}
	defer d.conns.put(x)
	err = d.addVeth(s, x.ns)
	if errors.Is(err, errExist) {
		rerr := withHandle(x.ns, s, func(h *netlink.Handle) error { return d.makeRoom(h, s) })
		if rerr != nil {
			return nil, fmt.Errorf("veth %s<->%s: %w", s.host, s.name, rerr)
		}
		err = d.addVeth(s, x.ns)
	}
	if errors.Is(err, errExist) {
		// Held by a closed vWire's link the reaper is deleting.
		d.reap.flush()
		err = d.addVeth(s, x.ns)
	}
	if err != nil {
		return nil, fmt.Errorf("veth %s<->%s: create: %w", s.host, s.name, err)
	}
	link, err := d.nl.LinkByName(s.host)
	if err == nil {
		err = d.setHostEnd(link.Attrs().Index, s)
	}
	if err == nil {
		if peer := link.Attrs().ParentIndex; peer > 0 {
			err = configureEnd(x.rtnl, peer, s, true)
		} else {
			err = fmt.Errorf("%s: the kernel gave no peer index", s.host)
		}
	}
	if err != nil {
		if link != nil {
			_ = d.nl.LinkDel(link)
		} else {
			_ = d.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: s.host}})
		}
		return nil, fmt.Errorf("veth %s<->%s: %w", s.host, s.name, err)
	}
	return link, nil
}

// withHandle calls f with a netlink handle in ns (s's workload namespace).
func withHandle(ns netns.NsHandle, s vethSpec, f func(h *netlink.Handle) error) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in workload namespace %s: %w", s.netns, err)
	}
	defer h.Delete()
	return f(h)
}

// makeRoom frees the workload interface name s.name in h's namespace when
// a vWire's end holds it: renamed out of the way (`vwr<hash>`), down, and
// left to the reaper, so that the name is free at once instead of after
// the reaper's next pass (tens of milliseconds). That end is a closed
// vWire's waiting for the reaper (a client that asks again for the name it
// just closed), a leftover of this vWire's, or a live older vWire's (a
// client that requests anew under a new connection id before closing the
// old one): the newer Request wins, as on the VPP dataplane, and the older
// vWire's Close finds its end gone (or renamed) and leaves the new one
// alone. A link that is not a vWire's is never touched: the error says so.
// Nil when the name is free.
func (d *Dataplane) makeRoom(h *netlink.Handle, s vethSpec) error {
	l, err := h.LinkByName(s.name)
	if err != nil {
		return nil // free (again)
	}
	role, id, ok := parseAlias(l.Attrs().Alias)
	if !ok || role != roleWL {
		return fmt.Errorf("interface name %q in the workload's namespace is taken by a link that is not a vWire's (alias %q): left alone", s.name, l.Attrs().Alias)
	}
	if id != s.id && d.live(id) {
		d.log.Info("interface name taken over from an older vWire", "conn", s.id, "name", s.name, "older", id)
	}
	err = h.LinkSetDown(l)
	if err == nil {
		err = h.LinkSetGroup(l, reapGroup)
	}
	if err == nil {
		err = h.LinkSetName(l, retiredName(id, s.name))
	}
	if err == nil {
		if ns, err := openNetNS(s.netns); err == nil {
			d.reap.enqueue(reapCall{ns: ns, inNS: true, marked: true})
		}
		return nil
	}
	d.log.Debug("rename a vWire's interface out of the way; deleting it", "conn", s.id, "name", s.name, "err", err)
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s of vWire %s: %w", s.name, id, err)
	}
	return nil
}

// retiredName is the name a vWire id's interface name takes on its way
// out, freeing name for the next vWire that wants it.
func retiredName(id, name string) string {
	sum := sha256.Sum256([]byte(id + "/" + name))
	return "vwr" + hex.EncodeToString(sum[:5])
}

// live reports whether id's vWire is built or claimed here.
func (d *Dataplane) live(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.built[id]
	return ok || d.orphans[id]
}

// addVeth asks for the pair: this end named s.host and up, the peer named
// s.name in ns (down: a veth end cannot be set up before its peer is
// registered, and the peer is made first). The kernel takes no alias at
// creation. netlink's LinkAdd would look the link up again afterwards,
// for its index only; the caller's look-up gives both indexes.
func (d *Dataplane) addVeth(s vethSpec, ns netns.NsHandle) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: d.rtnl}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.host)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.name))
	peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu)))
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(ns)))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// setHostEnd gives the end in the forwarder's namespace its alias (the
// kernel takes none at creation) and, on a redirected side, turns off its
// IPv6 address generation in the same request: frames arriving there are
// redirected before any IP stack sees them, and a link-local address
// would only send the forwarder's own duplicate address detection and
// router solicitations into the workload's interface (and cost the kernel
// addrconf work on every Connect). Routed sides keep it: their end takes
// part in neighbour discovery for the workload.
func (d *Dataplane) setHostEnd(index int, s vethSpec) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: d.rtnl}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias(s.role, s.id))))
	if s.redirected {
		spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		inet6 := spec.AddRtAttr(unix.AF_INET6, nil)
		inet6.AddRtAttr(unix.IFLA_INET6_ADDR_GEN_MODE, []byte{nl.IN6_ADDR_GEN_MODE_NONE})
		req.AddData(spec)
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("alias %s: %w", s.host, err)
	}
	return nil
}

// configurePeerWith sets the workload end peer up through h, a handle in
// the workload's namespace: alias, addresses, up, routes.
func configurePeerWith(h *netlink.Handle, peer netlink.Link, s vethSpec) error {
	if err := h.LinkSetAlias(peer, alias(roleWL, s.id)); err != nil {
		return fmt.Errorf("alias %s: %w", s.name, err)
	}
	for _, a := range s.addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
		if err := h.AddrAdd(peer, addr); err != nil && !errors.Is(err, errExist) {
			return fmt.Errorf("add address %s to %s: %w", a, s.name, err)
		}
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up: %w", s.name, err)
	}
	for _, r := range s.routes {
		dst, err := parsePrefix(r.GetPrefix())
		if err != nil {
			return fmt.Errorf("route %q: %w", r.GetPrefix(), err)
		}
		route := &netlink.Route{LinkIndex: peer.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}
		if nh := r.GetNextHop(); nh != "" {
			route.Gw = net.ParseIP(nh)
			route.Scope = netlink.SCOPE_UNIVERSE
		}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.GetPrefix(), s.name, err)
		}
	}
	return nil
}

// readdress gives an existing workload interface the spec's addresses and
// routes: what it has beyond them (a previous endpoint's) goes, what it
// lacks is added. The interface itself stays, and with it the workload's
// view of it (name, index, sockets bound to it).
func readdress(s vethSpec) error {
	ns, err := openNetNS(s.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in workload namespace: %w", err)
	}
	defer h.Delete()
	peer, err := h.LinkByName(s.name)
	if err != nil {
		return fmt.Errorf("find %s in workload namespace: %w", s.name, err)
	}
	if peer.Attrs().Alias != alias(roleWL, s.id) {
		return fmt.Errorf("%s in the workload namespace is not this vWire's (alias %q)", s.name, peer.Attrs().Alias)
	}
	want := map[string]bool{}
	for _, a := range s.addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
		want[addr.IPNet.String()] = true
	}
	have, err := h.AddrList(peer, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", s.name, err)
	}
	for _, a := range have {
		// IPv6 link-local addresses are the kernel's; 169.254/16 ones may
		// well be a vWire's (the icmp-responder's default range).
		if (a.IP.To4() == nil && a.IP.IsLinkLocalUnicast()) || want[a.IPNet.String()] {
			continue
		}
		if err := h.AddrDel(peer, &a); err != nil {
			return fmt.Errorf("remove address %s from %s: %w", a.IPNet, s.name, err)
		}
	}
	routes, err := h.RouteList(peer, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("routes of %s: %w", s.name, err)
	}
	keep := map[string]bool{}
	for _, r := range s.routes {
		if dst, err := parsePrefix(r.GetPrefix()); err == nil {
			keep[dst.String()] = true
		}
	}
	for _, r := range routes {
		// Connected and link-local routes come and go with the addresses.
		if r.Dst == nil || r.Protocol == unix.RTPROT_KERNEL || keep[r.Dst.String()] {
			continue
		}
		if err := h.RouteDel(&r); err != nil {
			return fmt.Errorf("remove route %s from %s: %w", r.Dst, s.name, err)
		}
	}
	return configurePeerWith(h, peer, s)
}

func parsePrefix(p string) (*net.IPNet, error) {
	if !strings.Contains(p, "/") {
		if ip := net.ParseIP(p); ip != nil && ip.To4() != nil {
			p += "/32"
		} else {
			p += "/128"
		}
	}
	_, n, err := net.ParseCIDR(p)
	return n, err
}
