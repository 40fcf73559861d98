package manager

import (
	"context"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// healTimeout bounds one heal attempt.
const healTimeout = 30 * time.Second

// Waits between the attempts of a bounded heal (healWithin).
const (
	healRetryMin = 250 * time.Millisecond
	healRetryMax = 2 * time.Second
)

// reselectCloseTimeout bounds closing what is left of a path before
// selecting again: its hops may be the ones that are gone.
const reselectCloseTimeout = 5 * time.Second

// healAll heals, in the background, every connection that match selects:
// a next hop of theirs went away or came back.
func (m *Manager) healAll(reason string, sameHops bool, match func(*connection) bool) {
	m.eachMatching(match, func(id string, _ *connection) { m.heal(id, reason, sameHops) })
}

// healAllWithin heals, in the background, every connection that match
// selects through the same hops for up to wait, and only then selects
// again (healWithin): their forwarder went away, and a restarted forwarder
// is back within seconds with their vWires still in the dataplane. An
// immediate reselection would close them in it and move them to another
// endpoint for nothing.
func (m *Manager) healAllWithin(reason string, wait time.Duration, match func(*connection) bool) {
	m.eachMatching(match, func(id string, c *connection) { m.healWithin(id, c, reason, wait) })
}

// eachMatching runs f, each in a goroutine of its own, for every connection
// that match selects now; nothing once Stop has begun.
func (m *Manager) eachMatching(match func(*connection) bool, f func(id string, c *connection)) {
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	seen := map[string]*connection{}
	for id, c := range m.conns {
		if match(c) {
			seen[id] = c
		}
	}
	// Added under mu, which Stop takes to cancel m.ctx: Stop's Wait then
	// never races an Add (a gRPC handler may heal while the manager stops).
	m.wg.Add(len(seen))
	m.mu.Unlock()
	for id, c := range seen {
		go func() {
			defer m.wg.Done()
			f(id, c)
		}()
	}
}

// heal re-requests a connection on the client's behalf, without waiting
// for its next refresh: through the same endpoint and forwarder when they
// answer, else (unless the caller pinned the endpoint) through another.
// Watchers see the connection DOWN, then UP on its new path. A heal that
// fails leaves the connection to the client's next refresh and its expiry.
// sameHops says whether the old endpoint and forwarder may still answer.
func (m *Manager) heal(id, reason string, sameHops bool) {
	m.healOnce(id, nil, reason, sameHops, true)
}

// healWithin heals a connection whose next hop failed: it re-requests it
// through the same hops until they answer or wait has passed (a restarted
// manager or node is back within seconds, and its endpoint keeps its
// addresses), and only then selects again. It gives up when the
// connection changes under it (closed, refreshed, healed by a client's
// refresh): seen is the connection as it was when the failure was seen.
// Between attempts the connection is unlocked, so that the client can
// still refresh or close it.
func (m *Manager) healWithin(id string, seen *connection, reason string, wait time.Duration) {
	deadline := time.Now().Add(wait)
	pause := healRetryMin
	for {
		last := !time.Now().Before(deadline)
		if m.healOnce(id, seen, reason, true, last) {
			return
		}
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(min(pause, time.Until(deadline))):
		}
		pause = min(2*pause, healRetryMax)
	}
}

