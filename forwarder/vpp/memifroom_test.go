package vpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestMemifRoom: claims fit the room or are refused, a refused claim
// leaves the earlier one, settle never refuses, and no room (0) bounds
// nothing.
func TestMemifRoom(t *testing.T) {
	type step struct {
		id      string
		n       int
		settle  bool
		refused bool
		total   int // after the step
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
	}{
		{name: "fills and refuses", max: 4, steps: []step{
			{id: "a", n: 2, total: 2},
			{id: "b", n: 2, total: 4},
			{id: "c", n: 1, refused: true, total: 4},
			{id: "a", n: 2, total: 4}, // a refresh claims what it holds
			{id: "a", n: 3, refused: true, total: 4},
			{id: "a", n: 0, settle: true, total: 2},
			{id: "c", n: 2, total: 4},
		}},
		{name: "settle past the room", max: 2, steps: []step{
			{id: "a", n: 2, total: 2},
			{id: "b", n: 1, settle: true, total: 3},
			{id: "b", n: 1, refused: true, total: 3}, // others hold 2: 3 > 2
			{id: "b", n: 0, settle: true, total: 2},
		}},
		{name: "no bound", max: 0, steps: []step{
			{id: "a", n: 5000, total: 5000},
			{id: "b", n: 5000, total: 10000},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newMemifRoom(tc.max)
			for i, s := range tc.steps {
				var err error
				if s.settle {
					r.settle(s.id, s.n)
				} else {
					err = r.claim(s.id, s.n)
				}
				if refused := errors.Is(err, ErrMemifPoolFull); refused != s.refused || err != nil && !refused {
					t.Fatalf("step %d (%s %d): err %v, want refused %v", i, s.id, s.n, err, s.refused)
				}
				if r.total != s.total {
					t.Fatalf("step %d (%s %d): %d held, want %d", i, s.id, s.n, r.total, s.total)
				}
			}
		})
	}
}

