// Package passthrough is an endpoint that is also a client: it accepts a
// vWire, requests the same network service onward through its manager
// with its own labels (so the service's matches send it further down a
// composition, e.g. from an IPS to a vL3), and joins the two vWires inside
// its namespace, optionally dropping what --deny rules name and counting
// what passes and what is dropped. The onward connection is refreshed with
// the incoming one and closed when it closes or expires.
//
// Addresses come from the far end: the incoming connection is given the
// onward connection's IP context, so the client and the final endpoint
// talk as if the passthrough were not there. The two interfaces are joined
// with tc mirred redirects (see TC), not by routing: with routing the
// passthrough would hold the client's own address on its onward interface.
package passthrough

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/workload/nse"
)

// Defaults.
const (
	DefaultTTL          = 10 * time.Minute
	DefaultWireInterval = 500 * time.Millisecond
	DefaultStatsEvery   = 10 * time.Second
	closeTimeout        = 10 * time.Second
)

// Config configures a Service.
type Config struct {
	// Name is the passthrough's name in the onward connection's path.
	Name string
	// Labels are the onward request's labels (e.g. provided=ips).
	Labels map[string]string
	// NetNSURL is where the onward interface goes: the same namespace as
	// the incoming one. This process's when empty.
	NetNSURL string
	Onward   Onward // required
	Wirer    Wirer  // required
	// TTL of the onward path segment when the incoming path does not say.
	TTL time.Duration
	// WireInterval is how often each connection's wire is checked (and
	// rebuilt when the dataplane replaced an interface) and counted.
	WireInterval time.Duration
	// StatsEvery is how often changed counters are logged.
	StatsEvery time.Duration
	Logger     *slog.Logger
}

// Service is the passthrough's nse.Service.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex      // guards the fields below
	conns  map[string]*hop // by the incoming connection's id (this endpoint's)
	closed Counters        // counters of connections already closed
	wg     sync.WaitGroup  // wire loops; Add under mu
}

// hop is one incoming connection and its onward one.
type hop struct {
	onward  *networkservice.Connection
	in, out string // interface names in our namespace
	stop    context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex // guards counters
	counters Counters
}

var _ nse.Service = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Onward == nil || cfg.Wirer == nil {
		return nil, errors.New("passthrough: onward client and wirer are required")
	}
	if cfg.Name == "" {
		cfg.Name = "passthrough"
	}
	if cfg.NetNSURL == "" {
		cfg.NetNSURL = nse.OwnNetNSURL()
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.WireInterval <= 0 {
		cfg.WireInterval = DefaultWireInterval
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = DefaultStatsEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: log.With("passthrough", cfg.Name), conns: map[string]*hop{}}, nil
}

// Request requests (or refreshes) the onward connection, gives the
// incoming connection its IP context, and starts joining the two
// interfaces once the dataplane has plugged them.
func (s *Service) Request(ctx context.Context, conn *networkservice.Connection) error {
	in := conn.GetMechanism().GetParameters()[common.InterfaceNameKey]
	if conn.GetMechanism().GetType() != kernel.Type || in == "" {
		return status.Errorf(codes.InvalidArgument, "passthrough: connection %s: only the KERNEL mechanism can be passed through", conn.GetId())
	}
	s.mu.Lock()
	h := s.conns[conn.GetId()]
	s.mu.Unlock()

	req := s.onwardRequest(conn, h, time.Now())
	onward, err := s.cfg.Onward.Request(ctx, req)
	if err != nil {
		st := status.Convert(err)
		return status.Errorf(st.Code(), "passthrough: onward request for %s: %s", conn.GetNetworkService(), st.Message())
	}
	out := onward.GetMechanism().GetParameters()[common.InterfaceNameKey]
	if out == "" {
		out = req.GetMechanismPreferences()[0].GetParameters()[common.InterfaceNameKey]
	}
	if conn.Context == nil {
		conn.Context = &networkservice.ConnectionContext{}
	}
	conn.Context.IpContext = &networkservice.IPContext{}
	if ipc := onward.GetContext().GetIpContext(); ipc != nil {
		conn.Context.IpContext = proto.Clone(ipc).(*networkservice.IPContext)
	}

	if h != nil {
		h.onward = onward
		return nil
	}
	h = &hop{onward: onward, in: in, out: out, done: make(chan struct{})}
	var wctx context.Context
	wctx, h.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	s.conns[conn.GetId()] = h
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer close(h.done)
		s.wire(wctx, conn.GetId(), h)
	}()
	s.log.Info("passing through", "conn", conn.GetId(), "onward", onward.GetId(), "in", in, "out", out,
		"ip", onward.GetContext().GetIpContext().GetSrcIpAddrs())
	return nil
}

