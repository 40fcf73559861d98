package kernel

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/vwire/vwire/mechanisms/vxlan"
)

// createVxlan makes one VXLAN device for a vWire between this node
// (local) and its peer (remote). On error nothing is left.
func (d *Dataplane) createVxlan(name, role, id string, p vxlan.Params, local, remote net.IP, mtu int) (netlink.Link, error) {
	dev := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId:   int(p.VNI),
		SrcAddr:   local,
		Group:     remote,
		Port:      int(p.Port()),
		Learning:  false,
	}
	if err := d.nl.LinkAdd(dev); err != nil {
		return nil, fmt.Errorf("vxlan %s (vni %d %s->%s): create: %w", name, p.VNI, local, remote, err)
	}
	link, err := d.nl.LinkByName(name)
	if err == nil {
		err = d.nl.LinkSetAlias(link, alias(role, id))
	}
	if err == nil {
		err = d.nl.LinkSetUp(link)
	}
	if err != nil {
		_ = d.nl.LinkDel(dev)
		return nil, fmt.Errorf("vxlan %s: %w", name, err)
	}
	return link, nil
}
