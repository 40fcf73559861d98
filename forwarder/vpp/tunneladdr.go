package vpp

import "net/netip"

// TunnelAddr is the uplink address VPP's tunnels bind to: the forwarder
// puts it back in place of a public address this host does not hold
// (interdomain vWires behind a NAT). Fixed at New.
func (d *Dataplane) TunnelAddr() netip.Addr { return d.tunnel }