// healOnce makes one heal attempt and reports whether the heal is over
// (done, given up, or nothing left to heal). It tries the same hops when
// sameHops; it selects again when that fails and reselect is set, or at
// once when the old endpoint is known to be gone (NotFound).
func (m *Manager) healOnce(id string, seen *connection, reason string, sameHops, reselect bool) bool {
	unlock := m.locks.Lock(id)
	defer unlock()
	old := m.get(id)
	if old == nil || (seen != nil && old != seen) {
		return true
	}
	ctx, cancel := context.WithTimeout(m.ctx, healTimeout)
	defer cancel()
	if old.conn.GetState() != networkservice.State_DOWN {
		m.setState(old, networkservice.State_DOWN)
		m.log.Info("healing connection", "conn", id, "why", reason, "endpoint", old.endpoint, "forwarder", old.forwarder, "next_hop", old.nextHop)
	}
	start := time.Now()
	conn := proto.Clone(old.conn).(*networkservice.Connection)
	conn.State = networkservice.State_UP // what we ask of the hops, not what we tell watchers
	var c *connection
	err := status.Error(codes.Unavailable, reason)
	if sameHops {
		c, err = m.refresh(ctx, conn, old.prefs, old)
		if status.Code(err) == codes.NotFound {
			reselect = true // the endpoint is gone for good: no use waiting for it
		}
	}
	if err != nil && reselect && !old.pinned && ctx.Err() == nil {
		c, err = m.reselect(ctx, proto.Clone(old.conn).(*networkservice.Connection), old.prefs, old)
	}
	if err != nil {
		if reselect || ctx.Err() != nil {
			m.log.Warn("heal failed; the client's refresh will retry", "conn", id, "err", err)
			return true
		}
		m.log.Debug("heal: the same hops do not answer yet", "conn", id, "err", err)
		return false
	}
	c.id, c.expires, c.caller, c.files = id, old.expires, old.caller, old.files
	m.remember(c)
	m.metrics.heals.Inc()
	m.log.Info("connection healed", "conn", id, "endpoint", c.endpoint, "forwarder", c.forwarder, "next_hop", c.nextHop, "took", time.Since(start))
	return true
}

// reselect closes what is left of old's path and selects again, trying
// old's endpoint last (or only it, when the caller pinned it). The path
// keeps its segment ids: a hop the close did not reach sees a refresh and
// reroutes what it holds instead of building a second copy beside it.
// The old endpoint's addresses are dropped: the new one allocates its own.
func (m *Manager) reselect(ctx context.Context, conn *networkservice.Connection, prefs []*networkservice.Mechanism, old *connection) (*connection, error) {
	// The forwarder, asked for the same connection towards another
	// endpoint, closes the old endpoint's part itself (or, behind the same
	// remote manager, that manager reroutes it) and changes only what
	// differs: the kernel deletes links one at a time, and a heal that
	// moves many vWires must not delete more than it needs. Only a gone
	// forwarder's part is closed first.
	if m.forwarderByName(old.forwarder) == nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reselectCloseTimeout)
		m.closeForwarder(cctx, old)
		cancel()
	}
	conn.State = networkservice.State_UP // the request onward is a plain one
	conn.NetworkServiceEndpointName = ""
	if old.pinned {
		conn.NetworkServiceEndpointName = old.endpoint
	}
	if conn.GetContext().GetIpContext() != nil {
		conn.Context.IpContext = nil
	}
	c, err := m.connect(ctx, conn, prefs, old.endpoint)
	if err != nil {
		return nil, err
	}
	if c.endpoint != old.endpoint {
		m.metrics.reselects.Inc()
	}
	if c.forwarder != old.forwarder && m.forwarderByName(old.forwarder) != nil {
		// Another forwarder carries it now: the old one's part goes (a
		// next hop that now serves the new path refuses its Close: the
		// caller changed).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reselectCloseTimeout)
		m.closeForwarder(cctx, old)
		cancel()
	}
	return c, nil
}

// reselectRequested serves a Request whose client asked for another
// endpoint (state RESELECT_REQUESTED, as NSM's clients send when their
// datapath check fails): the old path is closed on every hop and the
// connection selected again, trying the old endpoint last. Watchers see it
// DOWN, then UP on its new path; when no endpoint answers the connection
// is gone (its path was closed) and watchers see it deleted.
func (m *Manager) reselectRequested(ctx context.Context, conn *networkservice.Connection, prefs []*networkservice.Mechanism, old *connection) (*connection, error) {
	m.log.Info("client requested reselection", "conn", old.id, "endpoint", old.endpoint, "forwarder", old.forwarder)
	m.setState(old, networkservice.State_DOWN)
	c, err := m.reselect(ctx, conn, prefs, old)
	if err != nil {
		m.forget(old.id)
		return nil, err
	}
	return c, nil
}

// setState changes a live connection's state and tells watchers.
func (m *Manager) setState(c *connection, st networkservice.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conns[c.id] != c {
		return
	}
	c.conn = proto.Clone(c.conn).(*networkservice.Connection)
	c.conn.State = st
	m.publishLocked(networkservice.ConnectionEventType_UPDATE, c)
}
