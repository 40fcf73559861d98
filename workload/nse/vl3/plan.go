package vl3

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// Plan is one endpoint's share of a vL3: the whole prefix, which every
// client routes over its vWire, and the subnet this endpoint gives its own
// clients addresses from. A single endpoint serves the whole prefix
// (Subnet == Prefix); endpoints that share a prefix each take a subnet of
// it that overlaps no other's. The first address of Subnet is the
// endpoint's own side of every vWire, to clients and to peers.
type Plan struct {
	Prefix netip.Prefix
	Subnet netip.Prefix
}

// NewPlan parses a prefix and a subnet of it; subnet "" is the whole
// prefix. Both are masked; each must hold at least 4 addresses.
func NewPlan(prefix, subnet string) (Plan, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return Plan{}, fmt.Errorf("vl3: prefix %q: %w", prefix, err)
	}
	p = p.Masked()
	s := p
	if subnet != "" {
		if s, err = netip.ParsePrefix(subnet); err != nil {
			return Plan{}, fmt.Errorf("vl3: subnet %q: %w", subnet, err)
		}
		s = s.Masked()
	}
	plan := Plan{Prefix: p, Subnet: s}
	return plan, plan.validate()
}

func (p Plan) validate() error {
	if !p.Prefix.IsValid() || !p.Subnet.IsValid() {
		return errors.New("vl3: no prefix")
	}
	if p.Subnet.Bits() > p.Subnet.Addr().BitLen()-2 {
		return fmt.Errorf("vl3: subnet %s is too small (at least 4 addresses)", p.Subnet)
	}
	if !within(p.Subnet, p.Prefix) {
		return fmt.Errorf("vl3: subnet %s is not inside the prefix %s", p.Subnet, p.Prefix)
	}
	return nil
}

// Shared reports whether the endpoint serves only part of the prefix: the
// rest is reached through peers.
func (p Plan) Shared() bool { return p.Subnet != p.Prefix }

// Gateway is the endpoint's address: the first of its subnet.
func (p Plan) Gateway() netip.Addr { return p.Subnet.Addr().Next() }