// Close stops joining the interfaces and closes the onward connection.
func (s *Service) Close(ctx context.Context, conn *networkservice.Connection) error {
	s.mu.Lock()
	h := s.conns[conn.GetId()]
	delete(s.conns, conn.GetId())
	s.mu.Unlock()
	if h == nil {
		return nil
	}
	h.stop()
	<-h.done
	c := h.get()
	s.mu.Lock()
	s.closed = s.closed.Add(c)
	s.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	err := s.cfg.Onward.Close(cctx, h.onward)
	s.log.Info("passthrough closed", "conn", conn.GetId(), "onward", h.onward.GetId(), "passed", c.Passed, "dropped", c.Dropped, "err", err)
	if err != nil {
		return fmt.Errorf("passthrough: %w", err)
	}
	return nil
}

// Counters are the totals over every connection, open or closed.
func (s *Service) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := s.closed
	for _, h := range s.conns {
		total = total.Add(h.get())
	}
	return total
}

// Wait waits for every wire loop to end (after the connections closed).
func (s *Service) Wait() { s.wg.Wait() }

// onwardRequest is the request for the onward connection of conn: a new
// one (its own id, the passthrough as the first path segment, the onward
// labels) or a refresh of h's.
func (s *Service) onwardRequest(conn *networkservice.Connection, h *hop, now time.Time) *networkservice.NetworkServiceRequest {
	var onward *networkservice.Connection
	if h != nil {
		onward = h.onward.Clone()
	} else {
		id := uuid.NewString()
		onward = &networkservice.Connection{
			Id:             id,
			NetworkService: conn.GetNetworkService(),
			Payload:        conn.GetPayload(),
			Labels:         maps.Clone(s.cfg.Labels),
			Path:           &networkservice.Path{PathSegments: []*networkservice.PathSegment{{Name: s.cfg.Name, Id: id}}},
		}
	}
	own := 0
	for i, seg := range onward.GetPath().GetPathSegments() {
		if seg.GetId() == onward.GetId() {
			own = i
			break
		}
	}
	onward.Path.Index = uint32(own)
	onward.Path.PathSegments[own].Expires = timestamppb.New(expiresAfter(conn, now, s.cfg.TTL))
	mech := kernel.New(kernel.Params{Name: kernel.DefaultName(onward.GetId()), NetNSURL: s.cfg.NetNSURL})
	return &networkservice.NetworkServiceRequest{Connection: onward, MechanismPreferences: []*networkservice.Mechanism{mech}}
}

// wire keeps h's interfaces joined and its counters read until ctx ends.
func (s *Service) wire(ctx context.Context, id string, h *hop) {
	log := s.log.With("conn", id, "in", h.in, "out", h.out)
	t := time.NewTicker(s.cfg.WireInterval)
	defer t.Stop()
	var (
		lastErr string
		wired   bool
		logged  Counters
		lastLog time.Time
	)
	for {
		if err := s.cfg.Wirer.Ensure(h.in, h.out); err != nil {
			if msg := err.Error(); msg != lastErr && !errors.Is(err, ErrNoLink) {
				log.Warn("cross-connect", "err", err)
				lastErr = msg
			}
			wired = false
		} else {
			if !wired {
				log.Info("cross-connected")
				wired, lastErr = true, ""
			}
			if c, err := s.cfg.Wirer.Counters(h.in, h.out); err == nil {
				h.set(c)
				if c != logged && time.Since(lastLog) >= s.cfg.StatsEvery {
					total := s.Counters()
					log.Info("passthrough counters", "passed", c.Passed, "dropped", c.Dropped,
						"total_passed", total.Passed, "total_dropped", total.Dropped)
					logged, lastLog = c, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			if c, err := s.cfg.Wirer.Counters(h.in, h.out); err == nil {
				h.set(c)
			}
			return
		case <-t.C:
		}
	}
}

func (h *hop) get() Counters {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counters
}

func (h *hop) set(c Counters) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// An interface replaced by the dataplane starts its counters again:
	// never go backwards.
	h.counters = Counters{Passed: max(h.counters.Passed, c.Passed), Dropped: max(h.counters.Dropped, c.Dropped)}
}
