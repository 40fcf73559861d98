package manager

import (
	"context"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/internal/clock"
)

// connection is the manager's state for one connection, keyed by the id of
// its own path segment.
type connection struct {
	id         string
	conn       *networkservice.Connection // our view: Path.Index at our segment
	prefs      []*networkservice.Mechanism
	endpoint   string      // endpoint name
	forwarder  string      // forwarder name
	nextHop    string      // URL the forwarder sends the connection to
	remote     bool        // nextHop is another node's manager
	foreign    bool        // nextHop is another registry domain's manager
	fromDomain bool        // the previous hop is another registry domain's forwarder
	pinned     bool        // the caller named the endpoint: never reselect
	caller     string      // SPIFFE ID of the previous hop: only it may Close
	files      clientFiles // descriptors the client passed (its netns), open while the connection lives
	expires    time.Time
	timer      clock.Timer
}

func (m *Manager) get(id string) *connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns[id]
}

// remember stores a connection, (re)arms its expiry, and tells watchers.
func (m *Manager) remember(c *connection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.conns[c.id]; old != nil {
		old.timer.Stop()
		if len(c.files) == 0 {
			c.files = old.files // the client did not pass them again
		} else {
			old.files.closeExcept(c.files)
		}
	}
	m.trackLocked(m.conns[c.id], c)
	id := c.id
	c.timer = m.clock.AfterFunc(c.expires.Sub(m.clock.Now()), func() { m.expire(id) })
	m.conns[id] = c
	m.publishLocked(networkservice.ConnectionEventType_UPDATE, c)
}

// forget drops a connection and tells watchers.
func (m *Manager) forget(id string) *connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.conns[id]
	if c == nil {
		return nil
	}
	c.timer.Stop()
	c.files.closeExcept(nil)
	delete(m.conns, id)
	m.trackLocked(c, nil)
	m.publishLocked(networkservice.ConnectionEventType_DELETE, c)
	return c
}

// expire closes, along the rest of the path, a connection that its
// previous hop did not refresh in time.
func (m *Manager) expire(id string) {
	unlock := m.locks.Lock(id)
	defer unlock()
	c := m.get(id)
	if c == nil || m.clock.Now().Before(c.expires) {
		return // closed, or refreshed while we waited
	}
	m.log.Info("connection expired", "conn", id, "service", c.conn.GetNetworkService(), "expired", c.expires)
	m.forget(id)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	m.closeForwarder(ctx, c)
}

// closeForwarder closes a connection at its forwarder, which closes the
// hops after it.
func (m *Manager) closeForwarder(ctx context.Context, c *connection) {
	fwd := m.forwarderByName(c.forwarder)
	if fwd == nil {
		m.log.Warn("close: forwarder gone", "conn", c.id, "forwarder", c.forwarder)
		return
	}
	cc, err := m.pool.Get(fwd.url)
	if err == nil {
		ctx = metadata.AppendToOutgoingContext(ctx, forwarder.MDNextHop, c.nextHop, forwarder.MDNextHopRemote, boolString(c.remote))
		// c.conn is never changed once stored (a new Request stores a
		// new one): it is sent as it is.
		_, err = networkservice.NewNetworkServiceClient(cc).Close(ctx, c.conn)
	}
	if err != nil {
		m.log.Info("close at forwarder failed", "conn", c.id, "forwarder", c.forwarder, "err", err)
	}
}

// Connections returns a copy of every live connection (tests, metrics).
func (m *Manager) Connections() []*networkservice.Connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*networkservice.Connection, 0, len(m.conns))
	for _, c := range m.conns {
		out = append(out, proto.Clone(c.conn).(*networkservice.Connection))
	}
	return out
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
