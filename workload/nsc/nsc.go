// Package nsc is a Network Service Client: it requests network services
// from the node's manager over NSM's API, keeps each connection refreshed
// before its path expires, follows the manager's monitor events, and closes
// every connection when it stops.
package nsc

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"context"
	"errors"
	"fmt"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/mechanisms/nscurl"
	"github.com/vwire/vwire/workload/internal/backoff"
)

// Defaults.
const (
	DefaultMaxTokenLifetime = 10 * time.Minute
	DefaultRequestTimeout   = 15 * time.Second
	DefaultCloseTimeout     = 5 * time.Second

	// EnvNodeName and EnvPodName become the nodeName and podName labels.
	EnvNodeName   = "NODE_NAME"
	EnvPodName    = "POD_NAME"
	LabelNodeName = "nodeName"
	LabelPodName  = "podName"
)

// minRefresh keeps a connection whose path is about to expire from being
// refreshed in a busy loop.
const minRefresh = 100 * time.Millisecond

// errExpired ends the refreshing of a connection whose path expired before
// a refresh got through.
var errExpired = errors.New("connection expired before a refresh succeeded")

// Target is one service to request, parsed from a client URL.
type Target struct {
	nscurl.Request
	// URL is the target as given, for messages.
	URL string
}

// ParseTarget parses kernel://service[@domain][/ifname][?label=value&...]
// or memif://service[@domain][/socketfile][?labels].
func ParseTarget(s string) (Target, error) {
	r, err := nscurl.Parse(s)
	if err != nil {
		return Target{}, err
	}
	return Target{Request: r, URL: s}, nil
}

// Config configures a Client.
type Config struct {
	// Name of the client in connection paths; nsc-<hostname> when empty.
	Name string
	// Labels sent with every request; a target's own labels win, and
	// nodeName and podName are added from NODE_NAME and POD_NAME when set.
	Labels map[string]string
	// NetNSURL names the network namespace the client's side of each vWire
	// goes into; this process's own (file:///proc/<pid>/ns/net) when empty.
	NetNSURL string
	// MaxTokenLifetime is how far ahead the client's path segment expires.
	MaxTokenLifetime time.Duration
	// RequestTimeout bounds each Request; CloseTimeout each Close, also
	// when the client is stopping.
	RequestTimeout time.Duration
	CloseTimeout   time.Duration
	// Output receives a report of each connection and monitor event
	// (io.Discard when nil), in Format: "text" (default) or "json".
	Output io.Writer
	Format string
	// Source is the client's identity. When set (vwire nsc always sets it)
	// the client signs its own path segment for the manager, whose SPIFFE
	// ID it learns from cc (a *grpcutil.Conn), as NSM's clients do.
	Source identity.Source
	// LivenessInterval, when positive, checks the datapath of each kernel
	// connection: an ICMP echo to the endpoint's address every interval,
	// from the client's network namespace. After LivenessFailures losses
	// in a row (DefaultLivenessFailures when zero) the client asks its
	// manager for another endpoint (RESELECT_REQUESTED).
	LivenessInterval time.Duration
	LivenessFailures int
	Logger           *slog.Logger
}

// Client requests network services through one manager.
type Client struct {
	ns      networkservice.NetworkServiceClient
	mon     networkservice.MonitorConnectionClient
	name    string
	labels  map[string]string
	netns   string
	ttl     time.Duration
	reqTO   time.Duration
	closeTO time.Duration
	out     *printer
	src     identity.Source
	peer    func(context.Context) (spiffeid.ID, error)
	log     *slog.Logger

	liveEvery    time.Duration // 0: no datapath check
	liveFailures int
	probe        probeFunc
}

