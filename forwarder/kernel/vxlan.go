package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/internal/ethtool"
	"github.com/vwire/vwire/mechanisms/vxlan"
)

// createVxlan makes one VXLAN device for a vWire between this node
// (local) and its peer (remote). On error nothing is left.
//
// Over IPv4 the outer UDP checksum is zero (as RFC 7348 recommends, and as
// VPP sends): with it on, the kernel leaves it partial for the underlay
// device, and a VPP peer reading the underlay with af_packet (a veth)
// takes that partial checksum's offsets for the packet's own and keeps
// them past decapsulation, so the inner frame leaves VPP with offsets the
// kernel drops. When the peer takes no offloaded packets at all
// (vxlan.Params.SrcNoOffload/DstNoOffload, which VPP nodes set), the
// device's checksum offload is turned off too, so that the kernel fills
// in the inner checksums and segments before encapsulation.
func (d *Dataplane) createVxlan(name, role, id string, p vxlan.Params, local, remote net.IP, mtu int) (netlink.Link, error) {
	noOffload := p.PeerNoOffload(role == roleOut)
	created := false
	err := d.inNetNS(func() error {
		err := addVxlan(name, p.VNI, local, remote, p.Port(), mtu)
		if errors.Is(err, unix.EEXIST) {
			// The name, or the VNI, held by a closed vWire's device
			// the reaper is deleting (Disconnect leaves it down).
			d.reap.flush()
			err = addVxlan(name, p.VNI, local, remote, p.Port(), mtu)
		}
		if err != nil {
			return err
		}
		created = true
		if noOffload {
			return ethtool.SetTxChecksum(name, false)
		}
		return nil
	})
	var link netlink.Link
	if err == nil {
		link, err = d.nl.LinkByName(name)
	}
	if err == nil {
		err = d.nl.LinkSetAlias(link, alias(role, id))
	}
	if err == nil {
		err = d.nl.LinkSetUp(link)
	}
	if err != nil {
		if created {
			_ = d.nl.LinkDel(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name}})
		}
		return nil, fmt.Errorf("vxlan %s (vni %d %s->%s): create: %w", name, p.VNI, local, remote, err)
	}
	return link, nil
}

// addVxlan sends the RTM_NEWLINK for a VXLAN device from the calling
// thread's namespace: vishvananda/netlink cannot ask for a zero IPv4 UDP
// checksum (it sends IFLA_VXLAN_UDP_CSUM only when true, and the kernel's
// default is on).
func addVxlan(name string, vni uint32, local, remote net.IP, port uint16, mtu int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("vxlan"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_VXLAN_ID, nl.Uint32Attr(vni))
	if l4, r4 := local.To4(), remote.To4(); l4 != nil && r4 != nil {
		data.AddRtAttr(nl.IFLA_VXLAN_LOCAL, []byte(l4))
		data.AddRtAttr(nl.IFLA_VXLAN_GROUP, []byte(r4))
		data.AddRtAttr(nl.IFLA_VXLAN_UDP_CSUM, nl.Uint8Attr(0))
	} else {
		data.AddRtAttr(nl.IFLA_VXLAN_LOCAL6, []byte(local.To16()))
		data.AddRtAttr(nl.IFLA_VXLAN_GROUP6, []byte(remote.To16()))
	}
	data.AddRtAttr(nl.IFLA_VXLAN_LEARNING, nl.Uint8Attr(0))
	data.AddRtAttr(nl.IFLA_VXLAN_PORT, binary.BigEndian.AppendUint16(nil, port))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	return nil
}
