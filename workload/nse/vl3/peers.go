package vl3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/workload/internal/backoff"
	"github.com/vwire/vwire/workload/nse"
)

// Defaults.
const (
	// DefaultPeerLifetime is how long a peer vWire lives without a
	// refresh (it is refreshed at a third of it): how long a peer that
	// died without closing keeps its route at the other end.
	DefaultPeerLifetime = time.Minute
	requestTimeout      = 15 * time.Second
	closeTimeout        = 10 * time.Second
	minRefresh          = 100 * time.Millisecond
)

// PeersConfig configures Peers.
type PeersConfig struct {
	// Name is this endpoint's registered name. Peers whose names sort
	// after it are asked for a vWire; the others ask this endpoint.
	Name string
	// NetNSURL is where the peer interfaces go: the endpoint's namespace,
	// which routes. This process's when empty.
	NetNSURL string
	// Manager requests the peer vWires; Registry (the manager's registry
	// API) lists and watches the endpoints of the peer service.
	Manager  Manager
	Registry regapi.NetworkServiceEndpointRegistryClient
	// Lifetime of each peer vWire's own path segment; DefaultPeerLifetime
	// when zero.
	Lifetime time.Duration
	Logger   *slog.Logger
}

// Peers keeps a vWire, through vwire, to every other endpoint of the vL3
// whose name sorts after this one's, for as long as the registry lists it
// under the peer service. Each vWire carries a route to the peer's subnet
// at this end and to this endpoint's subnet at the other.
type Peers struct {
	svc *Service
	cfg PeersConfig
	log *slog.Logger

	mu      sync.Mutex         // guards kept and leaving
	kept    map[string]*keeper // by peer name
	leaving map[string]*keeper // stopped, still closing their vWire
	wg      sync.WaitGroup     // keepers; Add under mu
}

// keeper is the goroutine that holds the vWire to one peer.
type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewPeers returns the peer side of svc, which must have a peer service.
func NewPeers(svc *Service, cfg PeersConfig) (*Peers, error) {
	switch {
	case svc.peerService == "":
		return nil, errors.New("vl3: peers: the service has no peer service")
	case cfg.Name == "" || cfg.Manager == nil || cfg.Registry == nil:
		return nil, errors.New("vl3: peers: name, manager and registry are required")
	}
	if cfg.NetNSURL == "" {
		cfg.NetNSURL = nse.OwnNetNSURL()
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultPeerLifetime
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Peers{svc: svc, cfg: cfg, log: log.With("nse", cfg.Name, "peer_service", svc.peerService), kept: map[string]*keeper{}, leaving: map[string]*keeper{}}, nil
}

// Run follows the registry until ctx ends, then closes every peer vWire
// and returns.
func (p *Peers) Run(ctx context.Context) {
	p.log.Info("vl3 peers: following the registry", "subnet", p.svc.plan.Subnet, "prefix", p.svc.plan.Prefix)
	b := backoff.Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second}
	for ctx.Err() == nil {
		err := p.follow(ctx, &b)
		if ctx.Err() != nil {
			break
		}
		wait := b.Next()
		p.log.Warn("vl3 peers: registry watch ended; again", "in", wait.Round(time.Millisecond), "err", err)
		backoff.Sleep(ctx, wait)
	}
	p.mu.Lock()
	for name := range p.kept {
		p.stopLocked(name)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// follow lists the peer service's endpoints (so that peers gone while
// nobody watched are dropped), then follows their changes. Keepers run on
// ctx; the registry streams end with follow.
func (p *Peers) follow(ctx context.Context, b *backoff.Backoff) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{p.svc.peerService}}
	list, err := p.cfg.Registry.Find(sctx, &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: q})
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	present := map[string]bool{}
	for {
		resp, err := list.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		present[resp.GetNetworkServiceEndpoint().GetName()] = true
	}
	p.mu.Lock()
	for name := range p.kept {
		if !present[name] {
			p.stopLocked(name)
		}
	}
	p.mu.Unlock()
	for name := range present {
		p.update(ctx, name, false)
	}

	watch, err := p.cfg.Registry.Find(sctx, &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: q, Watch: true})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	for {
		resp, err := watch.Recv()
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		b.Reset()
		p.update(ctx, resp.GetNetworkServiceEndpoint().GetName(), resp.GetDeleted())
	}
}