// host is a as a single-address prefix.
func host(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// within reports whether the subnet s lies inside the prefix p.
func within(s, p netip.Prefix) bool {
	return s.Addr().Is4() == p.Addr().Is4() && s.Bits() >= p.Bits() && p.Contains(s.Addr())
}

// clientContext is the IP context of a client's vWire: its address, the
// endpoint's, a route to the whole prefix on the client's side and to the
// client's address on the endpoint's.
func (p Plan) clientContext(addr netip.Addr) *networkservice.IPContext {
	return &networkservice.IPContext{
		SrcIpAddrs: []string{host(addr)},
		DstIpAddrs: []string{host(p.Gateway())},
		SrcRoutes:  []*networkservice.Route{{Prefix: p.Prefix.String()}},
		DstRoutes:  []*networkservice.Route{{Prefix: host(addr)}},
	}
}

// Peer vWires. The endpoint that asks for one (the client side) proposes
// its half of the IP context in its Request: its gateway address and its
// subnet as the route back to it (src_ip_addrs, dst_routes). The peer that
// answers adds its own half (dst_ip_addrs, src_routes). Each side ends up
// with its gateway on its interface and a route to the other's subnet
// through it; IP forwarding and proxy ARP do the rest.

// offer is the IP context an endpoint proposes when it asks a peer for a
// vWire.
func (p Plan) offer() *networkservice.IPContext {
	return &networkservice.IPContext{
		SrcIpAddrs: []string{host(p.Gateway())},
		DstRoutes:  []*networkservice.Route{{Prefix: p.Subnet.String()}},
	}
}

// answer is a peer's reply to an offer (or to a refresh, which carries the
// earlier reply): the asking peer's subnet, checked against this plan, and
// the full IP context.
func (p Plan) answer(ipc *networkservice.IPContext) (*networkservice.IPContext, netip.Prefix, error) {
	subnet, err := p.peerSubnet("dst_routes", ipc.GetDstRoutes())
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	if len(ipc.GetSrcIpAddrs()) != 1 {
		return nil, netip.Prefix{}, fmt.Errorf("src_ip_addrs: want the peer's one address, got %q", ipc.GetSrcIpAddrs())
	}
	addr, err := netip.ParsePrefix(ipc.GetSrcIpAddrs()[0])
	if err != nil || !subnet.Contains(addr.Addr()) {
		return nil, netip.Prefix{}, fmt.Errorf("src_ip_addrs: %q is not an address of the peer's subnet %s", ipc.GetSrcIpAddrs()[0], subnet)
	}
	return &networkservice.IPContext{
		SrcIpAddrs: []string{host(addr.Addr())},
		DstIpAddrs: []string{host(p.Gateway())},
		SrcRoutes:  []*networkservice.Route{{Prefix: p.Subnet.String()}},
		DstRoutes:  []*networkservice.Route{{Prefix: subnet.String()}},
	}, subnet, nil
}

// accepted checks a peer's reply to an offer and returns the peer's subnet.
func (p Plan) accepted(ipc *networkservice.IPContext) (netip.Prefix, error) {
	return p.peerSubnet("src_routes", ipc.GetSrcRoutes())
}

// peerSubnet is the one route a peer's half of an IP context names: a
// subnet of the prefix that does not overlap this endpoint's own.
func (p Plan) peerSubnet(field string, routes []*networkservice.Route) (netip.Prefix, error) {
	if len(routes) != 1 {
		return netip.Prefix{}, fmt.Errorf("%s: want the peer's one subnet, got %d routes", field, len(routes))
	}
	s, err := netip.ParsePrefix(routes[0].GetPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s: %w", field, err)
	}
	s = s.Masked()
	switch {
	case !within(s, p.Prefix):
		return netip.Prefix{}, fmt.Errorf("%s: the peer's subnet %s is not inside the vL3's prefix %s", field, s, p.Prefix)
	case s.Overlaps(p.Subnet):
		return netip.Prefix{}, fmt.Errorf("%s: the peer's subnet %s overlaps this endpoint's %s", field, s, p.Subnet)
	}
	return s, nil
}

// PeerRoute is a subnet reached through a peer's vWire.
type PeerRoute struct {
	Conn   string // the vWire's connection id, as this endpoint knows it
	Peer   string // the peer endpoint's name
	Subnet netip.Prefix
}

// routeTable keeps the subnets reached through peers, so that two peers
// never claim overlapping subnets. A peer that connects again (it
// restarted) may hold its subnet on a new vWire while the old one expires.
// Not safe for concurrent use: the Service guards it.
type routeTable map[string]PeerRoute

// errOverlap is returned when a peer claims a subnet another peer holds.
var errOverlap = errors.New("overlaps")

// add records r; it reports whether r.Conn is new.
func (t routeTable) add(r PeerRoute) (bool, error) {
	for _, o := range t {
		if o.Conn != r.Conn && o.Peer != r.Peer && o.Subnet.Overlaps(r.Subnet) {
			return false, fmt.Errorf("peer %s's subnet %s %w peer %s's %s", r.Peer, r.Subnet, errOverlap, o.Peer, o.Subnet)
		}
	}
	_, had := t[r.Conn]
	t[r.Conn] = r
	return !had, nil
}

// remove forgets the route of conn.
func (t routeTable) remove(conn string) (PeerRoute, bool) {
	r, ok := t[conn]
	delete(t, conn)
	return r, ok
}

// list is the routes ordered by subnet, then connection.
func (t routeTable) list() []PeerRoute {
	out := make([]PeerRoute, 0, len(t))
	for _, r := range t {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b PeerRoute) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()), cmp.Compare(a.Conn, b.Conn))
	})
	return out
}
