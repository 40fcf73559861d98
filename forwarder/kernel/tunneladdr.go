package kernel

import "net/netip"

// TunnelAddr is the address this dataplane's tunnels bind to: the
// forwarder puts it back in place of a public address this host does not
// hold (interdomain vWires behind a NAT).
func (d *Dataplane) TunnelAddr() netip.Addr { return d.tunnel }
