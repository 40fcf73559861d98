// Package sandbox runs a whole vwire mesh inside one test process: a
// registry, managers with forwarders (on a recording dataplane), endpoints
// and clients, all talking real gRPC with mTLS over unix sockets and
// loopback TCP, as separate nodes would.
package sandbox

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/forwarder/forwardertest"
	"github.com/vwire/vwire/internal/clock"
	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/policy"
	"github.com/vwire/vwire/internal/registration"
	"github.com/vwire/vwire/internal/regpath"
	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/manager"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/store/memstore"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/icmpresponder"
)

// Options tune a sandbox.
type Options struct {
	Nodes            int
	MaxTokenLifetime time.Duration         // managers' and forwarders' (default 10m)
	Policy           *policy.Policy        // the managers'
	RegistryPolicy   *policy.Policy        // the registry's
	Metrics          prometheus.Registerer // the managers' collectors (one node only)
	SVIDTTL          time.Duration         // every component's SVID lifetime (1h when zero)
	ReselectTimeout  time.Duration         // the managers' (their default when zero)
	ProbeInterval    time.Duration         // the managers' (200ms when zero)
	Clock            clock.Clock           // managers' and forwarders' connection expiry (real when nil)
	Logger           *slog.Logger
	// ManagerInterceptor, when set, runs before every call the managers
	// serve (tests hold calls back to order them).
	ManagerInterceptor grpc.UnaryServerInterceptor
	// ForwarderInterceptor, likewise, runs before every call the
	// forwarders serve.
	ForwarderInterceptor grpc.UnaryServerInterceptor
}

// Sandbox is a running mesh. Everything stops when the test ends.
type Sandbox struct {
	t        testing.TB
	Dir      string
	CA       *identity.CA
	Registry string // registry address
	RegConn  *grpc.ClientConn
	Nodes    []*Node
	log      *slog.Logger
	lifetime time.Duration
	policy   *policy.Policy
	regPol   *policy.Policy
	metrics  prometheus.Registerer
	svidTTL  time.Duration
	reselect time.Duration
	probe    time.Duration
	clock    clock.Clock
	mgrInt   grpc.UnaryServerInterceptor
	fwdInt   grpc.UnaryServerInterceptor
}

// Node is one node: a manager and a forwarder.
type Node struct {
	Name          string
	ManagerSocket string // unix socket for workloads
	ManagerURL    string // TCP URL for other managers
	Manager       *manager.Manager
	Forwarder     *forwarder.Forwarder
	Dataplane     *forwardertest.Recorder
	ForwarderURL  string

	sb        *Sandbox
	endpoints []*Endpoint
	stopMgr   func()
	stopFwd   func()
}

// New starts a sandbox with opt.Nodes nodes (node1, node2, ...).
func New(t testing.TB, opt Options) *Sandbox {
	t.Helper()
	// Unix socket paths must stay under 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "vw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca, err := identity.OpenCA(dir, "sandbox.local", true)
	if err != nil {
		t.Fatal(err)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sb := &Sandbox{t: t, Dir: dir, CA: ca, log: log, lifetime: opt.MaxTokenLifetime, policy: opt.Policy, regPol: opt.RegistryPolicy, metrics: opt.Metrics, svidTTL: opt.SVIDTTL, reselect: opt.ReselectTimeout, probe: opt.ProbeInterval, clock: opt.Clock, mgrInt: opt.ManagerInterceptor, fwdInt: opt.ForwarderInterceptor}
	if sb.svidTTL == 0 {
		sb.svidTTL = time.Hour
	}
	sb.startRegistry()
	for i := range opt.Nodes {
		sb.AddNode(fmt.Sprintf("node%d", i+1))
	}
	return sb
}

// as runs f with the pprof label component=name, which every goroutine f
// starts inherits (gRPC servers' and clients' transports among them), so a
// CPU profile of the sandbox splits by component: go tool pprof -tags.
func as(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("component", name), func(context.Context) { f() })
}

