package nse

import (
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// subscriberBuffer is how many events a slow monitor stream may fall
// behind before it is dropped (its client reconnects and gets the state
// again).
const subscriberBuffer = 64

// monitor keeps the endpoint's connections as monitors see them and
// streams their changes. A subscriber gets the state and then every change
// after it, with nothing lost in between: both happen under mu.
type monitor struct {
	mu     sync.Mutex                            // guards the fields below
	conns  map[string]*networkservice.Connection // by this endpoint's connection id
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	sel    *networkservice.MonitorScopeSelector
	events chan *networkservice.ConnectionEvent
	gone   chan struct{} // closed when dropped: fell behind, or the endpoint stopped
}

func newMonitor() *monitor {
	return &monitor{conns: map[string]*networkservice.Connection{}, subs: map[*subscriber]struct{}{}}
}

// update records a new or refreshed connection and sends UPDATE. conn is
// kept and sent as it is: the caller must not modify it afterwards.
func (m *monitor) update(conn *networkservice.Connection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conns[conn.GetId()] = conn
	m.broadcast(networkservice.ConnectionEventType_UPDATE, conn)
}

// remove forgets a connection and sends DELETE.
func (m *monitor) remove(conn *networkservice.Connection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.conns, conn.GetId())
	conn = conn.Clone()
	conn.State = networkservice.State_DOWN
	m.broadcast(networkservice.ConnectionEventType_DELETE, conn)
}

func (m *monitor) broadcast(typ networkservice.ConnectionEventType, conn *networkservice.Connection) {
	for s := range m.subs {
		if !conn.MatchesMonitorScopeSelector(s.sel) {
			continue
		}
		ev := &networkservice.ConnectionEvent{Type: typ, Connections: map[string]*networkservice.Connection{conn.GetId(): conn}}
		select {
		case s.events <- ev:
		default:
			m.drop(s)
		}
	}
}

// subscribe returns the current state for sel and a subscriber for what
// follows; the returned func unsubscribes (safe twice).
func (m *monitor) subscribe(sel *networkservice.MonitorScopeSelector) (*networkservice.ConnectionEvent, *subscriber, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &subscriber{sel: sel, events: make(chan *networkservice.ConnectionEvent, subscriberBuffer), gone: make(chan struct{})}
	initial := &networkservice.ConnectionEvent{
		Type:        networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER,
		Connections: map[string]*networkservice.Connection{},
	}
	for id, c := range m.conns {
		if c.MatchesMonitorScopeSelector(sel) {
			initial.Connections[id] = c
		}
	}
	if m.closed {
		close(s.gone)
	} else {
		m.subs[s] = struct{}{}
	}
	return initial, s, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.drop(s)
	}
}

// drop ends a subscriber; m.mu is held.
func (m *monitor) drop(s *subscriber) {
	if _, ok := m.subs[s]; ok {
		delete(m.subs, s)
		close(s.gone)
	}
}

// close ends every stream.
func (m *monitor) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for s := range m.subs {
		m.drop(s)
	}
}

// MonitorConnections streams the endpoint's connections that match sel:
// first an INITIAL_STATE_TRANSFER with those that exist, then UPDATE and
// DELETE events as they change.
func (e *Endpoint) MonitorConnections(sel *networkservice.MonitorScopeSelector, stream networkservice.MonitorConnection_MonitorConnectionsServer) error {
	initial, sub, unsubscribe := e.monitor.subscribe(sel)
	defer unsubscribe()
	if err := stream.Send(initial); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-sub.events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-sub.gone:
			// Deliver what was queued before the drop, then end the stream.
			for {
				select {
				case ev := <-sub.events:
					if err := stream.Send(ev); err != nil {
						return err
					}
				default:
					return status.Error(codes.Unavailable, "monitor stream ended: the endpoint is stopping or the stream fell behind")
				}
			}
		}
	}
}