// TestMemifPoolBound: on govpp's mock adapter, local memif vWires past
// --vpp-memif-reserve are refused before any message goes to VPP; a
// refresh of a vWire that stands is not; a Disconnect frees its room.
func TestMemifPoolBound(t *testing.T) {
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.MemifReserve = 6 })
	ctx := context.Background()
	connect := func(id string) error {
		return n.dp.Connect(ctx, id,
			conn(memifMech(id+"-c.sock"), payload.Ethernet),
			conn(memifMech(id+"-e.sock"), payload.Ethernet))
	}
	for i := range 3 {
		if err := connect(fmt.Sprintf("v%d", i)); err != nil {
			t.Fatalf("vWire %d of 3 that fit 6 memifs: %v", i, err)
		}
	}
	n.vpp.requests(true)
	if err := connect("v3"); !errors.Is(err, ErrMemifPoolFull) {
		t.Fatalf("a 4th vWire: %v, want ErrMemifPoolFull", err)
	}
	if sent := n.vpp.requests(true); len(sent) > 0 {
		t.Fatalf("a refused vWire sent VPP %v", sent)
	}
	if err := connect("v0"); err != nil {
		t.Fatalf("a refresh of a vWire that stands, the pool full: %v", err)
	}
	if err := n.dp.Disconnect(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := connect("v3"); err != nil {
		t.Fatalf("a vWire in the room a Disconnect freed: %v", err)
	}
	if err := connect("v4"); !errors.Is(err, ErrMemifPoolFull) {
		t.Fatalf("a vWire past the reserve again: %v, want ErrMemifPoolFull", err)
	}
	for _, id := range []string{"v0", "v2", "v3"} {
		if err := n.dp.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n.dp.memifs.total != 0 {
		t.Fatalf("%d memifs held after every Disconnect, want 0", n.dp.memifs.total)
	}
}

// TestReserveLeftRemovedAfterRestart: a memif reserve whose round could
// not delete its memifs (the deletes refused, as by a connection that
// broke) leaves them in VPP, untagged, with its intent open; a restarted
// forwarder (a new Dataplane on the same state directory and VPP) finds
// them by the journal and removes them and their socket: VPP is back as
// it was, and the journal empty.
func TestReserveLeftRemovedAfterRestart(t *testing.T) {
	n := newTestNode(t, "192.0.2.1", func(c *Config) {
		c.Adapter.(*fakeVPP).refuseSend("memif_delete", errors.New("connection broken"))
		c.MemifReserve = 4
	})
	// The memifs and sockets VPP holds.
	held := func(n *testNode) (memifs, socks int) {
		ctx := context.Background()
		ms, err := n.dp.vpp.ListMemifs(ctx)
		must(t, err)
		ss, err := n.dp.vpp.ListMemifSockets(ctx)
		must(t, err)
		return len(ms), len(ss)
	}
	memifs, socks := held(n)
	check(t, memifs == 4 && socks == 2, "the reserve left %d memifs and %d sockets, want 4 and 2 (with VPP's own): the test does not test", memifs, socks)
	check(t, slices.Equal(openIntents(n), []string{reserveIntentID}), "open intents %v, want the reserve's", openIntents(n))

	n.vpp.refuseSend("memif_delete", nil)
	n = restart(t, n, time.Minute)
	memifs, socks = held(n)
	check(t, memifs == 0 && socks == 1, "after the restart VPP holds %d memifs and %d sockets, want 0 and VPP's own", memifs, socks)
	check(t, len(openIntents(n)) == 0, "intents still open: %v", openIntents(n))
}

// TestMemifRoomShortReserve: a reserve that falls short (a create refused
// in its round) bounds the vWires by the room it reached, not by the room
// asked for.
func TestMemifRoomShortReserve(t *testing.T) {
	n := newTestNode(t, "192.0.2.1", func(c *Config) {
		c.Adapter.(*fakeVPP).failNth("memif_create_v2", 3, -1)
		c.MemifReserve = 6
	})
	n.dp.memifs.mu.Lock()
	room := n.dp.memifs.max
	n.dp.memifs.mu.Unlock()
	check(t, room >= 2 && room < 6, "room %d after a reserve whose 3rd create failed, want 2 to 5", room)
	ctx := context.Background()
	built := 0
	for i := range 4 {
		id := fmt.Sprintf("v%d", i)
		err := n.dp.Connect(ctx, id, conn(memifMech(id+"-c.sock"), payload.Ethernet), conn(memifMech(id+"-e.sock"), payload.Ethernet))
		if errors.Is(err, ErrMemifPoolFull) {
			break
		}
		must(t, err)
		built++
	}
	check(t, built == room/2, "%d vWires built in a room of %d memifs, want %d", built, room, room/2)
}

// TestMemifRoomCountsPreviousRun: a forwarder restarted on a VPP that
// holds its previous run's memif vWires counts their memifs in the room
// (the reserve is skipped: VPP has memifs) until a refresh takes them back
// (no double count) or the grace period's sweep removes them.
func TestMemifRoomCountsPreviousRun(t *testing.T) {
	const reserve = 6
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.MemifReserve = reserve })
	ctx := context.Background()
	connect := func(n *testNode, id string) error {
		return n.dp.Connect(ctx, id, conn(memifMech(id+"-c.sock"), payload.Ethernet), conn(memifMech(id+"-e.sock"), payload.Ethernet))
	}
	must(t, connect(n, "old0"))
	must(t, connect(n, "old1"))

	// restart (lifecycle_test.go), with the reserve and a grace the
	// test waits out.
	n.dp.Close()
	r := &testNode{vpp: n.vpp, host: n.host, stats: n.stats, memifDir: n.memifDir, stateDir: n.stateDir}
	dp, err := New(ctx, Config{Adapter: r.vpp, StatsAdapter: r.stats, Uplink: "eth0", host: r.host, Kernel: KernelVeth,
		MemifDir: r.memifDir, StateDir: r.stateDir, Grace: 500 * time.Millisecond, Logger: testLogger(t), MemifReserve: reserve})
	must(t, err)
	t.Cleanup(func() { dp.Close() })
	r.dp = dp
	must(t, dp.Start(ctx)) // finds the previous run's vWires

	must(t, connect(r, "new0"))
	if err := connect(r, "new1"); !errors.Is(err, ErrMemifPoolFull) {
		t.Fatalf("a vWire past the room the previous run's 4 memifs leave: %v, want ErrMemifPoolFull", err)
	}
	must(t, connect(r, "old0")) // taken back: its memifs counted once
	eventually(t, 10*time.Second, func() error {
		// old1, not refreshed, is swept after the grace period.
		return connect(r, "new1")
	})
	r.dp.memifs.mu.Lock()
	total := r.dp.memifs.total
	r.dp.memifs.mu.Unlock()
	check(t, total == reserve, "%d memifs held for old0, new0 and new1, want %d", total, reserve)
}

