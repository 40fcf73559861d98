// Package vl3 is the architecture's "simple distributed vL3": every client
// gets an address from one prefix and a route to the whole prefix over its
// vWire; the endpoint's namespace routes between its clients (IP
// forwarding and proxy ARP), so any two clients of the vL3 reach each
// other.
//
// One endpoint may serve the whole prefix, or several (one per node,
// typically) share it: each gives its clients addresses from its own
// subnet of the prefix, registers a second network service for its peers,
// and keeps a vWire, requested through vwire itself, to every other
// endpoint of the vL3 (Peers); each peer vWire carries a route to the
// subnet at its far end. Of two peers, the one whose name sorts first asks
// for the vWire; the other answers (Service.Request on the peer service).
package vl3

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/workload/nse"
)

// Config configures a Service.
type Config struct {
	// Prefix is the whole vL3 (IPv4 or IPv6).
	Prefix string
	// Subnet is this endpoint's part of Prefix, which its clients get
	// their addresses from; the whole prefix when empty.
	Subnet string
	// PeerService is the network service other endpoints of the vL3
	// request peer vWires on; none when empty. It needs a Subnet smaller
	// than the Prefix.
	PeerService string
	Logger      *slog.Logger
}

// Service gives connections vL3 addresses and answers peers.
type Service struct {
	plan        Plan
	peerService string
	log         *slog.Logger

	mu     sync.Mutex // guards given, by and routes
	given  map[netip.Addr]string
	by     map[string]netip.Addr
	routes routeTable
}

var _ nse.Service = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	plan, err := NewPlan(cfg.Prefix, cfg.Subnet)
	if err != nil {
		return nil, err
	}
	if cfg.PeerService != "" && !plan.Shared() {
		return nil, fmt.Errorf("vl3: peers need a subnet smaller than the prefix %s (--subnet)", plan.Prefix)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		plan:        plan,
		peerService: cfg.PeerService,
		log:         log,
		given:       map[netip.Addr]string{},
		by:          map[string]netip.Addr{},
		routes:      routeTable{},
	}, nil
}

// Plan is the service's share of the vL3.
func (s *Service) Plan() Plan { return s.plan }

// PeerService is the network service peers connect on ("" without peers).
func (s *Service) PeerService() string { return s.peerService }

// PeerServiceName is the default peer service of a vL3 service:
// <name>-peers, in the same registry domain.
func PeerServiceName(service string) string {
	name, domain, ok := strings.Cut(service, "@")
	if ok {
		return name + "-peers@" + domain
	}
	return name + "-peers"
}

// EnableRouting turns on forwarding and proxy ARP in the endpoint's own
// namespace: the vL3 routes between its clients' and peers' interfaces.
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

// Request gives a client its address (the same one on a refresh), or
// answers a peer's vWire.
func (s *Service) Request(_ context.Context, conn *networkservice.Connection) error {
	if conn.Context == nil {
		conn.Context = &networkservice.ConnectionContext{}
	}
	if s.isPeerService(conn.GetNetworkService()) {
		return s.requestPeer(conn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	addr, ok := s.by[conn.GetId()]
	if !ok {
		for a := s.plan.Gateway().Next(); s.plan.Subnet.Contains(a); a = a.Next() {
			if _, taken := s.given[a]; !taken {
				addr, ok = a, true
				break
			}
		}
		if !ok {
			return status.Errorf(codes.ResourceExhausted, "vl3: subnet %s has no free address", s.plan.Subnet)
		}
		s.given[addr], s.by[conn.GetId()] = conn.GetId(), addr
	}
	conn.Context.IpContext = s.plan.clientContext(addr)
	return nil
}

// requestPeer answers a peer's offer and records the route to its subnet.
func (s *Service) requestPeer(conn *networkservice.Connection) error {
	if conn.GetMechanism().GetType() != kernel.Type {
		return status.Errorf(codes.InvalidArgument, "vl3: peer connection %s: only the KERNEL mechanism carries a peer's routes", conn.GetId())
	}
	peer := conn.GetPath().GetPathSegments()[0].GetName()
	ipc, subnet, err := s.plan.answer(conn.GetContext().GetIpContext())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "vl3: peer %s: %v", peer, err)
	}
	s.mu.Lock()
	added, err := s.routes.add(PeerRoute{Conn: conn.GetId(), Peer: peer, Subnet: subnet})
	s.mu.Unlock()
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "vl3: %v", err)
	}
	conn.Context.IpContext = ipc
	if added {
		s.log.Info("vl3 peer connected", "peer", peer, "subnet", subnet, "conn", conn.GetId(), "side", "answered")
	}
	return nil
}

// Close frees a client's address, or forgets a peer's route (the
// dataplane removes it with the peer's interface).
func (s *Service) Close(_ context.Context, conn *networkservice.Connection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.routes.remove(conn.GetId()); ok {
		s.log.Info("vl3 peer disconnected", "peer", r.Peer, "subnet", r.Subnet, "conn", r.Conn, "side", "answered")
		return nil
	}
	if a, ok := s.by[conn.GetId()]; ok {
		delete(s.given, a)
		delete(s.by, conn.GetId())
	}
	return nil
}

// Routes are the subnets currently reached through peers.
func (s *Service) Routes() []PeerRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes.list()
}

// addRoute records a route to a peer this endpoint asked for a vWire.
func (s *Service) addRoute(r PeerRoute) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes.add(r)
}

func (s *Service) removeRoute(conn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes.remove(conn)
}

// isPeerService compares service names without their registry domain: a
// registry authoritative for it answers without one.
func (s *Service) isPeerService(name string) bool {
	if s.peerService == "" {
		return false
	}
	a, _, _ := strings.Cut(name, "@")
	b, _, _ := strings.Cut(s.peerService, "@")
	return a == b
}
