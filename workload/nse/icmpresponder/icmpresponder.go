// Package icmpresponder is the simplest useful endpoint: it gives each
// connection a point-to-point address pair and nothing else. The kernel
// answers ping on the endpoint's side of each vWire once a dataplane has
// plugged the interface into the endpoint's network namespace.
package icmpresponder

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/workload/nse"
)

// DefaultCIDR is the pool addresses come from unless told otherwise.
const DefaultCIDR = "169.254.0.0/16"

// Service fills each connection's IP context NSM's point-to-point way: per
// pool, the client's side gets src_ip_addrs [src/32] and src_routes to the
// endpoint's dst/32, the endpoint's side dst_ip_addrs [dst/32] and
// dst_routes to src/32. With an IPv4 and an IPv6 pool a connection gets a
// pair of each.
type Service struct {
	pools []*IPAM
}

var _ nse.Service = (*Service)(nil)

// New returns a Service drawing from cidrs (DefaultCIDR when none).
func New(cidrs ...string) (*Service, error) {
	if len(cidrs) == 0 {
		cidrs = []string{DefaultCIDR}
	}
	s := &Service{}
	for _, c := range cidrs {
		p, err := NewIPAM(c)
		if err != nil {
			return nil, fmt.Errorf("icmp-responder: %w", err)
		}
		for _, q := range s.pools {
			if q.Prefix().Overlaps(p.Prefix()) {
				return nil, fmt.Errorf("icmp-responder: cidr %s overlaps %s", p.Prefix(), q.Prefix())
			}
		}
		s.pools = append(s.pools, p)
	}
	return s, nil
}

// Pools are the IPAMs of the service, in the order of its CIDRs.
func (s *Service) Pools() []*IPAM { return s.pools }

// Request allocates (or, on a refresh, finds) the connection's pairs and
// puts them in its IP context, replacing stale addresses of our pools.
func (s *Service) Request(_ context.Context, conn *networkservice.Connection) error {
	if conn.Context == nil {
		conn.Context = &networkservice.ConnectionContext{}
	}
	if conn.Context.IpContext == nil {
		conn.Context.IpContext = &networkservice.IPContext{}
	}
	ipc := conn.Context.IpContext
	exclude := parsePrefixes(ipc.GetExcludedPrefixes())

	pairs := make([]Pair, 0, len(s.pools))
	for _, p := range s.pools {
		pair, err := p.Allocate(conn.GetId(), wanted(p, ipc), exclude)
		if err != nil {
			for _, q := range s.pools[:len(pairs)] {
				q.Release(conn.GetId())
			}
			if errors.Is(err, ErrExhausted) {
				return status.Errorf(codes.ResourceExhausted, "icmp-responder: connection %s: %v", conn.GetId(), err)
			}
			return status.Errorf(codes.Internal, "icmp-responder: connection %s: %v", conn.GetId(), err)
		}
		pairs = append(pairs, pair)
	}
	for i, p := range s.pools {
		set(ipc, p, pairs[i])
	}
	return nil
}

// Close releases the connection's pairs.
func (s *Service) Close(_ context.Context, conn *networkservice.Connection) error {
	for _, p := range s.pools {
		p.Release(conn.GetId())
	}
	return nil
}

// wanted is the pair a connection already carries from pool p: what an
// endpoint restarted under a live connection finds in its refresh.
func wanted(p *IPAM, ipc *networkservice.IPContext) Pair {
	var w Pair
	for _, s := range parsePrefixes(ipc.GetSrcIpAddrs()) {
		if p.Contains(s.Addr()) {
			w.Src = s
			break
		}
	}
	for _, d := range parsePrefixes(ipc.GetDstIpAddrs()) {
		if p.Contains(d.Addr()) {
			w.Dst = d
			break
		}
	}
	return w
}

// set puts pair in ipc, dropping other addresses and routes of pool p.
func set(ipc *networkservice.IPContext, p *IPAM, pair Pair) {
	ipc.SrcIpAddrs = append(dropPool(ipc.SrcIpAddrs, p), pair.Src.String())
	ipc.DstIpAddrs = append(dropPool(ipc.DstIpAddrs, p), pair.Dst.String())
	ipc.SrcRoutes = append(dropPoolRoutes(ipc.SrcRoutes, p), &networkservice.Route{Prefix: pair.Dst.String()})
	ipc.DstRoutes = append(dropPoolRoutes(ipc.DstRoutes, p), &networkservice.Route{Prefix: pair.Src.String()})
}

func dropPool(addrs []string, p *IPAM) []string {
	return slices.DeleteFunc(slices.Clone(addrs), func(a string) bool {
		pr, err := netip.ParsePrefix(a)
		return err == nil && p.Contains(pr.Addr())
	})
}

func dropPoolRoutes(routes []*networkservice.Route, p *IPAM) []*networkservice.Route {
	return slices.DeleteFunc(slices.Clone(routes), func(r *networkservice.Route) bool {
		pr, err := netip.ParsePrefix(r.GetPrefix())
		return err == nil && pr.IsSingleIP() && p.Contains(pr.Addr())
	})
}

func parsePrefixes(ss []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
