// Package manager is vwire's per-node Network Service Manager: it serves
// NSM's NetworkService (Request, Close), MonitorConnection and registry APIs
// to local workloads and to other managers, discovers and selects endpoints,
// hands each Request to a forwarder on its node, and keeps every connection
// until it is closed or expires.
package manager

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/internal/clock"
	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/keyedlock"
	"github.com/vwire/vwire/internal/policy"
	"github.com/vwire/vwire/internal/token"
)

// Defaults.
const (
	DefaultMaxTokenLifetime = 10 * time.Minute
	DefaultProbeInterval    = time.Second
	DefaultReselectTimeout  = 15 * time.Second
	// DefaultSocket is where NSM workloads find their manager.
	DefaultSocket = "/var/lib/networkservicemesh/nsm.io.sock"
	// LabelNodeName is the client label that carries the client's node.
	LabelNodeName = "nodeName"
	// cleanupTimeout bounds undo work, run on its own context.
	cleanupTimeout = 15 * time.Second
)

// defaultForwarderLabels select a forwarder when the match says nothing:
// NSM's convention.
var defaultForwarderLabels = map[string]string{"p2p": "true"}

// Config configures a Manager.
type Config struct {
	// Name is this hop's name in connection paths; unique in the mesh.
	Name string
	// NodeName fills the nodeName label of clients that do not give one.
	NodeName string
	// URL is where other nodes reach this manager (tcp://ip:port); local
	// endpoints are registered in the registry under it.
	URL string
	// Registry is a connection to the domain's registry.
	Registry *grpcutil.Conn
	// Domains are the registry domains this manager's registry is
	// authoritative for: `name@domain` in one of them is a local name.
	Domains []string
	// Policy decides who may request and register what (nil: anyone of
	// the trust domain).
	Policy *policy.Policy
	// Source is this manager's identity: it signs the manager's path tokens.
	Source identity.Source
	// Pool dials forwarders with this manager's identity.
	Pool             *grpcutil.Pool
	MaxTokenLifetime time.Duration
	// Clock is the time connections expire on (the real one when nil).
	Clock clock.Clock
	// ProbeInterval is how often local endpoints and forwarders are probed;
	// one that fails twice in a row is dropped.
	ProbeInterval time.Duration
	// ReselectTimeout bounds how long a Request waits for an endpoint a
	// supplier is starting, and how long a heal keeps trying the same
	// endpoint through a remote manager that went away before it selects
	// another (DefaultReselectTimeout when zero).
	ReselectTimeout time.Duration
	// Metrics receives the manager's collectors (none when nil).
	Metrics prometheus.Registerer
	Logger  *slog.Logger
}

// Manager is one node's Network Service Manager.
type Manager struct {
	name, node, url string
	domains         []string
	regNS           regapi.NetworkServiceRegistryClient
	regNSE          regapi.NetworkServiceEndpointRegistryClient
	regConn         *grpcutil.Conn
	lookups         *lookups // discovery from registry watches (lookups.go)
	policy          *policy.Policy
	src             identity.Source
	tokens          *token.Cache // tokens signed, verified and read (see token.Cache)
	pool            *grpcutil.Pool
	lifetime        time.Duration
	clock           clock.Clock // connection expiry
	probeEvery      time.Duration
	reselectTimeout time.Duration
	log             *slog.Logger
	metrics         *metricSet

	locks keyedlock.Locker // serialises Request/Close/expiry per connection id

	mu         sync.Mutex // guards the fields below
	conns      map[string]*connection
	endpoints  map[string]*localEndpoint
	forwarders map[string]*localForwarder
	rr         map[string]uint64 // round-robin position per network service
	watchers   map[*watcher]struct{}
	hops       nextHops     // remote next hops watched, heals in flight (nexthop.go)
	socks      *sockWatches // local endpoints' and forwarders' sockets (sockwatch.go)

	ctx      context.Context // ends at Stop: background work (probes, heals)
	stop     context.CancelFunc
	done     chan struct{}
	wg       sync.WaitGroup // heals in flight
	stopOnce sync.Once
}

// New returns a running Manager; Stop stops it.
func New(cfg Config) (*Manager, error) {
	if cfg.Name == "" || cfg.URL == "" || cfg.Registry == nil || cfg.Pool == nil || cfg.Source == nil {
		return nil, errors.New("manager: name, url, registry, source and pool are required")
	}
	m := &Manager{
		name: cfg.Name, node: cfg.NodeName, url: cfg.URL, domains: cfg.Domains,
		regNS:      regapi.NewNetworkServiceRegistryClient(cfg.Registry),
		regNSE:     regapi.NewNetworkServiceEndpointRegistryClient(cfg.Registry),
		regConn:    cfg.Registry,
		policy:     cfg.Policy,
		src:        cfg.Source,
		tokens:     token.NewCache(),
		pool:       cfg.Pool,
		lifetime:   cfg.MaxTokenLifetime,
		clock:      clock.Or(cfg.Clock),
		probeEvery: cfg.ProbeInterval,
		log:        cfg.Logger,
		conns:      map[string]*connection{},
		endpoints:  map[string]*localEndpoint{},
		forwarders: map[string]*localForwarder{},
		rr:         map[string]uint64{},
		watchers:   map[*watcher]struct{}{},
		socks:      newSockWatches(),
		done:       make(chan struct{}),
	}
	if m.lifetime <= 0 {
		m.lifetime = DefaultMaxTokenLifetime
	}
	if m.reselectTimeout = cfg.ReselectTimeout; m.reselectTimeout <= 0 {
		m.reselectTimeout = DefaultReselectTimeout
	}
	if m.probeEvery <= 0 {
		m.probeEvery = DefaultProbeInterval
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.lookups = newLookups(m.regNS, m.regNSE, m.log)
	m.metrics = newMetrics(cfg.Metrics, m)
	ctx, cancel := context.WithCancel(context.Background())
	m.ctx, m.stop = ctx, cancel
	go m.probeLoop(ctx)
	return m, nil
}

// Register adds every service the manager serves to a gRPC server.
func (m *Manager) Register(g *grpc.Server) {
	networkservice.RegisterNetworkServiceServer(g, m)
	networkservice.RegisterMonitorConnectionServer(g, m)
	regapi.RegisterNetworkServiceRegistryServer(g, (*nsProxy)(m))
	regapi.RegisterNetworkServiceEndpointRegistryServer(g, (*nseProxy)(m))
}

// Stop ends the manager's background work. Connections are left as they
// are: the dataplane keeps carrying traffic and a restarted manager
// rebuilds its state from the clients' refreshes. Safe to call twice.
func (m *Manager) Stop() error {
	m.stopOnce.Do(func() {
		// Under mu: whoever checks m.ctx under mu before m.wg.Add
		// (eachMatching, healNextHop, acquirePeerLocked) is then
		// ordered before the Wait below.
		m.mu.Lock()
		m.stop()
		m.mu.Unlock()
		<-m.done
		m.wg.Wait()
		m.lookups.stop()
		m.mu.Lock()
		for _, c := range m.conns {
			c.timer.Stop()
		}
		for w := range m.watchers {
			w.end(nil)
		}
		m.mu.Unlock()
	})
	return nil
}

// Name is the manager's hop name.
func (m *Manager) Name() string { return m.name }

// URL is where other nodes reach this manager.
func (m *Manager) URL() string { return m.url }
