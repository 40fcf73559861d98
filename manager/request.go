package manager

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/internal/connpath"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/mechanisms"
	"github.com/vwire/vwire/registry/validate"
)

// Request connects a client (or a remote forwarder) to an endpoint. The
// steps, in order:
//
//	validate → path → serialise → known connection? (RESELECT_REQUESTED?
//	close its path and select again : refresh it with the same endpoint
//	and forwarder) : discover and select → hand to a forwarder →
//	remember → reply
func (m *Manager) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (reply *networkservice.Connection, err error) {
	defer func(start time.Time) { m.metrics.observeRequest(start, err) }(time.Now())
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	conn := req.GetConnection() // decoded for this call alone: ours to change
	restoreNames := m.localNames(conn)
	m.fillLabels(conn)
	hop, err := connpath.Enter(conn, m.name)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "connection.path: %v", err)
	}
	caller, err := m.tokens.Admit(ctx, conn, hop.PrevIndex, m.src.ID())
	if err != nil {
		return nil, err
	}
	if err := m.mayRequest(conn); err != nil {
		return nil, err
	}
	unlock := m.locks.Lock(hop.ID())
	defer unlock()
	expires := connpath.Expiry(hop.Prev(conn), m.clock.Now(), m.lifetime)
	connpath.SetExpires(hop.Segment, expires)
	if old := m.get(hop.ID()); old != nil && old.caller != caller.String() {
		return nil, status.Errorf(codes.PermissionDenied, "connection %s belongs to %s, not %s", hop.ID(), old.caller, caller)
	}

	var held clientFiles
	if old := m.get(hop.ID()); old != nil {
		held = old.files
	}
	prefs, files, err := receiveFiles(ctx, req.GetMechanismPreferences(), held)
	if err != nil {
		return nil, err
	}
	from := incomingFromDomain(ctx)
	ctx = withFromDomain(ctx, from)
	var c *connection
	reselect := conn.GetState() == networkservice.State_RESELECT_REQUESTED
	if old := m.get(hop.ID()); old != nil && reselect {
		c, err = m.reselectRequested(ctx, conn, prefs, old)
	} else if old != nil && old.pinned && m.renamed(conn.GetNetworkServiceEndpointName(), old.endpoint) {
		// The caller chose another endpoint for this connection (its own
		// heal reselected): build it there; the forwarder reroutes what it
		// holds and closes the old endpoint's part.
		m.log.Info("caller moved the connection to another endpoint", "conn", hop.ID(), "from", old.endpoint, "to", conn.GetNetworkServiceEndpointName())
		c, err = m.connect(ctx, conn, prefs, "")
	} else if old != nil {
		c, err = m.refresh(ctx, conn, prefs, old)
		// Without our forwarder (restarting, its vWires still in the
		// dataplane) the heal that noticed it waits for it and only then
		// selects again; reselecting here would tear them down for
		// nothing. The caller retries its refresh.
		// Likewise when a remote next hop cannot carry it for now (its
		// manager's forwarder restarting, its manager or node away):
		// the bounded heal retries the same hops and selects again only
		// after the reselect timeout. Only an endpoint known to be gone
		// (NotFound) or a refusal makes this refresh select again.
		if err != nil && old.remote && status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			m.log.Info("refresh failed; healing through the same hops first", "conn", hop.ID(), "endpoint", old.endpoint, "err", err)
			m.healNextHop(hop.ID(), old, "refresh failed: "+status.Convert(err).Message())
		} else if err != nil && !old.pinned && ctx.Err() == nil && m.forwarderByName(old.forwarder) != nil {
			m.log.Info("refresh failed; reselecting", "conn", hop.ID(), "endpoint", old.endpoint, "err", err)
			m.metrics.reselects.Inc()
			conn.NetworkServiceEndpointName = "" // the manager chose it: choose again
			c, err = m.connect(ctx, conn, prefs, old.endpoint)
		}
	} else {
		avoid := ""
		if reselect {
			// Asked to reselect a connection this manager does not know
			// (it restarted): what the client names is what failed it.
			avoid, conn.NetworkServiceEndpointName, conn.State = conn.GetNetworkServiceEndpointName(), "", networkservice.State_UP
		}
		c, err = m.connect(ctx, conn, prefs, avoid)
	}
	if err != nil {
		files.closeExcept(held)
		return nil, err
	}
	c.id, c.expires, c.caller, c.files, c.fromDomain = hop.ID(), expires, caller.String(), files, from
	m.remember(c)
	reply = toClient(ctx, c.conn, c.files)
	restoreNames(reply)
	connpath.Leave(reply, hop)
	return reply, nil
}

