package manager_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/regpath"
	"github.com/vwire/vwire/test/sandbox"
)

// reregister registers an endpoint or forwarder again through n's
// manager, as its own refresh would (that comes at a third of its
// lifetime: a test should not wait for it).
func reregister(t *testing.T, sb *sandbox.Sandbox, n *sandbox.Node, id string, nse *regapi.NetworkServiceEndpoint) {
	t.Helper()
	src := sb.Source(id)
	cc, err := regpath.DialRegistrant("unix://"+n.ManagerSocket, src, identity.AuthorizeTrustDomain(src))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	nse.ExpirationTime = timestamppb.New(time.Now().Add(time.Minute))
	if _, err := regapi.NewNetworkServiceEndpointRegistryClient(cc).Register(ctxT(t), nse); err != nil {
		t.Fatal(err)
	}
}

// countingHandler is a debug-level slog handler that counts the records
// with one message (and passes every record to testLog's, if any).
type countingHandler struct {
	msg  string
	mu   sync.Mutex
	n    int
	next slog.Handler
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	if r.Message == h.msg {
		h.n++
	}
	next := h.next
	h.mu.Unlock()
	if next != nil {
		return next.Handle(ctx, r)
	}
	return nil
}

func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// only returns the one connection of a manager, or nil.
func only(n *sandbox.Node) *networkservice.Connection {
	cs := n.Manager.Connections()
	if len(cs) != 1 {
		return nil
	}
	return cs[0]
}

// after reports whether want appears in the events after the first
// occurrence of first.
func (e *events) after(first, want string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := false
	for _, g := range e.got {
		if g == first {
			seen = true
		} else if seen && g == want {
			return true
		}
	}
	return false
}

// TestNextHopManagerRestart: the remote manager of a connection dies and
// comes back (its endpoint registers again) within the reselect bound: the
// client's manager, watching it, re-requests the connection through the
// same endpoint before any client refresh, and the client sees it DOWN,
// then UP again.
//
// The connection is made after another one through the same manager was
// closed: the stream that watched the first stays open and watches it
// (one stream opened in all).
func TestNextHopManagerRestart(t *testing.T) {
	streams := &countingHandler{msg: "watching next hop"}
	if l := testLog(t); l != nil {
		streams.next = l.Handler()
	}
	sb := sandbox.New(t, sandbox.Options{Nodes: 2, ReselectTimeout: time.Minute, Logger: slog.New(streams)})
	n1, n2 := sb.Nodes[0], sb.Nodes[1]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	ep := n2.ServeICMPResponder("icmp-b", nil, "icmp")
	cli := n1.Client("nsc")
	ev := watch(t, cli)
	earlier, err := cli.Request(ctxT(t), request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to node2's manager", func() bool { return streams.count() == 1 })
	if _, err := cli.Close(ctxT(t), earlier); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Request(ctxT(t), request("icmp", nil)); err != nil {
		t.Fatal(err)
	}

	n2.StopManager()
	waitFor(t, "the connection to be reported DOWN", func() bool { return ev.has("UPDATE/DOWN/icmp-b") })
	if got := streams.count(); got != 1 {
		t.Fatalf("%d streams opened to node2's manager for two connections one after the other, want 1", got)
	}
	n2.StartManager()
	reregister(t, sb, n2, "forwarder-"+n2.Name, &regapi.NetworkServiceEndpoint{
		Name: "forwarder-" + n2.Name, Url: n2.ForwarderURL, NetworkServiceNames: []string{forwarder.ServiceName},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{forwarder.ServiceName: {Labels: map[string]string{"p2p": "true"}}},
	})
	reregister(t, sb, n2, "nse-"+ep.Name, &regapi.NetworkServiceEndpoint{
		Name: ep.Name, Url: ep.URL, NetworkServiceNames: []string{"icmp"},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"icmp": {}},
	})
	waitFor(t, "the connection back UP through the restarted manager", func() bool {
		c := only(n1)
		return c != nil && c.GetState() == networkservice.State_UP && c.GetNetworkServiceEndpointName() == "icmp-b" && len(n2.Manager.Connections()) == 1
	})
	waitFor(t, "DOWN then UP events", func() bool { return ev.after("UPDATE/DOWN/icmp-b", "UPDATE/UP/icmp-b") })
	for _, n := range sb.Nodes {
		if live := n.Dataplane.Live(); len(live) != 1 {
			t.Fatalf("%s: %d vWires after heal", n.Name, len(live))
		}
	}
}

