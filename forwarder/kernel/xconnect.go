package kernel

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// crossConnect redirects every frame arriving on a to b's egress, and back:
// the two links become one wire, for ETHERNET and IP payloads alike, without
// a bridge per vWire. It uses an ingress qdisc with a u32 match-all filter
// and a mirred redirect (cls_matchall is not on every kernel; u32 is).
func (d *Dataplane) crossConnect(a, b netlink.Link) error {
	if err := d.redirect(a, b); err != nil {
		return err
	}
	return d.redirect(b, a)
}

func (d *Dataplane) redirect(from, to netlink.Link) error {
	idx := from.Attrs().Index
	qdisc := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := d.nl.QdiscReplace(qdisc); err != nil && !d.hasIngress(from) {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: 1, Keys: []netlink.TcU32Key{{Mask: 0, Val: 0}}},
		Actions:     []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := d.nl.FilterReplace(filter); err != nil {
		return fmt.Errorf("redirect %s -> %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// clearRedirects removes the ingress filters of a kept side of a vWire
// before it is rejoined: a u32 filter added beside an old match-all one
// would never see a packet.
func (d *Dataplane) clearRedirects(link netlink.Link) error {
	filters, err := d.nl.FilterList(link, netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return fmt.Errorf("filters of %s: %w", link.Attrs().Name, err)
	}
	for _, f := range filters {
		if err := d.nl.FilterDel(f); err != nil {
			return fmt.Errorf("remove filter of %s: %w", link.Attrs().Name, err)
		}
	}
	return nil
}

// hasIngress reports whether link has its ingress qdisc already (a kept
// side of a vWire being rejoined: replacing it is refused).
func (d *Dataplane) hasIngress(link netlink.Link) bool {
	qs, err := d.nl.QdiscList(link)
	if err != nil {
		return false
	}
	for _, q := range qs {
		if _, ok := q.(*netlink.Ingress); ok {
			return true
		}
	}
	return false
}

// hasRedirect reports whether from still redirects to to.
func (d *Dataplane) hasRedirect(from, to netlink.Link) bool {
	filters, err := d.nl.FilterList(from, netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return false
	}
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, a := range u.Actions {
			if m, ok := a.(*netlink.MirredAction); ok && m.Ifindex == to.Attrs().Index {
				return true
			}
		}
	}
	return false
}
