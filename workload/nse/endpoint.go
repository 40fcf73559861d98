// Package nse is a small library for writing Network Service Endpoints that
// speak NSM's API: an Endpoint serves NetworkService (Request, Close) and
// MonitorConnection, keeps its own segment in each connection's path,
// picks the mechanism (KERNEL or MEMIF) the caller prefers, and hands the
// rest (addresses, routes) to a Service; Run puts it on an mTLS listener
// and keeps it registered with the node's manager.
package nse

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vwire/vwire/internal/connpath"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/keyedlock"
	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
)

// DefaultMaxTokenLifetime bounds how long a connection lives without a
// refresh when the caller's path segment does not say: NSM's default.
const DefaultMaxTokenLifetime = 10 * time.Minute

// releaseTimeout bounds a Service.Close run on expiry or at Stop.
const releaseTimeout = 10 * time.Second

// Service is the part of an endpoint that differs between kinds of
// endpoint. The Endpoint calls it after validating the request, updating
// the path and choosing the mechanism, with Requests and Closes of one
// connection never running at once.
type Service interface {
	// Request fills conn.Context (addresses, routes) for a new connection
	// or a refresh of one; conn.Id is this endpoint's id of the connection
	// and stays the same across refreshes, so a refresh must find what the
	// first Request took. On error nothing must be left taken. Errors
	// should be gRPC statuses; others reach the caller as Unknown.
	Request(ctx context.Context, conn *networkservice.Connection) error
	// Close releases what Request took for conn.Id. It is called once per
	// established connection: on Close, on expiry or at Stop. conn is the
	// endpoint's stored copy, which monitors share: Close must not modify
	// it.
	Close(ctx context.Context, conn *networkservice.Connection) error
}

// Config configures an Endpoint.
type Config struct {
	// Name is this endpoint's name in connection paths: its registered name.
	Name string
	// Service gives connections their context. Required.
	Service Service
	// Mechanisms this endpoint accepts; kernel and memif when empty.
	Mechanisms []string
	// NetNSURL names the network namespace the dataplane plugs the
	// endpoint's side of a vWire into; this process's own when empty.
	NetNSURL string
	// MaxTokenLifetime bounds a connection's life without a refresh;
	// DefaultMaxTokenLifetime when zero.
	MaxTokenLifetime time.Duration
	// Source is the endpoint's identity. When set (vwire nse always sets
	// it), the caller's path token is verified and the endpoint signs its
	// own segment, as NSM's endpoints do.
	Source identity.Source
	Logger *slog.Logger
}

// Endpoint is NSM's NetworkServiceServer and MonitorConnectionServer for
// one endpoint process.
type Endpoint struct {
	name        string
	svc         Service
	src         identity.Source
	tokens      *token.Cache // tokens signed, verified and read (see token.Cache)
	mechanisms  []string
	netns       string
	maxLifetime time.Duration
	log         *slog.Logger
	monitor     *monitor
	locks       keyedlock.Locker // serialises Request, Close and expiry per connection id

	mu       sync.Mutex            // guards the fields below
	conns    map[string]*connState // established connections by this endpoint's id
	stopped  bool
	expiring sync.WaitGroup // expiry callbacks running; Add only under mu while !stopped

	stopOnce sync.Once
}

// connState is what the endpoint keeps of one established connection.
type connState struct {
	conn  *networkservice.Connection // the reply, as this endpoint sees it (its own id and index)
	timer *time.Timer                // releases the connection when it is not refreshed in time
	gen   uint64                     // bumped by each refresh; a stale timer sees a newer one
}

var (
	_ networkservice.NetworkServiceServer    = (*Endpoint)(nil)
	_ networkservice.MonitorConnectionServer = (*Endpoint)(nil)
)