// update starts or stops the keeper of one peer endpoint.
func (p *Peers) update(ctx context.Context, name string, deleted bool) {
	if !(p.cfg.Name < name) {
		return // this endpoint itself, or a peer that asks us
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if deleted {
		p.stopLocked(name)
		return
	}
	if p.kept[name] != nil {
		return
	}
	kctx, cancel := context.WithCancel(ctx)
	k := &keeper{cancel: cancel, done: make(chan struct{})}
	p.kept[name] = k
	prev := p.leaving[name]
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(k.done)
		defer p.left(name, k)
		if prev != nil {
			// The peer came back while its old vWire was being closed:
			// one vWire at a time.
			select {
			case <-prev.done:
			case <-kctx.Done():
				return
			}
		}
		p.keep(kctx, name)
	}()
}

// stopLocked stops the keeper of name; p.mu is held.
func (p *Peers) stopLocked(name string) {
	if k := p.kept[name]; k != nil {
		k.cancel()
		delete(p.kept, name)
		p.leaving[name] = k
	}
}

// left forgets a keeper that ended.
func (p *Peers) left(name string, k *keeper) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving[name] == k {
		delete(p.leaving, name)
	}
}

// Connected are the peers this endpoint asked for a vWire and holds one to.
func (p *Peers) Connected() []PeerRoute {
	var out []PeerRoute
	for _, r := range p.svc.Routes() {
		if p.cfg.Name < r.Peer {
			out = append(out, r)
		}
	}
	return out
}

// keep holds a vWire to peer until ctx ends: request it, refresh it,
// request it anew when it expired, close it at the end.
func (p *Peers) keep(ctx context.Context, peer string) {
	log := p.log.With("peer", peer)
	b := backoff.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		conn, subnet := p.connect(ctx, peer, log, &b)
		if conn == nil {
			return
		}
		b.Reset()
		log.Info("vl3 peer connected", "subnet", subnet, "conn", conn.GetId(), "side", "asked",
			"interface", conn.GetMechanism().GetParameters()["name"])
		conn = p.maintain(ctx, conn, log)
		p.svc.removeRoute(conn.GetId())
		err := p.close(ctx, conn)
		log.Info("vl3 peer disconnected", "subnet", subnet, "conn", conn.GetId(), "side", "asked", "close_err", err)
		if ctx.Err() != nil || !backoff.Sleep(ctx, b.Next()) {
			return
		}
	}
}

// connect requests a vWire to peer until one is established and its route
// recorded; nil when ctx ends first.
func (p *Peers) connect(ctx context.Context, peer string, log *slog.Logger, b *backoff.Backoff) (*networkservice.Connection, netip.Prefix) {
	for {
		conn, subnet, err := p.connectOnce(ctx, peer)
		if err == nil {
			return conn, subnet
		}
		if ctx.Err() != nil {
			return nil, netip.Prefix{}
		}
		wait := b.Next()
		log.Warn("vl3 peer request failed, retrying", "in", wait.Round(time.Millisecond), "err", err)
		if !backoff.Sleep(ctx, wait) {
			return nil, netip.Prefix{}
		}
	}
}

func (p *Peers) connectOnce(ctx context.Context, peer string) (*networkservice.Connection, netip.Prefix, error) {
	conn, err := p.request(ctx, p.newRequest(peer))
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	subnet, err := p.svc.plan.accepted(conn.GetContext().GetIpContext())
	if err == nil {
		_, err = p.svc.addRoute(PeerRoute{Conn: conn.GetId(), Peer: peer, Subnet: subnet})
	}
	if err != nil {
		_ = p.close(ctx, conn)
		return nil, netip.Prefix{}, fmt.Errorf("peer %s's reply: %w", peer, err)
	}
	return conn, subnet, nil
}

