package vpp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
)

// ipMemifConn is one side of a local IP memif vWire with the given
// addresses.
func ipMemifConn(file, client, endpoint string) *networkservice.Connection {
	c := conn(memifMech(file), payload.IP)
	c.Context = ipCtx(client, endpoint)
	return c
}

// vrfTables counts the shared IP tables (one per id, both families) the
// fake VPP holds.
func vrfTables(f *fakeVPP) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, name := range f.tables {
		if tg, ok := ParseTag(name); ok && tg.Role == roleVRF && k[1] == 0 {
			n++
		}
	}
	return n
}

// IP-payload local sides share IP tables while their addresses differ,
// go into another table when they overlap, and the last side out of a
// table takes it with it.
func TestIPTablesShared(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	const vwires = 5
	for i := range vwires {
		c, e := fmt.Sprintf("10.1.%d.1", i), fmt.Sprintf("10.1.%d.2", i)
		if err := n.dp.Connect(ctx, fmt.Sprint("v", i), ipMemifConn(fmt.Sprint(i, "c.sock"), c, e), ipMemifConn(fmt.Sprint(i, "e.sock"), c, e)); err != nil {
			t.Fatal(err)
		}
	}
	// A side's route to its workload is the other side's address: the
	// two sides of one vWire never share; every client side shares one
	// table, every endpoint side another.
	if got := vrfTables(n.vpp); got != 2 {
		t.Fatalf("%d vWires with distinct addresses: %d shared tables, want 2\n%s", vwires, got, n.vpp.snapshot())
	}
	if got := len(n.vpp.sentOf("ip_table_add_del")); got != 4 {
		t.Fatalf("%d ip_table_add_del for %d vWires, want 4 (two tables, both families)", got, vwires)
	}
	// The same addresses as v0: two tables more.
	if err := n.dp.Connect(ctx, "dup", ipMemifConn("dc.sock", "10.1.0.1", "10.1.0.2"), ipMemifConn("de.sock", "10.1.0.1", "10.1.0.2")); err != nil {
		t.Fatal(err)
	}
	if got := vrfTables(n.vpp); got != 4 {
		t.Fatalf("overlapping vWire: %d shared tables, want 4", got)
	}
	if err := n.dp.Disconnect(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	if got := vrfTables(n.vpp); got != 2 {
		t.Fatalf("overlapping vWire closed: %d shared tables, want 2", got)
	}
	for i := range vwires {
		if err := n.dp.Disconnect(ctx, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
		if want := 2; i < vwires-1 && vrfTables(n.vpp) != want {
			t.Fatalf("after closing %d of %d: %d shared tables, want %d", i+1, vwires, vrfTables(n.vpp), want)
		}
	}
	if got := n.vpp.snapshot(); got != before {
		t.Fatalf("not back to before:\n%s\nwas\n%s", got, before)
	}
}

// A restarted forwarder reads the shared tables back: a refreshed vWire
// keeps its place, an unclaimed one is swept from its table, and closing
// the kept one leaves VPP as it was; a vWire made after the restart with
// the swept one's addresses reuses its room.
func TestIPTablesAfterRestart(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	before := a.vpp.snapshot()
	keepIn, keepOut := ipMemifConn("k1.sock", "10.2.0.1", "10.2.0.2"), ipMemifConn("k2.sock", "10.2.0.1", "10.2.0.2")
	if err := a.dp.Connect(ctx, "keep", keepIn, keepOut); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Connect(ctx, "stray", ipMemifConn("s1.sock", "10.2.1.1", "10.2.1.2"), ipMemifConn("s2.sock", "10.2.1.1", "10.2.1.2")); err != nil {
		t.Fatal(err)
	}
	b := restart(t, a, 200*time.Millisecond)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := b.dp.Start(sctx); err != nil {
		t.Fatal(err)
	}
	if err := b.dp.Connect(ctx, "keep", keepIn, keepOut); err != nil {
		t.Fatal(err)
	}
	// Swept: its interfaces, then its routes (the kept vWire has two
	// outside table 0, where the uplink's default route is).
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.vpp.mu.Lock()
		routes := 0
		for k := range b.vpp.routes {
			if k.table[0] != 0 {
				routes++
			}
		}
		b.vpp.mu.Unlock()
		snap := b.vpp.snapshot()
		if !strings.Contains(snap, "vwire/in/stray") && routes == 2 {
			break
		}
		if time.Now().After(deadline) {
			b.vpp.mu.Lock()
			left := fmt.Sprint(b.vpp.routes)
			b.vpp.mu.Unlock()
			t.Fatalf("the stray vWire not swept: %d routes %s\n%s", routes, left, snap)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := vrfTables(b.vpp); got != 2 {
		t.Fatalf("after the sweep: %d shared tables, want 2 (the kept vWire's)", got)
	}
	// The swept vWire's routes are gone from the shared tables: its
	// addresses fit again, in the same two tables.
	if err := b.dp.Connect(ctx, "again", ipMemifConn("a1.sock", "10.2.1.1", "10.2.1.2"), ipMemifConn("a2.sock", "10.2.1.1", "10.2.1.2")); err != nil {
		t.Fatal(err)
	}
	if got := vrfTables(b.vpp); got != 2 {
		t.Fatalf("a vWire with the swept one's addresses: %d shared tables, want 2", got)
	}
	for _, id := range []string{"again", "keep"} {
		if err := b.dp.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.vpp.snapshot(); got != before {
		t.Fatalf("not back to before:\n%s\nwas\n%s", got, before)
	}
}

// After VPP restarts empty, the restored IP vWires get shared tables
// anew, and closing them leaves none.
func TestIPTablesAfterVPPRestart(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	for i := range 3 {
		c, e := fmt.Sprintf("10.3.%d.1", i), fmt.Sprintf("10.3.%d.2", i)
		if err := a.dp.Connect(ctx, fmt.Sprint("r", i), ipMemifConn(fmt.Sprint(i, "c.sock"), c, e), ipMemifConn(fmt.Sprint(i, "e.sock"), c, e)); err != nil {
			t.Fatal(err)
		}
	}
	crashVPP(t, a.vpp)
	a.vpp.revive()
	waitUntil(t, "vWires restored", func() bool { return strings.Count(a.vpp.snapshot(), "vwire/in/r") == 3 && vrfTables(a.vpp) == 2 })
	for i := range 3 {
		if err := a.dp.Disconnect(ctx, fmt.Sprint("r", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := vrfTables(a.vpp); got != 0 {
		t.Fatalf("every vWire closed: %d shared tables left\n%s", got, a.vpp.snapshot())
	}
}