// New returns an Endpoint for cfg.
func New(cfg Config) (*Endpoint, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("nse: no name")
	}
	if cfg.Service == nil {
		return nil, fmt.Errorf("nse %s: no service", cfg.Name)
	}
	e := &Endpoint{
		name:        cfg.Name,
		svc:         cfg.Service,
		src:         cfg.Source,
		tokens:      token.NewCache(),
		mechanisms:  cfg.Mechanisms,
		netns:       cfg.NetNSURL,
		maxLifetime: cfg.MaxTokenLifetime,
		log:         cfg.Logger,
		monitor:     newMonitor(),
		conns:       map[string]*connState{},
	}
	if len(e.mechanisms) == 0 {
		e.mechanisms = []string{kernel.Type, memif.Type}
	}
	for _, m := range e.mechanisms {
		if m != kernel.Type && m != memif.Type {
			return nil, fmt.Errorf("nse %s: mechanism %q: want %s or %s", cfg.Name, m, kernel.Type, memif.Type)
		}
	}
	if e.netns == "" {
		e.netns = OwnNetNSURL()
	}
	if e.maxLifetime <= 0 {
		e.maxLifetime = DefaultMaxTokenLifetime
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("nse", e.name)
	return e, nil
}

// Name is the endpoint's name in connection paths.
func (e *Endpoint) Name() string { return e.name }

// Register adds the endpoint's NetworkService and MonitorConnection
// services to a gRPC server.
func (e *Endpoint) Register(gs *grpc.Server) {
	networkservice.RegisterNetworkServiceServer(gs, e)
	networkservice.RegisterMonitorConnectionServer(gs, e)
}

// Request establishes or refreshes a connection. The steps, in order:
// validate, add this endpoint's path segment, serialise on its connection
// id, choose the mechanism, let the Service fill the context, keep the
// connection until its path expires, answer in the caller's view.
func (e *Endpoint) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	req = req.Clone()
	conn := req.GetConnection()

	now := time.Now()
	hop, err := connpath.Enter(conn, e.name)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "connection %s: path: %v", req.GetConnection().GetId(), err)
	}
	if e.src != nil {
		caller, err := e.tokens.Admit(ctx, conn, hop.PrevIndex, e.src.ID())
		if err != nil {
			return nil, err
		}
		// The last segment has no next hop: it is addressed to the caller.
		svid, err := e.src.GetX509SVID()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "own SVID: %v", err)
		}
		if _, err := e.tokens.Stamp(ctx, hop.Segment, svid, caller, now.Add(e.maxLifetime)); err != nil {
			return nil, err
		}
	}
	expires := connpath.Expiry(hop.Prev(conn), now, e.maxLifetime)
	if !expires.After(now) {
		return nil, status.Errorf(codes.InvalidArgument, "connection %s: the previous hop's path segment expired at %s",
			conn.GetId(), expires.Format(time.RFC3339Nano))
	}
	if e.src == nil {
		connpath.SetExpires(hop.Segment, now.Add(e.maxLifetime))
	}
	log := e.log.With("conn", hop.ID(), "service", conn.GetNetworkService())

	unlock := e.locks.Lock(hop.ID())
	defer unlock()
	if e.isStopped() {
		return nil, status.Error(codes.Unavailable, "endpoint is stopping")
	}

	mech, err := e.selectMechanism(conn, req.GetMechanismPreferences())
	if err != nil {
		log.Info("request refused", "step", "mechanism", "err", err)
		return nil, err
	}
	conn.Mechanism = mech

	if err := e.svc.Request(ctx, conn); err != nil {
		log.Info("request refused", "step", "service", "err", err)
		return nil, err
	}
	conn.State = networkservice.State_UP

	what, level := "connection established", slog.LevelInfo
	if e.keep(hop.ID(), conn, expires) {
		what, level = "connection refreshed", slog.LevelDebug
	}
	log.Log(ctx, level, what, "mechanism", mech.GetType(), "ip", conn.GetContext().GetIpContext().GetDstIpAddrs(),
		"expires", expires.Format(time.RFC3339))

	// keep stored a copy of its own: conn is the reply.
	connpath.Leave(conn, hop)
	return conn, nil
}