// New returns a Client of the manager at cc.
func New(cc grpc.ClientConnInterface, cfg Config) (*Client, error) {
	out, err := newPrinter(cfg.Output, cfg.Format)
	if err != nil {
		return nil, err
	}
	c := &Client{
		ns:      networkservice.NewNetworkServiceClient(cc),
		mon:     networkservice.NewMonitorConnectionClient(cc),
		name:    cfg.Name,
		labels:  withEnvLabels(cfg.Labels),
		netns:   cfg.NetNSURL,
		ttl:     cfg.MaxTokenLifetime,
		reqTO:   cfg.RequestTimeout,
		closeTO: cfg.CloseTimeout,
		out:     out,
		src:     cfg.Source,
		log:     cfg.Logger,

		liveEvery:    cfg.LivenessInterval,
		liveFailures: cfg.LivenessFailures,
		probe:        icmpProbe,
	}
	if c.liveFailures <= 0 {
		c.liveFailures = DefaultLivenessFailures
	}
	if c.src != nil {
		p, ok := cc.(interface {
			PeerID(context.Context) (spiffeid.ID, error)
		})
		if !ok {
			return nil, fmt.Errorf("nsc: signing path tokens needs a connection that knows its server's identity (grpcutil.DialPeer)")
		}
		c.peer = p.PeerID
	}
	if c.name == "" {
		c.name = DefaultName()
	}
	if c.netns == "" {
		c.netns = fmt.Sprintf("file:///proc/%d/ns/net", os.Getpid())
	}
	if c.ttl <= 0 {
		c.ttl = DefaultMaxTokenLifetime
	}
	if c.reqTO <= 0 {
		c.reqTO = DefaultRequestTimeout
	}
	if c.closeTO <= 0 {
		c.closeTO = DefaultCloseTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// DefaultName is nsc-<hostname>.
func DefaultName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host, _, _ = strings.Cut(host, ".")
	return "nsc-" + host
}

// Once requests every target, reports the connections, closes them and
// returns. It fails, with a one-line reason, on the first refused request
// (closing what it had) or on a failed close.
func (c *Client) Once(ctx context.Context, targets []Target) error {
	var conns []*networkservice.Connection
	var err error
	for _, t := range targets {
		conn, rerr := c.request(ctx, c.newRequest(t))
		if rerr != nil {
			err = fmt.Errorf("request %s: %s", t.URL, describe(rerr))
			break
		}
		c.out.connection("connected", t, conn)
		conns = append(conns, conn)
	}
	for i, conn := range conns {
		if cerr := c.close(ctx, targets[i], conn); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %s", targets[i].URL, describe(cerr))
		}
	}
	return err
}

// Run requests every target and keeps the connections until ctx ends, then
// closes them (each within the close timeout, on a context of its own). A
// request the manager refuses for good (invalid, not permitted) ends Run
// with that error; one it cannot serve yet is retried with backoff.
func (c *Client) Run(ctx context.Context, targets []Target) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards errs
		errs []error
	)
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.keep(ctx, t); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel(err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// keep holds one target's connection until ctx ends: request it, refresh
// it, request it anew if it expires, close it at the end.
func (c *Client) keep(ctx context.Context, t Target) error {
	for {
		conn, err := c.connect(ctx, t)
		if err != nil || conn == nil {
			return err
		}
		c.out.connection("connected", t, conn)

		mctx, stopMonitor := context.WithCancel(ctx)
		refreshNow := make(chan struct{}, 1)
		var watchers sync.WaitGroup
		segID := conn.GetId()
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			c.monitor(mctx, t, segID, refreshNow)
		}()
		var dp *datapath
		if c.liveEvery > 0 && checked(conn) {
			dp = newDatapath(conn)
			watchers.Add(1)
			go func() {
				defer watchers.Done()
				c.checkDatapath(mctx, t, dp)
			}()
		}
		conn, err = c.maintain(ctx, t, conn, refreshNow, dp)
		stopMonitor()
		watchers.Wait()

		if ctx.Err() != nil {
			if err := c.close(ctx, t, conn); err != nil {
				c.log.Warn("close at shutdown", "url", t.URL, "conn", conn.GetId(), "err", describe(err))
			}
			return nil
		}
		c.log.Warn("connection expired, requesting it anew", "url", t.URL, "conn", conn.GetId(), "err", err)
		c.out.connection("expired", t, conn)
	}
}