// mayRequest applies the policy to the client that asked: the subject of
// the path's first segment, whose token chain Admit verified.
func (m *Manager) mayRequest(conn *networkservice.Connection) error {
	if m.policy == nil {
		return nil
	}
	c, err := m.tokens.Parse(conn.GetPath().GetPathSegments()[0].GetToken())
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "path: %v", err)
	}
	if err := m.policy.MayRequest(c.Subject, conn.GetNetworkService()); err != nil {
		m.log.Warn("request refused by policy", "client", c.Subject, "service", conn.GetNetworkService(), "err", err)
		m.metrics.refusals.WithLabelValues("request").Inc()
		return status.Errorf(codes.PermissionDenied, "%v", err)
	}
	return nil
}

func validateRequest(req *networkservice.NetworkServiceRequest) error {
	conn := req.GetConnection()
	if conn == nil {
		return status.Error(codes.InvalidArgument, "request has no connection")
	}
	if conn.GetNetworkService() == "" {
		return status.Error(codes.InvalidArgument, "connection.network_service: must name a network service")
	}
	if err := validate.Name(conn.GetNetworkService()); err != nil {
		return status.Errorf(codes.InvalidArgument, "connection.network_service: %v", err)
	}
	if err := validate.Labels("connection.labels", conn.GetLabels()); err != nil {
		return status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if len(req.GetMechanismPreferences()) == 0 {
		return status.Error(codes.InvalidArgument, "mechanism_preferences: at least one mechanism must be offered")
	}
	for i, mech := range req.GetMechanismPreferences() {
		if err := mechanisms.ValidateOffer(mech); err != nil {
			return status.Errorf(codes.InvalidArgument, "mechanism_preferences[%d]: %v", i, err)
		}
	}
	return nil
}

// fillLabels gives a client without a nodeName label this node's name.
func (m *Manager) fillLabels(conn *networkservice.Connection) {
	if m.node == "" || conn.GetLabels()[LabelNodeName] != "" {
		return
	}
	if conn.Labels == nil {
		conn.Labels = map[string]string{}
	}
	conn.Labels[LabelNodeName] = m.node
}

// refresh renews a known connection through the same endpoint and forwarder.
func (m *Manager) refresh(ctx context.Context, conn *networkservice.Connection, prefs []*networkservice.Mechanism, old *connection) (*connection, error) {
	fwd := m.forwarderByName(old.forwarder)
	if fwd == nil {
		return nil, status.Errorf(codes.Unavailable, "forwarder %s is gone", old.forwarder)
	}
	nextHop, remote := old.nextHop, old.remote
	if ep := m.localEndpoint(old.endpoint); ep != nil {
		nextHop, remote = ep.url, false // it may have re-registered elsewhere
	} else if !old.remote {
		// Known gone: the previous hop may reselect at once.
		return nil, status.Errorf(codes.NotFound, "endpoint %s is no longer registered on node %s", old.endpoint, m.node)
	}
	if conn.GetNetworkServiceEndpointName() != old.endpoint {
		// The caller has not seen this connection move to another
		// endpoint (a heal): its addresses, and the path beyond this
		// manager, are the old endpoint's. Ours are current.
		if old.conn.GetContext() != nil {
			conn.Context = proto.Clone(old.conn.GetContext()).(*networkservice.ConnectionContext)
		}
		if segs, i := old.conn.GetPath().GetPathSegments(), int(old.conn.GetPath().GetIndex()); i < len(segs) {
			own := int(conn.GetPath().GetIndex())
			conn.Path.PathSegments = append(conn.Path.PathSegments[:own+1:own+1], clonePathSegments(segs[i+1:])...)
		}
	}
	conn.NetworkServiceEndpointName = old.endpoint
	if conn.Payload == "" {
		conn.Payload = old.conn.GetPayload()
	}
	ctx = withFromDomain(ctx, old.fromDomain) // also when a heal refreshes
	reply, err := m.callForwarder(ctx, fwd, conn, prefs, nextHop, remote, old.foreign && remote)
	if err != nil {
		return nil, err
	}
	return &connection{conn: reply, prefs: prefs, endpoint: old.endpoint, forwarder: fwd.name, nextHop: nextHop, remote: remote,
		foreign: old.foreign && remote, fromDomain: old.fromDomain, pinned: old.pinned}, nil
}

// renamed tells whether a Request names another endpoint than the one
// the connection has (two names of one local endpoint are the same).
func (m *Manager) renamed(asked, has string) bool {
	if asked == "" || asked == has {
		return false
	}
	ep := m.localEndpoint(asked)
	return ep == nil || ep != m.localEndpoint(has)
}

func clonePathSegments(segs []*networkservice.PathSegment) []*networkservice.PathSegment {
	out := make([]*networkservice.PathSegment, len(segs))
	for i, s := range segs {
		out[i] = proto.Clone(s).(*networkservice.PathSegment)
	}
	return out
}

// SupplierStarting begins the message of the error a supplier endpoint
// returns after starting an endpoint for the client: discovery should be
// tried again, for up to the reselect timeout.
const SupplierStarting = "supplier: starting"

// connect discovers the candidate endpoints and tries them in round-robin
// order until one answers through a forwarder. avoid names an endpoint that
// just failed this connection: it is tried last. When a supplier said it is
// starting an endpoint, discovery is tried again until the reselect timeout.
func (m *Manager) connect(ctx context.Context, conn *networkservice.Connection, prefs []*networkservice.Mechanism, avoid string) (*connection, error) {
	deadline := time.Now().Add(m.reselectTimeout)
	wait := 100 * time.Millisecond
	for {
		c, err := m.connectOnce(ctx, conn, prefs, avoid)
		if err == nil || !strings.Contains(status.Convert(err).Message(), SupplierStarting) || time.Now().After(deadline) {
			return c, err
		}
		m.log.Info("a supplier is starting an endpoint; discovering again", "service", conn.GetNetworkService(), "in", wait)
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func (m *Manager) connectOnce(ctx context.Context, conn *networkservice.Connection, prefs []*networkservice.Mechanism, avoid string) (*connection, error) {
	t, err := m.discover(ctx, conn)
	if err != nil {
		return nil, err
	}
	conn.Payload = t.payload
	fwds := m.forwardersMatching(t.forwarderLabels)
	if len(fwds) == 0 {
		return nil, status.Errorf(codes.Unavailable, "no forwarder on node %s matches labels %s", m.node, formatLabels(t.forwarderLabels))
	}
	var tried []string
	for _, nse := range m.order(conn.GetNetworkService(), t.endpoints, avoid) {
		c, err := m.via(ctx, conn, prefs, nse, fwds)
		if err == nil {
			c.pinned = t.pinned
			return c, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %s", nse.GetName(), status.Convert(err).Message()))
		m.log.Info("endpoint failed; trying the next candidate", "service", conn.GetNetworkService(), "endpoint", nse.GetName(), "err", err)
		if code := status.Code(err); code == codes.InvalidArgument || code == codes.PermissionDenied {
			// Another endpoint would refuse it too: the caller must see why.
			return nil, status.Errorf(code, "network service %q: endpoint %s", conn.GetNetworkService(), tried[len(tried)-1])
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, status.Errorf(codes.Unavailable, "network service %q: no candidate endpoint answered (tried %s)",
		conn.GetNetworkService(), strings.Join(tried, "; "))
}

// via sends the connection to one endpoint through the first forwarder that
// builds it. A forwarder that fails by itself (not its next hop) is passed
// over for the next one.
func (m *Manager) via(ctx context.Context, conn *networkservice.Connection, prefs []*networkservice.Mechanism, nse *regapi.NetworkServiceEndpoint, fwds []*localForwarder) (*connection, error) {
	nextHop, remote := nse.GetUrl(), true
	if ep := m.localEndpoint(nse.GetName()); ep != nil {
		nextHop, remote = ep.url, false
	} else if nse.GetUrl() == m.url {
		return nil, status.Errorf(codes.Unavailable, "endpoint %s is registered through this manager but has not re-registered since it restarted", nse.GetName())
	}
	foreign := remote && m.foreign(nse.GetName())
	// The next candidate (or the caller) starts from the connection as it
	// was: this is the only field changed here (stamp only re-signs our
	// own segment).
	defer func(name string) { conn.NetworkServiceEndpointName = name }(conn.GetNetworkServiceEndpointName())
	conn.NetworkServiceEndpointName = nse.GetName()
	var err error
	for _, fwd := range fwds {
		var reply *networkservice.Connection
		var nextFailed bool
		reply, nextFailed, err = m.callForwarderTrailer(ctx, fwd, conn, prefs, nextHop, remote, foreign)
		if err == nil {
			return &connection{conn: reply, prefs: prefs, endpoint: nse.GetName(), forwarder: fwd.name, nextHop: nextHop, remote: remote,
				foreign: foreign, fromDomain: fromDomain(ctx)}, nil
		}
		if nextFailed || ctx.Err() != nil {
			return nil, err
		}
		m.log.Warn("forwarder failed", "forwarder", fwd.name, "err", err)
	}
	return nil, err
}

func (m *Manager) callForwarder(ctx context.Context, fwd *localForwarder, conn *networkservice.Connection, prefs []*networkservice.Mechanism, nextHop string, remote, foreign bool) (*networkservice.Connection, error) {
	reply, _, err := m.callForwarderTrailer(ctx, fwd, conn, prefs, nextHop, remote, foreign)
	return reply, err
}

// callForwarderTrailer hands the connection to a forwarder and reports
// whether a failure was the next hop's. foreign: the next hop is another
// registry domain's manager.
func (m *Manager) callForwarderTrailer(ctx context.Context, fwd *localForwarder, conn *networkservice.Connection, prefs []*networkservice.Mechanism, nextHop string, remote, foreign bool) (*networkservice.Connection, bool, error) {
	cc, err := m.pool.Get(fwd.url)
	if err != nil {
		return nil, false, status.Errorf(codes.Unavailable, "forwarder %s: %v", fwd.name, err)
	}
	kv := append([]string{forwarder.MDNextHop, nextHop, forwarder.MDNextHopRemote, boolString(remote)}, crossingMD(ctx, foreign)...)
	octx, err := m.stamp(ctx, conn, fwd.url, kv...)
	if err != nil {
		return nil, false, err
	}
	req := &networkservice.NetworkServiceRequest{Connection: conn, MechanismPreferences: prefs}
	var trailer metadata.MD
	reply, err := networkservice.NewNetworkServiceClient(cc).Request(octx, req, grpc.Trailer(&trailer))
	if status.Code(err) == codes.Unavailable && len(trailer.Get(forwarder.TrailerFailedHop)) == 0 {
		// The forwarder's socket failed: it may have just restarted.
		// Reconnect at once and give it one more, short, chance.
		m.pool.Reset(fwd.url)
		rctx, cancel := context.WithTimeout(octx, forwarderRetryTimeout)
		trailer = nil
		reply, err = networkservice.NewNetworkServiceClient(cc).Request(rctx, req, grpc.Trailer(&trailer), grpc.WaitForReady(true))
		cancel()
	}
	if err != nil {
		next := len(trailer.Get(forwarder.TrailerFailedHop)) > 0
		if !next {
			err = status.Errorf(status.Code(err), "forwarder %s: %s", fwd.name, status.Convert(err).Message())
		}
		return nil, next, err
	}
	return reply, false, nil
}

// stamp signs the manager's own segment (current in conn) for the
// forwarder at url; the call carries kv in its metadata too.
func (m *Manager) stamp(ctx context.Context, conn *networkservice.Connection, url string, kv ...string) (context.Context, error) {
	aud, err := m.pool.PeerID(ctx, url)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "forwarder at %s: %v", url, err)
	}
	svid, err := m.src.GetX509SVID()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "own SVID: %v", err)
	}
	seg := conn.GetPath().GetPathSegments()[conn.GetPath().GetIndex()]
	return m.tokens.Stamp(ctx, seg, svid, aud, seg.GetExpires().AsTime(), kv...)
}

// forwarderRetryTimeout bounds the second attempt at a forwarder whose
// socket just failed.
const forwarderRetryTimeout = 2 * time.Second

// Close tears a connection down along its path. Closing an unknown
// connection is not an error: Close is idempotent.
func (m *Manager) Close(ctx context.Context, conn *networkservice.Connection) (*empty.Empty, error) {
	defer func(start time.Time) { m.metrics.closes.Observe(time.Since(start).Seconds()) }(time.Now())
	id, ok := connpath.Find(conn, m.name)
	if !ok {
		return &empty.Empty{}, nil
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	c := m.get(id)
	if c == nil {
		return &empty.Empty{}, nil
	}
	if peer, err := identity.PeerID(ctx); err != nil || peer.String() != c.caller {
		return nil, status.Errorf(codes.PermissionDenied, "connection %s belongs to %s; %s may not close it", id, c.caller, peer)
	}
	m.forget(id)
	ctx, cancel := closeContext(ctx)
	defer cancel()
	m.closeForwarder(ctx, c)
	m.log.Debug("connection closed", "conn", id, "service", c.conn.GetNetworkService())
	return &empty.Empty{}, nil
}

// closeContext is the context of a Close's work along the rest of the
// path. It outlives the caller's cancellation (the connection is forgotten
// here already: the hops after must hear of it), and it lasts as long as
// the caller waits, cleanupTimeout at least. A fixed cleanupTimeout alone
// was shorter than what a burst of Closes served side by side takes on a
// loaded node: the forwarder call gave up, and Close returned while the
// forwarder was still closing the vWire.
func closeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(cleanupTimeout)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}
