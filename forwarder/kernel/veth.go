package kernel

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netlink"
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
}

// createVeth makes the pair with its far end created directly in the
// workload's namespace, named, addressed, routed and up. On error nothing
// is left.
func (d *Dataplane) createVeth(s vethSpec) (netlink.Link, error) {
	ns, err := openNetNS(s.netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	add := func() error {
		return d.nl.LinkAdd(&netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: s.host, MTU: s.mtu, Alias: alias(s.role, s.id)},
			PeerName:      s.name,
			PeerMTU:       uint32(s.mtu),
			PeerNamespace: netlink.NsFd(int(ns)),
		})
	}
	err = add()
	if errors.Is(err, errExist) {
		// The workload's interface name may still be held by a closed
		// vWire's link that the reaper has not deleted yet.
		d.reap.flush()
		err = add()
	}
	if err != nil {
		return nil, fmt.Errorf("veth %s<->%s: create: %w", s.host, s.name, err)
	}
	link, err := d.nl.LinkByName(s.host)
	if err == nil {
		err = d.nl.LinkSetAlias(link, alias(s.role, s.id))
	}
	if err == nil {
		err = configurePeer(ns, s)
	}
	if err == nil {
		err = d.nl.LinkSetUp(link)
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

// configurePeer sets the workload end up inside its namespace.
func configurePeer(ns netns.NsHandle, s vethSpec) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in workload namespace: %w", err)
	}
	defer h.Delete()
	peer, err := h.LinkByName(s.name)
	if err != nil {
		return fmt.Errorf("find %s in workload namespace: %w", s.name, err)
	}
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
	h, err := netlink.NewHandleAt(ns)
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
	return configurePeer(ns, s)
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