// maintain refreshes conn at a third of the time left before its path
// expires. It returns the latest connection when ctx ends, when the
// connection expired because no refresh got through, or when the peer
// changed its subnet.
func (p *Peers) maintain(ctx context.Context, conn *networkservice.Connection, log *slog.Logger) *networkservice.Connection {
	subnet, _ := p.svc.plan.accepted(conn.GetContext().GetIpContext())
	for {
		if !backoff.Sleep(ctx, max(time.Until(nearestExpiry(conn))/3, minRefresh)) {
			return conn
		}
		expires := nearestExpiry(conn)
		b := backoff.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
		for {
			next, err := p.request(ctx, p.refreshRequest(conn))
			if err == nil {
				if s, err := p.svc.plan.accepted(next.GetContext().GetIpContext()); err != nil || s != subnet {
					log.Warn("vl3 peer changed its subnet; connecting again", "was", subnet, "now", s, "err", err)
					return next
				}
				conn = next
				break
			}
			if ctx.Err() != nil {
				return conn
			}
			left := time.Until(expires)
			if left <= 0 {
				log.Warn("vl3 peer vWire expired before a refresh got through", "conn", conn.GetId(), "err", err)
				return conn
			}
			wait := min(b.Next(), left)
			log.Info("vl3 peer refresh failed, retrying", "in", wait.Round(time.Millisecond), "err", err)
			if !backoff.Sleep(ctx, wait) {
				return conn
			}
		}
	}
}

// newRequest asks for a new vWire to peer: this endpoint as the path's
// first segment, the peer named (the manager selects no other), a KERNEL
// interface in the endpoint's namespace, and this endpoint's half of the
// IP context.
func (p *Peers) newRequest(peer string) *networkservice.NetworkServiceRequest {
	id := uuid.NewString()
	conn := &networkservice.Connection{
		Id:                         id,
		NetworkService:             p.svc.peerService,
		NetworkServiceEndpointName: peer,
		Context:                    &networkservice.ConnectionContext{IpContext: p.svc.plan.offer()},
		Path:                       &networkservice.Path{PathSegments: []*networkservice.PathSegment{{Name: p.cfg.Name, Id: id}}},
	}
	return p.refreshRequest(conn)
}

// refreshRequest asks again for conn as the manager returned it, its own
// segment's expiry moved a lifetime ahead.
func (p *Peers) refreshRequest(conn *networkservice.Connection) *networkservice.NetworkServiceRequest {
	conn = conn.Clone()
	own := ownIndex(conn)
	conn.Path.Index = uint32(own)
	conn.Path.PathSegments[own].Expires = timestamppb.New(time.Now().Add(p.cfg.Lifetime))
	mech := kernel.New(kernel.Params{Name: kernel.DefaultName(conn.GetId()), NetNSURL: p.cfg.NetNSURL})
	return &networkservice.NetworkServiceRequest{Connection: conn, MechanismPreferences: []*networkservice.Mechanism{mech}}
}

func (p *Peers) request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return p.cfg.Manager.Request(ctx, req)
}

// close closes conn on a context of its own: ctx may be what ended.
func (p *Peers) close(ctx context.Context, conn *networkservice.Connection) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	return p.cfg.Manager.Close(ctx, conn)
}

// ownIndex is the index of this endpoint's segment: the one whose id is
// the connection's.
func ownIndex(conn *networkservice.Connection) int {
	for i, s := range conn.GetPath().GetPathSegments() {
		if s.GetId() == conn.GetId() {
			return i
		}
	}
	return 0
}

// nearestExpiry is the soonest expiry among the segments after this
// endpoint's own, or its own when none says.
func nearestExpiry(conn *networkservice.Connection) time.Time {
	segs := conn.GetPath().GetPathSegments()
	own := ownIndex(conn)
	var t time.Time
	for _, s := range segs[own+1:] {
		if e := s.GetExpires(); e != nil && (t.IsZero() || e.AsTime().Before(t)) {
			t = e.AsTime()
		}
	}
	if t.IsZero() {
		t = segs[own].GetExpires().AsTime()
	}
	return t
}