// Source returns an identity for name (spiffe://sandbox.local/name).
func (sb *Sandbox) Source(name string) identity.Source {
	sb.t.Helper()
	id, err := sb.CA.ComponentID(name)
	if err != nil {
		sb.t.Fatal(err)
	}
	src, err := identity.NewCASource(sb.CA, id, sb.svidTTL, nil)
	if err != nil {
		sb.t.Fatal(err)
	}
	sb.t.Cleanup(func() { src.Close() })
	return src
}

// serve runs gs on addr until the test ends or the returned stop is called.
func (sb *Sandbox) serve(gs *grpc.Server, addr string) (net.Listener, func()) {
	sb.t.Helper()
	l, err := grpcutil.Listen(addr)
	if err != nil {
		sb.t.Fatal(err)
	}
	go gs.Serve(l)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			gs.Stop()
		}
	}
	sb.t.Cleanup(stop)
	return l, stop
}

func (sb *Sandbox) startRegistry() { as("registry", sb.startRegistryLabelled) }

func (sb *Sandbox) startRegistryLabelled() {
	src := sb.Source("registry")
	st := memstore.New()
	sb.t.Cleanup(func() { st.Close() })
	srv, err := registry.New(registry.Config{Store: st, Source: src, Policy: sb.regPol})
	if err != nil {
		sb.t.Fatal(err)
	}
	gs := grpcutil.NewServer(src, identity.AuthorizeTrustDomain(src), sb.log)
	srv.Register(gs)
	l, _ := sb.serve(gs, "127.0.0.1:0")
	sb.Registry = l.Addr().String()
	cli := sb.Source("sandbox-admin")
	cc, err := grpcutil.Dial(sb.Registry, cli, identity.AuthorizeTrustDomain(cli))
	if err != nil {
		sb.t.Fatal(err)
	}
	sb.t.Cleanup(func() { cc.Close() })
	sb.RegConn = cc
}

// AddNode starts a manager and a forwarder named after node.
func (sb *Sandbox) AddNode(name string) *Node {
	sb.t.Helper()
	n := &Node{Name: name, sb: sb, Dataplane: forwardertest.New("127.0.0.1")}
	sb.Nodes = append(sb.Nodes, n)
	n.StartManager()
	n.StartForwarder()
	return n
}

// StartManager (re)starts the node's manager on its sockets.
func (n *Node) StartManager() { as("manager-"+n.Name, n.startManager) }

func (n *Node) startManager() {
	sb := n.sb
	src := sb.Source("manager-" + n.Name)
	authz := identity.AuthorizeTrustDomain(src)
	n.ManagerSocket = filepath.Join(sb.Dir, n.Name+"-nsm.sock")
	if n.ManagerURL == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			sb.t.Fatal(err)
		}
		n.ManagerURL = "tcp://" + l.Addr().String()
		l.Close()
	}
	reg, err := grpcutil.DialPeer(sb.Registry, src, authz)
	if err != nil {
		sb.t.Fatal(err)
	}
	pool := grpcutil.NewPool(src, authz)
	m, err := manager.New(manager.Config{
		Policy: sb.policy, Metrics: sb.metrics,
		Name: "manager-" + n.Name, NodeName: n.Name, URL: n.ManagerURL,
		Registry: reg, Pool: pool, Source: src, MaxTokenLifetime: sb.lifetime, Clock: sb.clock,
		ProbeInterval: cmp.Or(sb.probe, 200*time.Millisecond), ReselectTimeout: sb.reselect, Logger: sb.log.With("node", n.Name, "component", "manager"),
	})
	if err != nil {
		sb.t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if sb.mgrInt != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(sb.mgrInt))
	}
	gs := grpcutil.NewServer(src, authz, sb.log, opts...)
	m.Register(gs)
	_, stopUnix := sb.serve(gs, "unix://"+n.ManagerSocket)
	_, stopTCP := sb.serve(gs, n.ManagerURL)
	_ = stopTCP
	n.Manager = m
	n.stopMgr = func() {
		stopUnix()
		m.Stop()
		pool.Close()
		reg.Close()
	}
	sb.t.Cleanup(n.stopMgr)
}

// StopManager stops the node's manager as a crash would: no Close reaches
// anything.
func (n *Node) StopManager() { n.stopMgr() }