// connect makes the first request for t, retrying with backoff what may
// succeed later. It returns nil, nil when ctx ends first.
func (c *Client) connect(ctx context.Context, t Target) (*networkservice.Connection, error) {
	req := c.newRequest(t)
	b := backoff.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		c.stamp(req.GetConnection())
		conn, err := c.request(ctx, req)
		switch {
		case err == nil:
			return conn, nil
		case ctx.Err() != nil:
			return nil, nil
		case permanent(err):
			return nil, fmt.Errorf("request %s: %s", t.URL, describe(err))
		}
		wait := b.Next()
		c.log.Warn("request failed, retrying", "url", t.URL, "conn", req.GetConnection().GetId(),
			"in", wait.Round(time.Millisecond), "err", describe(err))
		if !backoff.Sleep(ctx, wait) {
			return nil, nil
		}
	}
}

// maintain refreshes conn at a third of the time left before its path
// expires, at once when the monitor says the manager dropped it, and asks
// for another endpoint when the datapath check (dp, nil when off) says the
// vWire is dead. It returns the latest connection when ctx ends (nil
// error), or when the connection expired because no refresh got through
// (errExpired).
func (c *Client) maintain(ctx context.Context, t Target, conn *networkservice.Connection, refreshNow <-chan struct{}, dp *datapath) (*networkservice.Connection, error) {
	var reselectNow <-chan struct{}
	if dp != nil {
		reselectNow = dp.reselect
	}
	for {
		wait := max(time.Until(nearestExpiry(conn))/3, minRefresh)
		timer := time.NewTimer(wait)
		reselect := false
		select {
		case <-ctx.Done():
			timer.Stop()
			return conn, nil
		case <-refreshNow:
			timer.Stop()
		case <-reselectNow:
			timer.Stop()
			reselect = true
		case <-timer.C:
		}

		expires := nearestExpiry(conn)
		b := backoff.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
		for {
			req := c.refreshRequest(t, conn)
			if reselect {
				req.Connection.State = networkservice.State_RESELECT_REQUESTED
			}
			next, err := c.request(ctx, req)
			if err == nil {
				if reselect {
					c.log.Info("reselected", "url", t.URL, "conn", next.GetId(), "from", conn.GetNetworkServiceEndpointName(), "to", next.GetNetworkServiceEndpointName())
				}
				if view(conn) != view(next) {
					c.out.connection("changed", t, next)
				}
				conn = next
				if dp != nil {
					dp.set(conn)
				}
				break
			}
			if ctx.Err() != nil {
				return conn, nil
			}
			left := time.Until(expires)
			if left <= 0 {
				return conn, fmt.Errorf("%w: %s", errExpired, describe(err))
			}
			wait := min(b.Next(), left)
			c.log.Warn("refresh failed, retrying", "url", t.URL, "conn", conn.GetId(),
				"in", wait.Round(time.Millisecond), "expires_in", left.Round(time.Millisecond), "err", describe(err))
			if !backoff.Sleep(ctx, wait) {
				return conn, nil
			}
		}
	}
}

// monitor follows the manager's events for the connection whose client
// segment is segID, reporting each; a DELETE asks maintain for a refresh
// right away. It reconnects with backoff until ctx ends.
func (c *Client) monitor(ctx context.Context, t Target, segID string, refreshNow chan<- struct{}) {
	sel := &networkservice.MonitorScopeSelector{PathSegments: []*networkservice.PathSegment{{Id: segID}}}
	b := backoff.Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second}
	for ctx.Err() == nil {
		stream, err := c.mon.MonitorConnections(ctx, sel)
		for err == nil {
			var ev *networkservice.ConnectionEvent
			if ev, err = stream.Recv(); err == nil {
				b.Reset()
				c.out.event(t, ev)
				if ev.GetType() == networkservice.ConnectionEventType_DELETE {
					select {
					case refreshNow <- struct{}{}:
					default:
					}
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			c.log.Info("the manager does not offer MonitorConnections", "url", t.URL)
			return
		}
		wait := b.Next()
		c.log.Debug("monitor stream ended, reconnecting", "url", t.URL, "in", wait.Round(time.Millisecond), "err", err)
		backoff.Sleep(ctx, wait)
	}
}

// newRequest is the first request for t: a new connection id, the client's
// path segment with that id, the mechanism the URL asks for.
func (c *Client) newRequest(t Target) *networkservice.NetworkServiceRequest {
	id := uuid.NewString()
	labels := maps.Clone(c.labels)
	maps.Copy(labels, t.Labels)
	conn := &networkservice.Connection{
		Id:             id,
		NetworkService: t.NetworkService,
		Labels:         labels,
		Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{
			{Name: c.name, Id: id},
		}},
	}
	c.stamp(conn)
	return &networkservice.NetworkServiceRequest{
		Connection:           conn,
		MechanismPreferences: []*networkservice.Mechanism{t.MechanismPreference(c.netns)},
	}
}