// TestNextHopNodeGone: the remote manager stays away longer than the
// reselect bound: the connection moves to an endpoint on a third node, and
// the client sees it DOWN on the old endpoint, then UP on the new one.
func TestNextHopNodeGone(t *testing.T) {
	te := newTwoEndpoints(t, sandbox.Options{Nodes: 3, ReselectTimeout: time.Second}, 1, 2)
	n1, byEP, other := te.sb.Nodes[0], te.nodeOf, te.other

	byEP[te.first].StopManager()
	te.waitMoved(t)
	if got := len(byEP[other].Manager.Connections()); got != 1 {
		t.Fatalf("%s's manager has %d connections", other, got)
	}
	if live := n1.Dataplane.Live(); len(live) != 1 {
		t.Fatalf("node1: %d vWires after the move", len(live))
	}
}

// TestReselectRequested: a client that asks for another endpoint
// (RESELECT_REQUESTED) gets one, and the old path is closed on every hop.
func TestReselectRequested(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 3, Logger: testLog(t)})
	n1 := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	byEP := map[string]*sandbox.Node{"icmp-b": sb.Nodes[1], "icmp-c": sb.Nodes[2]}
	for name, n := range byEP {
		n.ServeICMPResponder(name, nil, "icmp")
	}
	cli := n1.Client("nsc")
	ev := watch(t, cli)
	ctx := ctxT(t)
	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	first := conn.GetNetworkServiceEndpointName()
	other := map[string]string{"icmp-b": "icmp-c", "icmp-c": "icmp-b"}[first]
	oldFwdID := conn.GetPath().GetPathSegments()[2].GetId()

	req := request("icmp", nil)
	req.Connection = conn.Clone()
	req.Connection.State = networkservice.State_RESELECT_REQUESTED
	conn, err = cli.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.GetNetworkServiceEndpointName(); got != other {
		t.Fatalf("reselected %s, want the other endpoint %s", got, other)
	}
	if conn.GetState() != networkservice.State_UP {
		t.Fatalf("state %s after reselection", conn.GetState())
	}
	old := byEP[first]
	if n := len(old.Manager.Connections()); n != 0 {
		t.Errorf("%s's manager still has %d connections", first, n)
	}
	if live := old.Dataplane.Live(); len(live) != 0 {
		t.Errorf("%s's forwarder still carries %d vWires", first, len(live))
	}
	if len(old.Dataplane.Calls("Disconnect")) == 0 {
		t.Errorf("%s's forwarder was never asked to disconnect", first)
	}
	// The client's node rerouted its vWire (same id, rebuilt towards the
	// new node) rather than tearing it down first: the kernel deletes links
	// one at a time, and a mass heal must not delete more than it needs.
	if _, ok := n1.Dataplane.Live()[oldFwdID]; !ok {
		t.Errorf("node1's forwarder no longer carries %s: %v", oldFwdID, n1.Dataplane.Live())
	}
	for _, n := range []*sandbox.Node{n1, byEP[other]} {
		if live := n.Dataplane.Live(); len(live) != 1 {
			t.Errorf("%s: %d vWires after reselection", n.Name, len(live))
		}
	}
	waitFor(t, "DOWN then UP events", func() bool { return ev.after("UPDATE/DOWN/"+first, "UPDATE/UP/"+other) })

	// A plain refresh afterwards keeps the new endpoint.
	req.Connection = conn.Clone()
	if conn, err = cli.Request(ctx, req); err != nil || conn.GetNetworkServiceEndpointName() != other {
		t.Fatalf("refresh after reselection: %v, %s", err, conn.GetNetworkServiceEndpointName())
	}
}

// TestNextHopEndpointGone: the endpoint behind a remote manager dies; that
// manager reports the connection down and answers that the endpoint is
// gone, so the client's manager moves it to another node's endpoint at
// once, without waiting out the reselect bound.
func TestNextHopEndpointGone(t *testing.T) {
	te := newTwoEndpoints(t, sandbox.Options{Nodes: 3, ReselectTimeout: time.Hour}, 1, 2)
	te.eps[te.first].Stop()
	te.waitMoved(t)
}

// TestNextHopEndpointGoneSameNode: both endpoints sit behind one remote
// manager; the one in use dies. The client's manager moves the connection
// to the other, and the remote manager, asked for the same connection with
// another endpoint, reroutes it: one connection and one vWire per node
// afterwards, the remote forwarder's under the same id.
func TestNextHopEndpointGoneSameNode(t *testing.T) {
	te := newTwoEndpoints(t, sandbox.Options{Nodes: 2, ReselectTimeout: time.Hour}, 1, 1)
	n1, n2, other := te.sb.Nodes[0], te.sb.Nodes[1], te.other
	remoteIDs := func() []string {
		var ids []string
		for id := range n2.Dataplane.Live() {
			ids = append(ids, id)
		}
		return ids
	}
	before := remoteIDs()

	te.eps[te.first].Stop()
	te.waitMoved(t)
	if cs := n2.Manager.Connections(); len(cs) != 1 || cs[0].GetNetworkServiceEndpointName() != other {
		t.Fatalf("node2's manager holds %v, want one connection to %s", cs, other)
	}
	if after := remoteIDs(); len(after) != 1 || len(before) != 1 || after[0] != before[0] {
		t.Fatalf("node2's vWires %v before, %v after: want the same one, rerouted", before, after)
	}
	if live := n1.Dataplane.Live(); len(live) != 1 {
		t.Fatalf("node1: %d vWires", len(live))
	}
}

