package vpp

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// orphans is how many routes and l3xcs the fake VPP saw outlive the
// interface they go through.
func orphans(f *fakeVPP) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.orphanRoutes
}

// TestUnansweredRouteRemovedBeforeInterface: a route add that VPP carries
// out but answers only after the Connect's deadline (so its reply, and
// every reply after it on the stream, the l3xc_updates' too, is lost) is
// removed by the rollback, before its interface, and so are the l3xcs. Before, the rollback knew only the routes whose
// reply it had read: the route stayed in the shared table, through the
// deleted memif, and the next vWire given that prefix in that table
// replaced it (ip_route_add_del is an add that replaces), as in the soak
// where node2's VPP died in that replace (fib_path_unresolve).
func TestUnansweredRouteRemovedBeforeInterface(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	// The first side's route and every request after it in the setups'
	// pipeline: its route, MTU and up; the second side's tag, table,
	// address, route, MTU and up; the cross-connects' l3xc_del and
	// l3xc_update, two each.
	n.vpp.withholdFrom("ip_route_add_del", 13)
	ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
	defer cancel()
	p, err := n.dp.plan("v", ipMemifConn("c.sock", "10.1.0.1", "10.1.0.2"), ipMemifConn("e.sock", "10.1.0.1", "10.1.0.2"))
	must(t, err)
	_, _, _, err = n.dp.build(ctx, n.dp.vpp, p, true)
	check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
	check(t, orphans(n.vpp) == 0, "%d routes or l3xcs outlived their interface", orphans(n.vpp))
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
}

// TestSweepRemovesRoutesBeforeInterfaces: a Disconnect that finds its
// vWire damaged (an interface down) sweeps it (sweepBuilt), and the sweep
// deletes the routes through its interfaces before the interfaces.
// Before, it deleted the interfaces first and the routes after, by prefix:
// each route outlived its interface, for good if its delete then failed.
func TestSweepRemovesRoutesBeforeInterfaces(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	err := n.dp.Connect(ctx, "v", ipMemifConn("c.sock", "10.1.0.1", "10.1.0.2"), ipMemifConn("e.sock", "10.1.0.1", "10.1.0.2"))
	must(t, err)
	n.dp.mu.Lock()
	in := n.dp.conns["v"].in
	n.dp.mu.Unlock()
	must(t, n.dp.vpp.SetInterfaceDown(ctx, in))
	n.vpp.requests(false)
	must(t, n.dp.Disconnect(ctx, "v"))
	sent := n.vpp.requests(false)
	check(t, slices.Contains(sent, "memif_delete"), "no sweep: %v", sent)
	check(t, orphans(n.vpp) == 0, "%d routes outlived their interface; requests %v", orphans(n.vpp), sent)
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
}
