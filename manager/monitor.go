package manager

import (
	"errors"
	"sync"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// watcherBuffer is how many events a MonitorConnections stream may lag
// before it is ended (the client reconnects and gets a fresh initial state).
const watcherBuffer = 1024

// mdLostOnly, in a MonitorConnections call's metadata, asks for the
// connections' losses only: another vwire manager watching its next hop
// (nexthop.go) acts on nothing else. The stream then carries no UPDATE of
// a connection that is not DOWN, and each connection it does carry is
// trimmed to its id, state and path segment names and ids. NSM's own
// callers never send it and get every event in full.
const mdLostOnly = "vwire-monitor-lost-only"

// watcher is one MonitorConnections stream.
type watcher struct {
	sel      *networkservice.MonitorScopeSelector
	lostOnly bool // mdLostOnly
	events   chan *networkservice.ConnectionEvent
	once     sync.Once
	done     chan struct{}
	err      error // set before done is closed
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
	if md, ok := metadata.FromIncomingContext(srv.Context()); ok && len(md.Get(mdLostOnly)) > 0 {
		w.lostOnly = true
	}
	initial := &networkservice.ConnectionEvent{Type: networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER, Connections: map[string]*networkservice.Connection{}}
	m.mu.Lock()
	for _, c := range m.conns {
		if !c.conn.MatchesMonitorScopeSelector(sel) {
			continue
		}
		if w.lostOnly {
			initial.Connections[c.conn.GetId()] = lossView(c.conn)
		} else {
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

// lossView is what a lost-only watcher gets of a connection: its id,
// state, and its path's segment names and ids (which tell a manager its
// own connection ids).
func lossView(conn *networkservice.Connection) *networkservice.Connection {
	path := conn.GetPath()
	segs := make([]*networkservice.PathSegment, len(path.GetPathSegments()))
	for i, s := range path.GetPathSegments() {
		segs[i] = &networkservice.PathSegment{Name: s.GetName(), Id: s.GetId()}
	}
	return &networkservice.Connection{Id: conn.GetId(), State: conn.GetState(),
		Path: &networkservice.Path{Index: path.GetIndex(), PathSegments: segs}}
}

var errWatcherLagged = status.Error(codes.ResourceExhausted, "monitor stream fell behind; reconnect for a fresh state")

// publishLocked queues an event for every watcher that selects c's
// connection, named as its client names it. m.mu must be held, which
// orders events with the initial snapshots.
func (m *Manager) publishLocked(t networkservice.ConnectionEventType, conn *connection) {
	if len(m.watchers) == 0 {
		return
	}
	down := t == networkservice.ConnectionEventType_DELETE || conn.conn.GetState() == networkservice.State_DOWN
	var full, lost *networkservice.ConnectionEvent
	for w := range m.watchers {
		if w.lostOnly && !down {
			continue
		}
		if !conn.conn.MatchesMonitorScopeSelector(w.sel) {
			continue
		}
		var ev *networkservice.ConnectionEvent
		switch {
		case w.lostOnly && lost != nil:
			ev = lost
		case w.lostOnly:
			c := lossView(conn.conn)
			c.State = networkservice.State_DOWN
			lost = &networkservice.ConnectionEvent{Type: t, Connections: map[string]*networkservice.Connection{c.GetId(): c}}
			ev = lost
		case full != nil:
			ev = full
		default:
			c, _ := clientView(conn.conn, conn.files)
			if t == networkservice.ConnectionEventType_DELETE {
				c.State = networkservice.State_DOWN
			}
			full = &networkservice.ConnectionEvent{Type: t, Connections: map[string]*networkservice.Connection{c.GetId(): c}}
			ev = full
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
