package vpp

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/api"
	interfaces "go.fd.io/govpp/binapi/interface"

	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// tripConn is a govpp connection that records the requests sent on each
// stream (and each Invoke): what the Client sent before reading a reply,
// one round trip to VPP.
type tripConn struct {
	api.Connection
	mu    sync.Mutex
	trips [][]string // guarded by mu
}

// recordTrips puts a tripConn under n's Client (before any call it should
// see).
func recordTrips(n *testNode) *tripConn {
	c := &tripConn{Connection: n.dp.vpp.conn}
	n.dp.vpp.conn = c
	return c
}

func (c *tripConn) NewStream(ctx context.Context, opts ...api.StreamOption) (api.Stream, error) {
	s, err := c.Connection.NewStream(ctx, opts...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips = append(c.trips, nil)
	return &tripStream{Stream: s, c: c, trip: len(c.trips) - 1}, nil
}

func (c *tripConn) Invoke(ctx context.Context, req, reply api.Message) error {
	c.mu.Lock()
	c.trips = append(c.trips, []string{req.GetMessageName()})
	c.mu.Unlock()
	return c.Connection.Invoke(ctx, req, reply)
}

// take returns the round trips so far, each a list of request names (no
// control pings), and forgets them.
func (c *tripConn) take() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.trips
	c.trips = nil
	return out
}

type tripStream struct {
	api.Stream
	c    *tripConn
	trip int
}

func (s *tripStream) SendMsg(m api.Message) error {
	if m.GetMessageName() != "control_ping" {
		s.c.mu.Lock()
		if s.trip < len(s.c.trips) {
			s.c.trips[s.trip] = append(s.c.trips[s.trip], m.GetMessageName())
		}
		s.c.mu.Unlock()
	}
	return s.Stream.SendMsg(m)
}

// TestDisconnectPipelined: a Disconnect of a vWire this process built is two
// round trips to VPP, the check of its two interfaces and every removal, in
// the reverse order of their creation (what the table of the IP side
// shares is given back after, a table deleted with its last side); VPP is
// back to what it had.
func TestDisconnectPipelined(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     string
		payload string
		want    [][]string
	}{
		{name: "wireguard", typ: wireguard.Type, payload: payload.IP, want: [][]string{
			{"sw_interface_dump", "sw_interface_dump"},
			{"l3xc_del", "l3xc_del", "wireguard_peer_remove", "ip_route_add_del",
				"wireguard_interface_delete", "memif_delete", "memif_socket_filename_add_del_v2"},
			{"ip_table_add_del"}, {"ip_table_add_del"},
		}},
		{name: "vxlan", typ: vxlan.Type, payload: payload.Ethernet, want: [][]string{
			{"sw_interface_dump", "sw_interface_dump"},
			{"sw_interface_set_l2_xconnect", "sw_interface_set_l2_xconnect", "vxlan_add_del_tunnel_v3",
				"memif_delete", "memif_socket_filename_add_del_v2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := newTestNode(t, "192.0.2.1")
			b := newTestNode(t, "192.0.2.2")
			before := a.vpp.snapshot()
			remotePair(t, a, b, tc.typ, tc.payload, memifMech("c.sock"), memifMech("e.sock"))
			trips := recordTrips(a)
			if err := a.dp.Disconnect(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if got := trips.take(); !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("Disconnect's round trips:\n got %q\nwant %q", got, tc.want)
			}
			if got := a.vpp.snapshot(); got != before {
				t.Errorf("VPP after Disconnect:\n%s\nwant\n%s", got, before)
			}
		})
	}
}