// StartForwarder (re)starts the node's forwarder and registers it with the
// manager. The recording dataplane survives restarts, as VPP would.
func (n *Node) StartForwarder() { as("forwarder-"+n.Name, n.startForwarder) }

func (n *Node) startForwarder() {
	sb := n.sb
	src := sb.Source("forwarder-" + n.Name)
	authz := identity.AuthorizeTrustDomain(src)
	pool := grpcutil.NewPool(src, authz)
	f, err := forwarder.New(forwarder.Config{
		Name: "forwarder-" + n.Name, Dataplane: n.Dataplane, Source: src, Pool: pool, MaxTokenLifetime: sb.lifetime, Clock: sb.clock,
		Logger: sb.log.With("node", n.Name, "component", "forwarder"),
	})
	if err != nil {
		sb.t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if sb.fwdInt != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(sb.fwdInt))
	}
	gs := grpcutil.NewServer(src, authz, sb.log, opts...)
	f.Register(gs)
	sock := filepath.Join(sb.Dir, n.Name+"-fwd.sock")
	_, stop := sb.serve(gs, "unix://"+sock)
	n.ForwarderURL = "unix://" + sock
	n.Forwarder = f

	cc := n.dialManager(src)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go registration.Keep(ctx, regapi.NewNetworkServiceEndpointRegistryClient(cc), &regapi.NetworkServiceEndpoint{
		Name: "forwarder-" + n.Name, Url: n.ForwarderURL, NetworkServiceNames: []string{forwarder.ServiceName},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{forwarder.ServiceName: {Labels: map[string]string{"p2p": "true"}}},
	}, 30*time.Second, sb.log, first, cc.Reconnected(ctx))
	if err := <-first; err != nil {
		sb.t.Fatalf("register forwarder: %v", err)
	}
	n.stopFwd = func() {
		cancel()
		stop()
		f.Shutdown()
		pool.Close()
		cc.Close()
	}
	sb.t.Cleanup(n.stopFwd)
}

// StopForwarder stops the node's forwarder as a crash would.
func (n *Node) StopForwarder() { n.stopFwd() }

func (n *Node) dialManager(src identity.Source) *grpcutil.Conn {
	cc, err := regpath.DialRegistrant("unix://"+n.ManagerSocket, src, identity.AuthorizeTrustDomain(src))
	if err != nil {
		n.sb.t.Fatal(err)
	}
	n.sb.t.Cleanup(func() { cc.Close() })
	return cc
}

// Client is a workload's connection to its node's manager. Its Request
// signs the client's own path segment, as NSM's clients do.
type Client struct {
	networkservice.NetworkServiceClient
	networkservice.MonitorConnectionClient
	Registry regapi.NetworkServiceEndpointRegistryClient
	Services regapi.NetworkServiceRegistryClient
	Src      identity.Source
	// NoToken makes Request send the client's segment unsigned.
	NoToken bool
	cc      *grpcutil.Conn
}

// Client returns a workload connection to the node's manager with the
// identity name.
func (n *Node) Client(name string) *Client {
	src := n.sb.Source(name)
	var cc *grpcutil.Conn
	var err error
	as("client", func() {
		cc, err = grpcutil.DialPeer("unix://"+n.ManagerSocket, src, identity.AuthorizeTrustDomain(src))
	})
	if err != nil {
		n.sb.t.Fatal(err)
	}
	n.sb.t.Cleanup(func() { cc.Close() })
	return &Client{
		NetworkServiceClient:    networkservice.NewNetworkServiceClient(cc),
		MonitorConnectionClient: networkservice.NewMonitorConnectionClient(cc),
		Registry:                regapi.NewNetworkServiceEndpointRegistryClient(cc),
		Services:                regapi.NewNetworkServiceRegistryClient(cc),
		Src:                     src,
		cc:                      cc,
	}
}

