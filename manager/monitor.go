package manager

import (
	"errors"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// watcherBuffer is how many events a MonitorConnections stream may lag
// before it is ended (the client reconnects and gets a fresh initial state).
const watcherBuffer = 1024

// watcher is one MonitorConnections stream.
type watcher struct {
	sel    *networkservice.MonitorScopeSelector
	events chan *networkservice.ConnectionEvent
	once   sync.Once
	done   chan struct{}
	err    error // set before done is closed
}

func (w *watcher) end(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.done)
	})
}

// MonitorConnections streams the connections the selector matches: first
// an INITIAL_STATE_TRANSFER with all of them, then an UPDATE for every
// Request and a DELETE for every Close or expiry, in order.
func (m *Manager) MonitorConnections(sel *networkservice.MonitorScopeSelector, srv networkservice.MonitorConnection_MonitorConnectionsServer) error {
	w := &watcher{sel: sel, events: make(chan *networkservice.ConnectionEvent, watcherBuffer), done: make(chan struct{})}
	initial := &networkservice.ConnectionEvent{Type: networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER, Connections: map[string]*networkservice.Connection{}}
	m.mu.Lock()
	for _, c := range m.conns {
		if c.conn.MatchesMonitorScopeSelector(sel) {
			initial.Connections[c.conn.GetId()], _ = clientView(c.conn, c.files)
		}
	}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, w)
		m.mu.Unlock()
	}()

	if err := srv.Send(initial); err != nil {
		return err
	}
	for {
		select {
		case <-srv.Context().Done():
			return nil
		case <-w.done:
			return w.err
		case ev := <-w.events:
			if err := srv.Send(ev); err != nil {
				return err
			}
		}
	}
}

var errWatcherLagged = status.Error(codes.ResourceExhausted, "monitor stream fell behind; reconnect for a fresh state")

// publishLocked queues an event for every watcher that selects c's
// connection, named as its client names it. m.mu must be held, which
// orders events with the initial snapshots.
func (m *Manager) publishLocked(t networkservice.ConnectionEventType, conn *connection) {
	if len(m.watchers) == 0 {
		return
	}
	var ev *networkservice.ConnectionEvent
	for w := range m.watchers {
		if !conn.conn.MatchesMonitorScopeSelector(w.sel) {
			continue
		}
		if ev == nil {
			c, _ := clientView(conn.conn, conn.files)
			if t == networkservice.ConnectionEventType_DELETE {
				c.State = networkservice.State_DOWN
			}
			ev = &networkservice.ConnectionEvent{Type: t, Connections: map[string]*networkservice.Connection{c.GetId(): c}}
		}
		select {
		case w.events <- ev:
		default:
			w.end(errWatcherLagged)
		}
	}
}

func eofNil(err error) error {
	if errors.Is(err, errEOF) {
		return nil
	}
	return err
}