// TestDisconnectFailsMidPipeline: VPP refusing one removal of a pipelined
// Disconnect does not stop the ones after it (they were sent with it), and
// the Disconnect then sweeps what is left: VPP is back to what it had.
func TestDisconnectFailsMidPipeline(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	b := newTestNode(t, "192.0.2.2")
	before := a.vpp.snapshot()
	remotePair(t, a, b, wireguard.Type, payload.IP, memifMech("c.sock"), memifMech("e.sock"))
	trips := recordTrips(a)
	a.vpp.failNth("wireguard_interface_delete", 1, int32(api.INVALID_VALUE))
	if err := a.dp.Disconnect(ctx, "a"); err != nil {
		t.Fatalf("Disconnect: %v (the sweep should have removed what the failed removal left)", err)
	}
	got := trips.take()
	if len(got) < 3 {
		t.Fatalf("round trips %q: want the check, the removals and a sweep", got)
	}
	removals := []string{"l3xc_del", "l3xc_del", "wireguard_peer_remove", "ip_route_add_del",
		"wireguard_interface_delete", "memif_delete", "memif_socket_filename_add_del_v2"}
	if !slices.Equal(got[1], removals) {
		t.Errorf("removals %q, want %q in one round trip (those after the refused one too)", got[1], removals)
	}
	var rest []string
	for _, tr := range got[2:] {
		rest = append(rest, tr...)
	}
	if !slices.Contains(rest, "sw_interface_dump") || !slices.Contains(rest, "wireguard_interface_delete") {
		t.Errorf("after the failed removal: %q, want a sweep that deletes the WireGuard interface", rest)
	}
	if got := a.vpp.snapshot(); got != before {
		t.Errorf("VPP after Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestRollbackFailsMidPipeline: a Connect that fails half way rolls back in
// one round trip; VPP refusing one of those removals does not stop the
// others, the Connect's error says both what failed and what the rollback
// could not remove, and the id's Disconnect sweeps the rest: VPP is back to
// what it had.
func TestRollbackFailsMidPipeline(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	b := newTestNode(t, "192.0.2.2")
	before := a.vpp.snapshot()
	c := conn(nil, payload.IP)
	offers, err := a.dp.Offer(ctx, "a", c, true)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == wireguard.Type })
	accepted, err := b.dp.Accept(ctx, "b", c, offers[i:i+1])
	if err != nil {
		t.Fatal(err)
	}
	if err := b.dp.Connect(ctx, "b", conn(accepted, payload.IP), conn(memifMech("e.sock"), payload.IP)); err != nil {
		t.Fatal(err)
	}
	trips := recordTrips(a)
	a.vpp.failNth("l3xc_update", 2, int32(api.INVALID_VALUE))
	a.vpp.failNth("wireguard_interface_delete", 1, int32(api.SYSCALL_ERROR_1))
	err = a.dp.Connect(ctx, "a", conn(memifMech("c.sock"), payload.IP), conn(accepted, payload.IP))
	var apiErr api.VPPApiError
	if !errors.As(err, &apiErr) || apiErr != api.INVALID_VALUE || !strings.Contains(err.Error(), "rolling back") ||
		!strings.Contains(err.Error(), "wireguard interface") {
		t.Fatalf("Connect: %v, want VPP's error and the rollback's", err)
	}
	got := trips.take()
	last := got[len(got)-1]
	for len(last) > 0 && last[0] == "ip_table_add_del" { // the shared table, given back after
		got = got[:len(got)-1]
		last = got[len(got)-1]
	}
	want := []string{"l3xc_del", "wireguard_peer_remove", "ip_route_add_del",
		"wireguard_interface_delete", "memif_delete", "memif_socket_filename_add_del_v2"}
	if !slices.Equal(last, want) {
		t.Errorf("rollback %q, want %q in one round trip (those after the refused one too); all: %q", last, want, got)
	}
	if a.vpp.snapshot() == before {
		t.Fatal("the refused removal left nothing: the test proves nothing")
	}
	if err := a.dp.Disconnect(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := a.vpp.snapshot(); got != before {
		t.Errorf("VPP after the Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestSweepOfBuiltVWireListsItsOwn: a vWire this process built whole, whose
// fast undo cannot run (an interface went down behind its back), is swept
// by asking VPP for its two interfaces only, with no IP table listing, and
// leaves VPP as it was; so is one whose Connect failed, by the indexes its
// creates were answered (see sweepKnown).
func TestSweepOfBuiltVWireListsItsOwn(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "10.0.0.1")
	before := n.vpp.snapshot()
	if err := n.dp.Connect(ctx, "built", conn(memifMech("b1.sock"), payload.Ethernet), conn(memifMech("b2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	n.dp.mu.Lock()
	st := n.dp.conns["built"]
	n.dp.mu.Unlock()
	n.vpp.mu.Lock()
	n.vpp.ifaces[uint32(st.out)].up = false
	n.vpp.mu.Unlock()
	n.vpp.requests(true)
	if err := n.dp.Disconnect(ctx, "built"); err != nil {
		t.Fatal(err)
	}
	dumps := n.vpp.sentOf("sw_interface_dump")
	if len(dumps) == 0 {
		t.Fatal("no sw_interface_dump: the vWire was not swept")
	}
	for _, m := range dumps {
		if idx := SwIfIndex(m.(*interfaces.SwInterfaceDump).SwIfIndex); idx != st.in && idx != st.out {
			t.Errorf("sweep of a vWire built here asked VPP for interface %d, want only its own %d and %d", idx, st.in, st.out)
		}
	}
	if got := fullListings(n.vpp, true); len(got) != 0 {
		t.Errorf("sweep of a vWire built here listed all of VPP: %v", got)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after the sweep:\n%s\nwant\n%s", got, before)
	}

	n.vpp.failNth("sw_interface_set_l2_xconnect", 1, int32(api.INVALID_VALUE))
	if err := n.dp.Connect(ctx, "failed", conn(memifMech("f1.sock"), payload.Ethernet), conn(memifMech("f2.sock"), payload.Ethernet)); err == nil {
		t.Fatal("Connect succeeded with VPP refusing its cross-connect")
	}
	n.vpp.requests(true)
	if err := n.dp.Disconnect(ctx, "failed"); err != nil {
		t.Fatal(err)
	}
	if got := fullListings(n.vpp, true); len(got) != 0 {
		t.Errorf("Disconnect after a failed Connect listed all of VPP: %v", got)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after the failed vWire's Disconnect:\n%s\nwant\n%s", got, before)
	}
}
