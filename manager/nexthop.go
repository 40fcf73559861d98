package manager

// Watching remote next hops.
//
// A connection to an endpoint on another node goes manager → forwarder →
// remote manager → ... The manager, not its forwarder, watches that remote
// manager, although the forwarder is the hop that sends it Requests: the
// manager is the hop that can act on what it sees (it owns endpoint and
// forwarder selection, the reselect bound, the connection table and the
// clients' MonitorConnections streams), whereas the forwarder is a
// dataplane agent with no selection and no MonitorConnection server; a
// watch there would only relay every event to the manager through one more
// stream and one more place to lose it. The manager dials the remote
// manager through its own pool (its own SVID), so the stream shares the
// one HTTP/2 connection per peer the pool keeps. Next hops on this node
// (forwarders, local endpoints) are probed instead: see probeLoop.
//
// One MonitorConnections stream per remote manager carries every
// connection this manager sent through it, and stays open for peerLinger
// after the last of them closed (a stream per connection, opened and
// closed with it, cost both managers more than the Request itself): the scope selector is this
// manager's own path segment name, which every such connection's path
// holds, so thousands of vWires to one peer cost one stream. The stream
// starts with the peer's state: a connection of ours it does not have, or
// has DOWN, is healed, as is one it later reports DOWN or deleted. When the
// stream breaks (the peer's process died, its node or the network went
// away), every connection through the peer is healed: re-requested through
// the same hops until they answer again or the reselect timeout passes,
// then moved to another endpoint (heal.go).

import (
	"context"
	"fmt"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Bounds of the waits between attempts to reopen a next hop's stream.
const (
	peerRetryMin = 100 * time.Millisecond
	peerRetryMax = 3 * time.Second
	// peerLinger is how long the stream to a remote manager stays open
	// without connections through it, for the next ones.
	peerLinger = time.Minute
)

// nextHops is the manager's watch state, guarded by Manager.mu. Its zero
// value is ready to use.
type nextHops struct {
	peers   map[string]*peerWatch // by remote manager URL
	healing map[string]bool       // connection ids with a next-hop heal in flight
}

// peerWatch is the stream to one remote manager, kept while at least one
// connection goes through it and for peerLinger after.
type peerWatch struct {
	conns  int
	cancel context.CancelFunc
	linger *time.Timer // running while conns is 0
}

// trackLocked moves the watch of a connection from old's next hop to c's
// (either may be nil). m.mu must be held.
func (m *Manager) trackLocked(old, c *connection) {
	if c != nil && c.remote {
		m.acquirePeerLocked(c.nextHop)
	}
	if old != nil && old.remote {
		m.releasePeerLocked(old.nextHop)
	}
}

func (m *Manager) acquirePeerLocked(url string) {
	if m.hops.peers == nil {
		m.hops.peers = map[string]*peerWatch{}
	}
	p := m.hops.peers[url]
	if p == nil {
		if m.ctx.Err() != nil {
			return // stopping: start nothing new
		}
		ctx, cancel := context.WithCancel(m.ctx)
		p = &peerWatch{cancel: cancel}
		m.hops.peers[url] = p
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.watchPeer(ctx, url)
		}()
	}
	if p.linger != nil {
		p.linger.Stop()
		p.linger = nil
	}
	p.conns++
}

func (m *Manager) releasePeerLocked(url string) {
	p := m.hops.peers[url]
	if p == nil {
		return
	}
	if p.conns--; p.conns > 0 {
		return
	}
	p.linger = time.AfterFunc(peerLinger, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.hops.peers[url] == p && p.conns <= 0 {
			p.cancel()
			delete(m.hops.peers, url)
		}
	})
}

// watchPeer keeps a MonitorConnections stream open to the remote manager
// at url until ctx ends, healing the connections through it whenever the
// stream breaks or reports one of them lost. Until a first stream has
// opened, failing to open one heals only when nothing accepts connections
// at url any more: a peer that answers but cannot be watched (it refuses
// the stream, or this manager's identity) must not have its connections
// rebuilt over and over.
func (m *Manager) watchPeer(ctx context.Context, url string) {
	wait := peerRetryMin
	watched, answering := false, false
	for {
		opened, err := m.followPeer(ctx, url)
		if ctx.Err() != nil {
			return
		}
		if opened {
			wait, watched, answering = peerRetryMin, true, true
		}
		switch {
		case !watched && refusesWatch(err):
			m.log.Warn("next hop does not let this manager watch its connections; relying on refreshes", "next_hop", url, "err", err)
			return
		case !watched && reachable(ctx, url, time.Second):
			m.log.Debug("cannot watch next hop yet", "next_hop", url, "err", err)
		case !watched:
			m.log.Info("next hop gone before it could be watched; healing the connections through it", "next_hop", url, "err", err)
			m.healVia(url, fmt.Sprintf("next hop %s: %s", url, status.Convert(err).Message()))
		case answering:
			m.log.Info("next hop unreachable; healing the connections through it", "next_hop", url, "err", err)
			m.healVia(url, fmt.Sprintf("next hop %s: %s", url, status.Convert(err).Message()))
		default:
			m.log.Debug("next hop still unreachable", "next_hop", url, "err", err)
			m.healVia(url, fmt.Sprintf("next hop %s: %s", url, status.Convert(err).Message()))
		}
		answering = false
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, peerRetryMax)
	}
}