// refreshRequest re-requests conn as the manager returned it.
func (c *Client) refreshRequest(t Target, conn *networkservice.Connection) *networkservice.NetworkServiceRequest {
	conn = conn.Clone()
	c.stamp(conn)
	return &networkservice.NetworkServiceRequest{
		Connection:           conn,
		MechanismPreferences: []*networkservice.Mechanism{t.MechanismPreference(c.netns)},
	}
}

// stamp points the path at the client's own segment and moves its expiry
// a max token lifetime ahead.
func (c *Client) stamp(conn *networkservice.Connection) {
	i := ownIndex(conn)
	conn.Path.Index = uint32(i)
	conn.Path.PathSegments[i].Expires = timestamppb.New(time.Now().Add(c.ttl))
}

func (c *Client) request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	ctx, cancel := context.WithTimeout(ctx, c.reqTO)
	defer cancel()
	if c.src != nil {
		aud, err := c.peer(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "manager: %v", err)
		}
		svid, err := c.src.GetX509SVID()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "own SVID: %v", err)
		}
		own := req.GetConnection().GetPath().GetPathSegments()[req.GetConnection().GetPath().GetIndex()]
		if ctx, err = token.Stamp(ctx, own, svid, aud, own.GetExpires().AsTime()); err != nil {
			return nil, err
		}
	}
	conn, err := c.ns.Request(ctx, req)
	if err != nil {
		return nil, err
	}
	if conn.GetId() != req.GetConnection().GetId() || len(conn.GetPath().GetPathSegments()) == 0 {
		return nil, status.Errorf(codes.Internal, "the manager answered for connection %q with path %v, asked for %q",
			conn.GetId(), conn.GetPath(), req.GetConnection().GetId())
	}
	return conn, nil
}

// close closes conn on a context that outlives ctx, within the close timeout.
func (c *Client) close(ctx context.Context, t Target, conn *networkservice.Connection) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.closeTO)
	defer cancel()
	if _, err := c.ns.Close(cctx, conn); err != nil {
		return err
	}
	c.out.connection("closed", t, conn)
	return nil
}

// ownIndex is the index of the client's segment: the one whose id is the
// connection's id, else the path's index.
func ownIndex(conn *networkservice.Connection) int {
	segs := conn.GetPath().GetPathSegments()
	for i, s := range segs {
		if s.GetId() == conn.GetId() {
			return i
		}
	}
	return min(int(conn.GetPath().GetIndex()), len(segs)-1)
}

// nearestExpiry is the soonest expiry among the segments after the
// client's own, or the client's own when none says.
func nearestExpiry(conn *networkservice.Connection) time.Time {
	segs := conn.GetPath().GetPathSegments()
	own := ownIndex(conn)
	var t time.Time
	for _, s := range segs[own+1:] {
		if s.GetExpires() == nil {
			continue
		}
		if e := s.GetExpires().AsTime(); t.IsZero() || e.Before(t) {
			t = e
		}
	}
	if t.IsZero() {
		t = segs[own].GetExpires().AsTime()
	}
	return t
}

// permanent reports whether a refused request cannot succeed by asking again.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

// describe renders an error on one line: the gRPC code and message.
func describe(err error) string {
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Code().String() + ": " + st.Message()
	}
	return strings.Join(strings.Fields(msg), " ")
}

func withEnvLabels(labels map[string]string) map[string]string {
	out := map[string]string{}
	for label, env := range map[string]string{LabelNodeName: EnvNodeName, LabelPodName: EnvPodName} {
		if v := os.Getenv(env); v != "" {
			out[label] = v
		}
	}
	maps.Copy(out, labels)
	return out
}