// Close releases a connection. Closing a connection the endpoint does not
// know (never established, already closed or expired) is not an error.
func (e *Endpoint) Close(ctx context.Context, conn *networkservice.Connection) (*emptypb.Empty, error) {
	id, ok := connpath.Find(conn, e.name)
	if !ok {
		// A first hop with an empty path: its id became ours.
		id = conn.GetId()
	}
	if id == "" {
		return &emptypb.Empty{}, nil
	}
	unlock := e.locks.Lock(id)
	defer unlock()
	st := e.take(id, 0)
	if st == nil {
		e.log.Debug("close of an unknown connection", "conn", id)
		return &emptypb.Empty{}, nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := e.release(cctx, st, "closed"); err != nil {
		return nil, status.Errorf(codes.Internal, "connection %s: %v", id, err)
	}
	return &emptypb.Empty{}, nil
}

// Stop releases every connection and ends monitor streams; Requests that
// arrive after it are refused. Stop the gRPC server first. Safe to call twice.
func (e *Endpoint) Stop() {
	e.stopOnce.Do(func() {
		e.mu.Lock()
		e.stopped = true
		ids := make([]string, 0, len(e.conns))
		for id, st := range e.conns {
			st.timer.Stop()
			ids = append(ids, id)
		}
		e.mu.Unlock()
		e.expiring.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		for _, id := range ids {
			unlock := e.locks.Lock(id)
			if st := e.take(id, 0); st != nil {
				if err := e.release(ctx, st, "endpoint stopped"); err != nil {
					e.log.Warn("release at stop", "conn", id, "err", err)
				}
			}
			unlock()
		}
		e.monitor.close()
	})
}

// keep stores the connection and arms its expiry timer; it reports whether
// the connection was already established (a refresh). The caller holds the
// connection's lock.
func (e *Endpoint) keep(id string, conn *networkservice.Connection, expires time.Time) bool {
	e.mu.Lock()
	st, refresh := e.conns[id]
	if !refresh {
		st = &connState{}
		e.conns[id] = st
	} else {
		st.timer.Stop()
	}
	// One copy for the state and the monitors: neither modifies it.
	kept := conn.Clone()
	st.conn = kept
	st.gen++
	gen := st.gen
	st.timer = time.AfterFunc(time.Until(expires), func() { e.expire(id, gen) })
	e.mu.Unlock()
	e.monitor.update(kept)
	return refresh
}

// take removes and returns the state of id; with gen != 0 only when the
// state is still that generation (an expiry racing a refresh loses).
func (e *Endpoint) take(id string, gen uint64) *connState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.conns[id]
	if st == nil || (gen != 0 && st.gen != gen) {
		return nil
	}
	st.timer.Stop()
	delete(e.conns, id)
	return st
}

// expire releases a connection its caller did not refresh in time.
func (e *Endpoint) expire(id string, gen uint64) {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.expiring.Add(1)
	e.mu.Unlock()
	defer e.expiring.Done()

	unlock := e.locks.Lock(id)
	defer unlock()
	st := e.take(id, gen)
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := e.release(ctx, st, "expired"); err != nil {
		e.log.Warn("release expired connection", "conn", id, "err", err)
	}
}

// release gives back what the Service took and tells monitors.
func (e *Endpoint) release(ctx context.Context, st *connState, why string) error {
	err := e.svc.Close(ctx, st.conn)
	e.monitor.remove(st.conn)
	e.log.Info("connection released", "conn", st.conn.GetId(), "why", why, "err", err)
	return err
}

func (e *Endpoint) isStopped() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopped
}

// Len is the number of established connections.
func (e *Endpoint) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

func validateRequest(req *networkservice.NetworkServiceRequest) error {
	conn := req.GetConnection()
	switch {
	case conn == nil:
		return status.Error(codes.InvalidArgument, "request has no connection")
	case conn.GetId() == "":
		return status.Error(codes.InvalidArgument, "connection has no id")
	case conn.GetNetworkService() == "":
		return status.Errorf(codes.InvalidArgument, "connection %s names no network service", conn.GetId())
	case len(req.GetMechanismPreferences()) == 0:
		return status.Errorf(codes.InvalidArgument, "connection %s: request offers no mechanism (mechanism_preferences is empty)", conn.GetId())
	}
	return nil
}