// Request signs the client's segment (at the path's index) for the
// manager and sends the request.
func (c *Client) Request(ctx context.Context, req *networkservice.NetworkServiceRequest, opts ...grpc.CallOption) (*networkservice.Connection, error) {
	if !c.NoToken && req.GetConnection().GetPath() != nil && len(req.GetConnection().GetPath().GetPathSegments()) > 0 {
		aud, err := c.cc.PeerID(ctx)
		if err != nil {
			return nil, err
		}
		svid, err := c.Src.GetX509SVID()
		if err != nil {
			return nil, err
		}
		own := req.Connection.Path.PathSegments[req.Connection.Path.Index]
		expires := time.Now().Add(10 * time.Minute)
		if own.GetExpires() != nil {
			expires = own.GetExpires().AsTime()
		}
		if ctx, err = token.Stamp(ctx, own, svid, aud, expires); err != nil {
			return nil, err
		}
	}
	return c.NetworkServiceClient.Request(ctx, req, opts...)
}

// Endpoint is an endpoint served on a node and registered through its
// manager.
type Endpoint struct {
	Name string
	URL  string
	stop func()
}

// Stop kills the endpoint: its socket closes, its registration is left to
// the manager to notice.
func (e *Endpoint) Stop() { e.stop() }

// ServeEndpoint serves srv as an endpoint named name on the node and keeps
// it registered through the node's manager for services with labels.
func (n *Node) ServeEndpoint(name string, srv networkservice.NetworkServiceServer, labels map[string]string, services ...string) (e *Endpoint) {
	as("endpoint", func() { e = n.serveEndpoint(name, srv, labels, services...) })
	return e
}

func (n *Node) serveEndpoint(name string, srv networkservice.NetworkServiceServer, labels map[string]string, services ...string) *Endpoint {
	sb := n.sb
	src := sb.Source("nse-" + name)
	authz := identity.AuthorizeTrustDomain(src)
	gs := grpcutil.NewServer(src, authz, sb.log)
	networkservice.RegisterNetworkServiceServer(gs, srv)
	sock := filepath.Join(sb.Dir, "nse-"+strings.ReplaceAll(name, "/", "-")+".sock")
	_, stopServe := sb.serve(gs, "unix://"+sock)
	nse := &regapi.NetworkServiceEndpoint{Name: name, Url: "unix://" + sock, NetworkServiceNames: services,
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{}}
	for _, s := range services {
		nse.NetworkServiceLabels[s] = &regapi.NetworkServiceLabels{Labels: labels}
	}
	cc := n.dialManager(src)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		registration.Keep(ctx, regapi.NewNetworkServiceEndpointRegistryClient(cc), nse, time.Minute, sb.log, first, cc.Reconnected(ctx))
	}()
	if err := <-first; err != nil {
		sb.t.Fatalf("register endpoint %s: %v", name, err)
	}
	e := &Endpoint{Name: name, URL: nse.Url}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		stopServe()
		// A killed process neither refreshes nor unregisters: end the
		// refresh loop without its Unregister reaching the manager.
		cc.Close()
		cancel()
		<-done
	}
	sb.t.Cleanup(e.stop)
	n.endpoints = append(n.endpoints, e)
	return e
}

// RegisterService registers a network service in the registry.
func (sb *Sandbox) RegisterService(ns *regapi.NetworkService) {
	sb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := regapi.NewNetworkServiceRegistryClient(sb.RegConn).Register(ctx, ns); err != nil {
		sb.t.Fatal(err)
	}
}

// ServeICMPResponder serves vwire's icmp-responder as an endpoint named
// name on the node (addresses from 169.254.0.0/16).
func (n *Node) ServeICMPResponder(name string, labels map[string]string, services ...string) *Endpoint {
	n.sb.t.Helper()
	svc, err := icmpresponder.New()
	if err != nil {
		n.sb.t.Fatal(err)
	}
	ep, err := nse.New(nse.Config{Name: name, Service: svc, Source: n.sb.Source("nse-" + name), MaxTokenLifetime: n.sb.lifetime, Logger: n.sb.log.With("nse", name)})
	if err != nil {
		n.sb.t.Fatal(err)
	}
	e := n.ServeEndpoint(name, ep, labels, services...)
	n.sb.t.Cleanup(func() { ep.Stop() })
	return e
}

// Endpoints returns the endpoints served on the node.
func (n *Node) Endpoints() []*Endpoint { return n.endpoints }