// TestRestoreBoundByReserve: after VPP restarts, the restore reserves the
// new VPP's memif pool first and rebuilds no more memifs than the room it
// reached; a vWire past it is refused (counted, logged, forgotten by the
// dataplane), and its client hears so at its next refresh
// (ErrMemifPoolFull), which a freed room then lets through.
func TestRestoreBoundByReserve(t *testing.T) {
	m := NewMetrics()
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.MemifReserve = 6; c.Metrics = m })
	ctx := context.Background()
	connect := func(id string) error {
		return n.dp.Connect(ctx, id, conn(memifMech(id+"-c.sock"), payload.Ethernet), conn(memifMech(id+"-e.sock"), payload.Ethernet))
	}
	for _, id := range []string{"v0", "v1", "v2"} {
		must(t, connect(id))
	}

	crashVPP(t, n.vpp)
	// The new VPP's reserve falls short: its 5th create fails, so the
	// room is 4 or 5 memifs (creates are in flight at once): two vWires.
	n.vpp.failNth("memif_create_v2", 5, -1)
	n.vpp.revive()
	restored := func() float64 {
		return testutil.ToFloat64(m.restoredVW.WithLabelValues("ok")) + testutil.ToFloat64(m.restoredVW.WithLabelValues("failed")) +
			testutil.ToFloat64(m.restoredVW.WithLabelValues("refused"))
	}
	eventually(t, 10*time.Second, func() error {
		if got := restored(); got < 3 {
			return fmt.Errorf("%v of 3 vWires restored or refused", got)
		}
		return nil
	})
	n.dp.memifs.mu.Lock()
	room, total := n.dp.memifs.max, n.dp.memifs.total
	n.dp.memifs.mu.Unlock()
	check(t, room == 4 || room == 5, "room %d after a reserve whose 5th create failed, want 4 or 5: the test does not test", room)
	ok, refused := testutil.ToFloat64(m.restoredVW.WithLabelValues("ok")), testutil.ToFloat64(m.restoredVW.WithLabelValues("refused"))
	check(t, ok == 2 && refused == 1, "restore rebuilt %v vWires and refused %v, want 2 and 1", ok, refused)
	ms, err := n.dp.vpp.ListMemifs(ctx)
	must(t, err)
	check(t, len(ms) == 4 && total == 4, "VPP holds %d memifs, the room counts %d, want 4 and 4 (room %d)", len(ms), total, room)
	n.dp.mu.Lock()
	_, kept := n.dp.conns["v2"]
	n.dp.mu.Unlock()
	check(t, !kept, "the refused vWire is still remembered as built")

	if err := connect("v2"); !errors.Is(err, ErrMemifPoolFull) {
		t.Fatalf("the refused vWire's refresh: %v, want ErrMemifPoolFull", err)
	}
	must(t, n.dp.Disconnect(ctx, "v0"))
	must(t, connect("v2"))
	for _, id := range []string{"v1", "v2"} {
		must(t, n.dp.Disconnect(ctx, id))
	}
	ms, err = n.dp.vpp.ListMemifs(ctx)
	must(t, err)
	check(t, len(ms) == 0 && n.dp.memifs.total == 0, "%d memifs in VPP and %d held after every Disconnect, want 0", len(ms), n.dp.memifs.total)
}

// TestMemifSocketPoolReserved: the reserve grows VPP's pool of memif
// socket files as far as its memifs' (a socket file each), at start and
// after VPP restarts, so that vWires within the room never grow that pool
// while VPP has memifs the memif process may walk; a socket reserve that
// falls short bounds the room too.
func TestMemifSocketPoolReserved(t *testing.T) {
	ctx := context.Background()
	connect := func(n *testNode, id string) error {
		return n.dp.Connect(ctx, id, conn(memifMech(id+"-c.sock"), payload.Ethernet), conn(memifMech(id+"-e.sock"), payload.Ethernet))
	}
	room := func(n *testNode) int {
		n.dp.memifs.mu.Lock()
		defer n.dp.memifs.mu.Unlock()
		return n.dp.memifs.max
	}
	fakeState := func(n *testNode) (socketRoom, growths, sockets int) {
		n.vpp.mu.Lock()
		defer n.vpp.mu.Unlock()
		return n.vpp.socketRoom, n.vpp.socketGrowths, len(n.vpp.sockets)
	}
	t.Run("no growth under memifs", func(t *testing.T) {
		m := NewMetrics()
		n := newTestNode(t, "192.0.2.1", func(c *Config) { c.MemifReserve = 6; c.Metrics = m })
		socketRoom, _, sockets := fakeState(n)
		check(t, socketRoom >= 7 && sockets == 1, "after the reserve the socket pool's room is %d with %d sockets, want 7 (VPP's own and 6) and 1", socketRoom, sockets)
		for _, id := range []string{"v0", "v1", "v2"} {
			must(t, connect(n, id))
		}
		crashVPP(t, n.vpp)
		n.vpp.revive()
		eventually(t, 10*time.Second, func() error {
			if got := testutil.ToFloat64(m.restoredVW.WithLabelValues("ok")); got < 3 {
				return fmt.Errorf("%v of 3 vWires restored", got)
			}
			return nil
		})
		for _, id := range []string{"v0", "v1", "v2"} {
			must(t, n.dp.Disconnect(ctx, id))
			must(t, connect(n, id))
		}
		_, growths, sockets := fakeState(n)
		check(t, sockets == 7, "%d sockets in VPP, want 7: the test does not test", sockets)
		check(t, growths == 0, "vWires grew VPP's memif socket pool %d times while it had memifs", growths)
	})
	t.Run("short socket reserve", func(t *testing.T) {
		n := newTestNode(t, "192.0.2.1", func(c *Config) {
			c.Adapter.(*fakeVPP).failNth("memif_socket_filename_add_del_v2", 3, -1)
			c.MemifReserve = 6
		})
		check(t, room(n) == 5, "room %d after a socket reserve whose 3rd of 6 registrations failed, want 5", room(n))
		_, _, sockets := fakeState(n)
		check(t, sockets == 1, "%d sockets left by the reserve, want VPP's own", sockets)
		n.vpp.mu.Lock()
		memifRoom := n.vpp.memifRoom
		n.vpp.mu.Unlock()
		check(t, memifRoom == 5, "the memif pool's room is %d, want the 5 the socket pool has", memifRoom)
		must(t, connect(n, "v0"))
		must(t, connect(n, "v1"))
		if err := connect(n, "v2"); !errors.Is(err, ErrMemifPoolFull) {
			t.Fatalf("a 3rd vWire in a room of 5: %v, want ErrMemifPoolFull", err)
		}
	})
}