// refusesWatch tells an answer that will not change by asking again.
func refusesWatch(err error) bool {
	switch status.Code(err) {
	case codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// followPeer opens one stream to url and follows it until it breaks;
// opened says whether the peer's initial state arrived.
func (m *Manager) followPeer(ctx context.Context, url string) (opened bool, err error) {
	cc, err := m.pool.Get(url)
	if err != nil {
		return false, err
	}
	// What to check the peer's initial state against: the connections
	// through it before the stream opened (later ones it has just answered).
	before := m.connsVia(url)
	sel := &networkservice.MonitorScopeSelector{PathSegments: []*networkservice.PathSegment{{Name: m.name}}}
	// Only losses, trimmed (mdLostOnly): a vwire peer sends nothing else;
	// NSM's managers ignore the key and send everything, which peerEvent
	// sorts out the same way.
	mctx := metadata.AppendToOutgoingContext(ctx, mdLostOnly, "true")
	stream, err := networkservice.NewMonitorConnectionClient(cc).MonitorConnections(mctx, sel)
	if err != nil {
		return false, err
	}
	first, err := stream.Recv()
	if err != nil {
		return false, err
	}
	if first.GetType() == networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER {
		up := map[string]bool{}
		for _, pc := range first.GetConnections() {
			if pc.GetState() != networkservice.State_DOWN {
				for _, id := range m.ownIDs(pc) {
					up[id] = true
				}
			}
		}
		for id, c := range before {
			if !up[id] {
				m.healNextHop(id, c, fmt.Sprintf("next hop %s does not have it", url))
			}
		}
	} else {
		m.peerEvent(url, first)
	}
	m.log.Debug("watching next hop", "next_hop", url, "connections", len(before))
	for {
		ev, err := stream.Recv()
		if err != nil {
			return true, err
		}
		m.peerEvent(url, ev)
	}
}

// peerEvent heals the connections of ours that the peer at url reports
// deleted or down.
func (m *Manager) peerEvent(url string, ev *networkservice.ConnectionEvent) {
	lost := ev.GetType() == networkservice.ConnectionEventType_DELETE
	what := "down"
	if lost {
		what = "deleted"
	}
	for _, pc := range ev.GetConnections() {
		if !lost && pc.GetState() != networkservice.State_DOWN {
			continue
		}
		for _, id := range m.ownIDs(pc) {
			m.mu.Lock()
			c := m.conns[id]
			m.mu.Unlock()
			if c != nil && c.remote && c.nextHop == url {
				m.healNextHop(id, c, fmt.Sprintf("next hop %s reports it %s", url, what))
			}
		}
	}
}

// ownIDs returns the ids of this manager's segments in a connection's path
// (a path may cross a node twice).
func (m *Manager) ownIDs(conn *networkservice.Connection) []string {
	var ids []string
	for _, s := range conn.GetPath().GetPathSegments() {
		if s.GetName() == m.name && s.GetId() != "" {
			ids = append(ids, s.GetId())
		}
	}
	return ids
}

// connsVia returns the connections whose next hop is the remote manager
// at url, by id.
func (m *Manager) connsVia(url string) map[string]*connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*connection{}
	for id, c := range m.conns {
		if c.remote && c.nextHop == url {
			out[id] = c
		}
	}
	return out
}

// healVia heals every connection through the remote manager at url.
func (m *Manager) healVia(url, reason string) {
	for id, c := range m.connsVia(url) {
		m.healNextHop(id, c, reason)
	}
}

// healNextHop starts, unless one is already running, the bounded heal of
// connection id as it was when its next hop failed (seen): it ends without
// doing anything if the connection changed meanwhile.
func (m *Manager) healNextHop(id string, seen *connection, reason string) {
	m.mu.Lock()
	if m.hops.healing[id] || m.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	if m.hops.healing == nil {
		m.hops.healing = map[string]bool{}
	}
	m.hops.healing[id] = true
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.hops.healing, id)
			m.mu.Unlock()
		}()
		m.healWithin(id, seen, reason, m.reselectTimeout)
	}()
}
