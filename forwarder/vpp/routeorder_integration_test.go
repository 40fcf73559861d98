package vpp

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/core"
)

// TestRouteOutlivingInterfaceVPP runs against a real VPP the sequence the
// old rollback and sweep could make (TestUnansweredRouteRemovedBeforeInterface,
// TestSweepRemovesRoutesBeforeInterfaces): a local IP memif vWire's two
// sides, each in its shared table, with their routes and l3xcs; the memifs
// deleted with the routes and l3xcs left; the next vWire given the same
// indices and prefixes, its route adds replacing the old routes (the same
// path, so VPP keeps the old path list), its l3xcs made anew; three times;
// then the route replaced through another index (its old path list goes),
// the stale l3xcs deleted, and the route replaced twice more. VPP 25.10
// keeps such a route (the premise, checked), its path still holding the
// deleted interface's adjacency ("DELETED" in show ip fib) and taken back
// by the next interface given that index; this sequence alone does not
// crash it: the soak's SIGSEGV in a replacing ip_route_add_del
// (fib_path_unresolve) needs more than it.
func TestRouteOutlivingInterfaceVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	proc := startVPPIn(ctx, t, newNS(t, "fib"))
	conn, err := core.Connect(socketclient.NewVppClient(proc.APISocket))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Disconnect()
	cl := NewClient(conn, testLogger(t), nil)
	sock, err := cl.CreateMemifSocket(ctx, filepath.Join(t.TempDir(), "m.sock"))
	if err != nil {
		t.Fatal(err)
	}
	// The client sides' table and the endpoint sides' (two sides of one
	// vWire never share one, see ipTables).
	const table, etable = 7, 8
	for _, id := range []uint32{table, etable} {
		for _, ip6 := range []bool{false, true} {
			if err := cl.CreateIPTable(ctx, IPTable{ID: id, IP6: ip6}); err != nil {
				t.Fatal(err)
			}
		}
	}
	id := uint32(1)
	side := func(table uint32, mine, peer netip.Prefix) SwIfIndex {
		t.Helper()
		idx, err := cl.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: id, IP: true})
		id++
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.SetupInterface(ctx, idx, InterfaceSetup{Tables: []TableBinding{{ID: table}, {ID: table, IP6: true}},
			Addrs: []netip.Prefix{mine}, Routes: []Route{{Table: table, Prefix: peer, Via: idx}}, Up: true}); err != nil {
			t.Fatal(err)
		}
		return idx
	}
	alive := func(what string) {
		t.Helper()
		select {
		case <-proc.Done():
			t.Fatalf("%s: VPP died: %s", what, proc.ExitReport())
		default:
		}
		if _, err := cl.ListIPTables(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	ca, ea := netip.MustParsePrefix("172.21.0.1/32"), netip.MustParsePrefix("172.21.0.2/32")
	var a, b SwIfIndex
	for round := range 3 {
		a, b = side(table, ea, ca), side(etable, ca, ea)
		if round > 0 {
			t.Logf("round %d: sides %d and %d (indices reused), routes replaced", round, a, b)
		}
		if err := cl.CreateL3XCs(ctx, func(L3XC) {}, L3XC{Rx: a, Tx: b}, L3XC{Rx: b, Tx: a}); err != nil {
			t.Fatal(err)
		}
		alive("build")
		for _, i := range []SwIfIndex{b, a} {
			if err := cl.DeleteMemif(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		routes, err := cl.ListRoutes(ctx, table, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(routes, func(r Route) bool { return r.Prefix == ca && r.Via == a }) {
			t.Fatalf("VPP removed the route through deleted interface %d (%v): this test's premise no longer holds", a, routes)
		}
		alive("interfaces deleted")
		if round == 0 {
			// With an l3xc through the deleted interface, the route's
			// path is not made a drop: it keeps that interface's
			// adjacency (a route alone through it is dropped).
			out, err := vlib.NewServiceClient(conn).CliInband(ctx, &vlib.CliInband{Cmd: "show ip fib table 7 172.21.0.1/32"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.Reply, "DELETED") || strings.Contains(out.Reply, "oper-flags:drop") {
				t.Fatalf("the route's path no longer keeps the deleted interface's adjacency:\n%s", out.Reply)
			}
		}
	}
	// The route replaced through another index: its old path list goes.
	x, err := cl.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: 999, IP: true})
	if err != nil {
		t.Fatal(err)
	}
	c := side(table, netip.MustParsePrefix("172.21.0.9/32"), ca)
	if c == a {
		t.Fatalf("the route's new interface got the old index %d: this step's premise does not hold", a)
	}
	alive("replaced via another index")
	for _, rx := range []SwIfIndex{x, c} {
		if err := cl.DeleteL3XC(ctx, rx, false); err != nil {
			t.Fatalf("stale l3xc on %d: %v", rx, err)
		}
		alive("stale l3xc deleted")
	}
	for _, via := range []SwIfIndex{x, c} {
		if err := cl.CreateRoute(ctx, Route{Table: table, Prefix: ca, Via: via}); err != nil {
			t.Fatal(err)
		}
		alive("route replaced")
	}
	for _, r := range []Route{{Table: table, Prefix: ca}, {Table: etable, Prefix: ea}} {
		if err := cl.DeleteRoute(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// (The last round's l3xcs stay: VPP refuses l3xc_del on an index no
	// interface has.)
	alive("cleaned up")
}