// TestMemifsWaitForReserveAfterRestart: a memif vWire asked for while VPP
// is away, or back but not yet reserved again, waits: its memifs would
// grow the new VPP's pool unreserved, and the reserve, which goes only
// into an empty pool, would be skipped. It is built once the restore has
// reserved the pool, and no socket file or memif of it grows a pool.
func TestMemifsWaitForReserveAfterRestart(t *testing.T) {
	m := NewMetrics()
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.MemifReserve = 6; c.Metrics = m })
	ctx := context.Background()
	connect := func(id string) error {
		return n.dp.Connect(ctx, id, conn(memifMech(id+"-c.sock"), payload.Ethernet), conn(memifMech(id+"-e.sock"), payload.Ethernet))
	}
	must(t, connect("v0"))
	crashVPP(t, n.vpp)
	// crashVPP returns once govpp has seen the loss; the dataplane shuts
	// the gate when its watch takes the event, a moment later (under load,
	// later still: a Connect before that fails on VPP's connection).
	eventually(t, 10*time.Second, func() error {
		n.dp.memifs.mu.Lock()
		gate := n.dp.memifs.gate
		n.dp.memifs.mu.Unlock()
		select {
		case <-gate:
			return errors.New("the dataplane has not taken VPP's loss yet")
		default:
			return nil
		}
	})
	// While VPP is away, a caller that gives up is told to try again.
	early, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := n.dp.Connect(early, "early", conn(memifMech("early-c.sock"), payload.Ethernet), conn(memifMech("early-e.sock"), payload.Ethernet))
	cancel()
	check(t, status.Code(err) == codes.Unavailable && errors.Is(err, context.DeadlineExceeded), "a memif vWire asked for while VPP is away: %v, want Unavailable after its deadline", err)

	// The restore's look at VPP's memifs, just before its reserve, is
	// held until the late vWire's Connect returns, or 2 s.
	atReserve, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	n.vpp.mu.Lock()
	n.vpp.onSend = func(name string) {
		if name == "memif_dump" {
			once.Do(func() {
				close(atReserve)
				<-release
			})
		}
	}
	n.vpp.mu.Unlock()
	n.vpp.revive()
	<-atReserve
	late := make(chan error, 1)
	go func() { late <- connect("late") }()
	select {
	case err = <-late:
		close(release)
	case <-time.After(2 * time.Second):
		close(release)
		err = <-late
	}
	must(t, err)
	eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(m.restoredVW.WithLabelValues("ok")); got < 1 {
			return errors.New("v0 not restored yet")
		}
		return nil
	})
	n.vpp.mu.Lock()
	socketRoom, memifRoom, growths := n.vpp.socketRoom, n.vpp.memifRoom, n.vpp.socketGrowths
	n.vpp.mu.Unlock()
	check(t, socketRoom >= 7 && memifRoom >= 6, "after the restart VPP's pools have room for %d socket files and %d memifs, want 7 and 6: the reserve was skipped", socketRoom, memifRoom)
	check(t, growths == 0, "socket files grew VPP's pool %d times while it had memifs", growths)
	for _, id := range []string{"v0", "late"} {
		must(t, n.dp.Disconnect(ctx, id))
	}
}
