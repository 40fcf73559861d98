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

// healAll heals, in the background, every connection that match selects:
// a next hop of theirs went away or came back.
func (m *Manager) healAll(reason string, sameHops bool, match func(*connection) bool) {
	m.mu.Lock()
	var ids []string
	for id, c := range m.conns {
		if match(c) {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	for _, id := range ids {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.heal(id, reason, sameHops)
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
	unlock := m.locks.Lock(id)
	defer unlock()
	old := m.get(id)
	if old == nil {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, healTimeout)
	defer cancel()
	m.setState(old, networkservice.State_DOWN)
	m.log.Info("healing connection", "conn", id, "why", reason, "endpoint", old.endpoint, "forwarder", old.forwarder)
	start := time.Now()
	conn := proto.Clone(old.conn).(*networkservice.Connection)
	var c *connection
	err := status.Error(codes.Unavailable, reason)
	if sameHops {
		c, err = m.refresh(ctx, conn, old.prefs, old)
	}
	if err != nil && !old.pinned && ctx.Err() == nil {
		conn.NetworkServiceEndpointName = "" // the manager chose it: choose again
		c, err = m.connect(ctx, conn, old.prefs, old.endpoint)
		if err == nil && c.endpoint != old.endpoint {
			m.metrics.reselects.Inc()
		}
	}
	if err != nil {
		m.log.Warn("heal failed; the client's refresh will retry", "conn", id, "err", err)
		return
	}
	c.id, c.expires, c.caller, c.files = id, old.expires, old.caller, old.files
	m.remember(c)
	m.metrics.heals.Inc()
	m.log.Info("connection healed", "conn", id, "endpoint", c.endpoint, "forwarder", c.forwarder, "took", time.Since(start))
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
	m.publishLocked(networkservice.ConnectionEventType_UPDATE, c.conn)
}
