// Package vl3 is the architecture's "simple distributed vL3" on one
// endpoint: every client gets an address from one prefix and a route to the
// whole prefix over its vWire; the endpoint's namespace routes between its
// clients (IP forwarding and proxy ARP), so any two clients of the vL3
// reach each other.
package vl3

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/workload/nse"
)

// Service gives connections vL3 addresses. The first address of the prefix
// is the endpoint's own side of every vWire.
type Service struct {
	prefix  netip.Prefix
	gateway netip.Addr

	mu    sync.Mutex // guards given and byConn
	given map[netip.Addr]string
	by    map[string]netip.Addr
}

var _ nse.Service = (*Service)(nil)

// New returns a Service for prefix (IPv4 or IPv6, at least 4 addresses).
func New(prefix string) (*Service, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("vl3: prefix %q: %w", prefix, err)
	}
	p = p.Masked()
	if p.Bits() > p.Addr().BitLen()-2 {
		return nil, fmt.Errorf("vl3: prefix %s is too small", p)
	}
	return &Service{prefix: p, gateway: p.Addr().Next(), given: map[netip.Addr]string{}, by: map[string]netip.Addr{}}, nil
}

// EnableRouting turns on forwarding and proxy ARP in the endpoint's own
// namespace: the vL3 routes between its clients' interfaces.
func EnableRouting() error {
	for _, f := range []string{
		"/proc/sys/net/ipv4/ip_forward",
		"/proc/sys/net/ipv4/conf/all/proxy_arp",
		"/proc/sys/net/ipv4/conf/default/proxy_arp",
		"/proc/sys/net/ipv6/conf/all/forwarding",
	} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("vl3: enable routing: %w", err)
		}
	}
	return nil
}

// Request gives the connection its address (the same one on a refresh).
func (s *Service) Request(_ context.Context, conn *networkservice.Connection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr, ok := s.by[conn.GetId()]
	if !ok {
		for a := s.gateway.Next(); s.prefix.Contains(a); a = a.Next() {
			if _, taken := s.given[a]; !taken {
				addr, ok = a, true
				break
			}
		}
		if !ok {
			return status.Errorf(codes.ResourceExhausted, "vl3: prefix %s has no free address", s.prefix)
		}
		s.given[addr], s.by[conn.GetId()] = conn.GetId(), addr
	}
	bits := addr.BitLen()
	if conn.Context == nil {
		conn.Context = &networkservice.ConnectionContext{}
	}
	conn.Context.IpContext = &networkservice.IPContext{
		SrcIpAddrs: []string{netip.PrefixFrom(addr, bits).String()},
		DstIpAddrs: []string{netip.PrefixFrom(s.gateway, bits).String()},
		// The client reaches the whole vL3 over its vWire; the endpoint
		// reaches the client on its own interface.
		SrcRoutes: []*networkservice.Route{{Prefix: s.prefix.String()}},
		DstRoutes: []*networkservice.Route{{Prefix: netip.PrefixFrom(addr, bits).String()}},
	}
	return nil
}

// Close frees the connection's address.
func (s *Service) Close(_ context.Context, conn *networkservice.Connection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.by[conn.GetId()]; ok {
		delete(s.given, a)
		delete(s.by, conn.GetId())
	}
	return nil
}