// twoEndpoints is a sandbox with icmp-b and icmp-c serving "icmp" on the
// given nodes (indexes) and a client on node 0 connected to one of them.
type twoEndpoints struct {
	sb           *sandbox.Sandbox
	eps          map[string]*sandbox.Endpoint
	nodeOf       map[string]*sandbox.Node
	ev           *events
	conn         *networkservice.Connection
	first, other string
}

func newTwoEndpoints(t *testing.T, opts sandbox.Options, nodeB, nodeC int) *twoEndpoints {
	t.Helper()
	opts.Logger = testLog(t)
	sb := sandbox.New(t, opts)
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	te := &twoEndpoints{sb: sb, eps: map[string]*sandbox.Endpoint{},
		nodeOf: map[string]*sandbox.Node{"icmp-b": sb.Nodes[nodeB], "icmp-c": sb.Nodes[nodeC]}}
	for name, n := range te.nodeOf {
		te.eps[name] = n.ServeICMPResponder(name, nil, "icmp")
	}
	cli := sb.Nodes[0].Client("nsc")
	te.ev = watch(t, cli)
	conn, err := cli.Request(ctxT(t), request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	te.conn, te.first = conn, conn.GetNetworkServiceEndpointName()
	te.other = map[string]string{"icmp-b": "icmp-c", "icmp-c": "icmp-b"}[te.first]
	return te
}

// waitMoved waits until node 0 has the connection UP on the other endpoint
// and the client saw it DOWN, then UP.
func (te *twoEndpoints) waitMoved(t *testing.T) {
	t.Helper()
	n1 := te.sb.Nodes[0]
	waitFor(t, "the connection to move to "+te.other, func() bool {
		c := only(n1)
		return c != nil && c.GetState() == networkservice.State_UP && c.GetNetworkServiceEndpointName() == te.other
	})
	waitFor(t, "DOWN then UP events", func() bool { return te.ev.after("UPDATE/DOWN/"+te.first, "UPDATE/UP/"+te.other) })
}

// TestRefreshWhileNextForwarderRestarts: the forwarder behind the remote
// manager of a connection restarts, and the client's refresh comes in
// while it is away. The refresh fails (the client retries it), but the
// connection is not moved to the other endpoint, which answers: the
// remote hop is healed through the same hops within the reselect bound,
// as for a local forwarder. Before, the client's manager reselected at
// once and moved vWires in the middle of a forwarder restart (seen in the
// kernel restart suite on a loaded machine).
func TestRefreshWhileNextForwarderRestarts(t *testing.T) {
	te := newTwoEndpoints(t, sandbox.Options{Nodes: 3, ReselectTimeout: time.Minute}, 1, 2)
	n1, away := te.sb.Nodes[0], te.nodeOf[te.first]
	cli := n1.Client("nsc")

	away.StopForwarder()
	refresh := &networkservice.NetworkServiceRequest{Connection: te.conn, MechanismPreferences: request("icmp", nil).MechanismPreferences}
	if _, err := cli.Request(ctxT(t), refresh); err == nil {
		t.Fatalf("a refresh through %s, whose forwarder is away, succeeded", away.Name)
	}
	if c := only(n1); c == nil || c.GetNetworkServiceEndpointName() != te.first {
		t.Fatalf("after the failed refresh node1 holds %v, want the connection still on %s", n1.Manager.Connections(), te.first)
	}
	away.StartForwarder()
	waitFor(t, "the connection back UP on "+te.first, func() bool {
		c := only(n1)
		return c != nil && c.GetState() == networkservice.State_UP && c.GetNetworkServiceEndpointName() == te.first &&
			len(away.Forwarder.Connections()) == 1
	})
	if te.ev.has("UPDATE/UP/" + te.other) {
		t.Fatalf("the connection was moved to %s during the forwarder restart", te.other)
	}
	if got := len(te.nodeOf[te.other].Manager.Connections()); got != 0 {
		t.Fatalf("%s's manager holds %d connections, want none", te.other, got)
	}
}
