package forwarder

import (
	"net"
	"net/netip"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/mechanisms"
)

// A vWire between registry domains crosses their boundary (often a NAT):
// the tunnel address the other side must send to is this node's public
// address (--public-ip), not its internal tunnel address. The dataplanes
// know only the tunnel address; the forwarder puts the public one in the
// REMOTE mechanism it gives the other domain, and gives the dataplane back
// the address it can bind: the public one when this host has it, else
// (behind a NAT that maps the public address here) the tunnel address.

// tunnelAddresser is what a dataplane with a tunnel address implements.
type tunnelAddresser interface{ TunnelAddr() netip.Addr }

// crossing says which sides of a vWire are in another registry domain.
type crossing struct {
	next bool // the next hop is another domain's manager
	prev bool // the previous hop is another domain's forwarder
}

// advertise returns m with its own-side tunnel address (param key:
// src_ip on the side that offers, dst_ip on the side that accepts)
// replaced by the public address.
func (f *Forwarder) advertise(m *networkservice.Mechanism, key string) *networkservice.Mechanism {
	if !f.publicIP.IsValid() || m == nil || !mechanisms.IsRemote(m.GetType()) || m.GetParameters()[key] == "" {
		return m
	}
	m = proto.Clone(m).(*networkservice.Mechanism)
	m.Parameters[key] = f.publicIP.String()
	return m
}

// bindable returns m as the dataplane must build it: the public address
// swapped back for the tunnel address when this host does not hold it.
func (f *Forwarder) bindable(m *networkservice.Mechanism, key string) *networkservice.Mechanism {
	if !f.publicIP.IsValid() || f.publicIsLocal || m.GetParameters()[key] != f.publicIP.String() {
		return m
	}
	ta, ok := f.dp.(tunnelAddresser)
	if !ok || !ta.TunnelAddr().IsValid() {
		return m
	}
	m = proto.Clone(m).(*networkservice.Mechanism)
	m.Parameters[key] = ta.TunnelAddr().String()
	return m
}

// Parameter keys of the two tunnel ends, the same in every REMOTE mechanism.
const (
	paramSrcIP = common.SrcIP
	paramDstIP = common.DstIP
)

// HostHas tells whether an interface of this host's network namespace
// holds ip.
func HostHas(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(p.IP); ok && x.Unmap() == ip.Unmap() {
				return true
			}
		}
	}
	return false
}
