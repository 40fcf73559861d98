package kernel

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/mechanisms/vxlan"
)

// TestConcurrentDisconnects: many vWires closed at once share deletion
// passes; every link goes, in the node's namespace and in the workloads'.
func TestConcurrentDisconnects(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	const n = 12
	for i := range n {
		cc := ipContext(fmt.Sprintf("169.254.20.%d", 2*i+1), fmt.Sprintf("169.254.20.%d", 2*i+2))
		in := &networkservice.Connection{Mechanism: kernelMech(clientPath, fmt.Sprintf("nsm-c%d", i)), Context: cc}
		out := &networkservice.Connection{Mechanism: kernelMech(epPath, fmt.Sprintf("nsm-e%d", i)), Context: cc}
		if err := d.Connect(ctx, fmt.Sprintf("conn-%d", i), in, out); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Disconnect(ctx, fmt.Sprintf("conn-%d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	d.reap.flush()
	requireNoLinksLeft(t, node, before, client, ep)
}

// TestStartDeletesLinksOnTheirWayOut: links a stopped forwarder had put in
// the deletion group go as soon as the next one starts, without waiting
// for the grace period; the other vWire stays for its refresh.
func TestStartDeletesLinksOnTheirWayOut(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	d := newDP(t, nodePath, "", 0)
	// Client sides with links in the node's namespace, as when the
	// endpoint is remote (a local pair has none there).
	for i, id := range []string{"dying", "live"} {
		spec, err := vethSpecFor(roleIn, id, kernelMech(clientPath, "nsm-"+id), ipContext(fmt.Sprintf("169.254.21.%d", 2*i+1), fmt.Sprintf("169.254.21.%d", 2*i+2)), DefaultMTU)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.createVeth(spec); err != nil {
			t.Fatal(err)
		}
	}
	// Stopped between putting "dying"'s links in the group and deleting it.
	run(t, "ip", "-n", node, "link", "set", linkName(roleIn, "dying"), "group", fmt.Sprint(reapGroup))
	d.Close()

	d2 := newDP(t, nodePath, "", time.Hour)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d2.Start(sctx); err != nil {
		t.Fatal(err)
	}
	got := links(t, client)
	if strings.Contains(got, "nsm-dying") {
		t.Fatalf("the link on its way out is still there:\n%s", got)
	}
	if !strings.Contains(got, "nsm-live") {
		t.Fatalf("the live vWire's link went:\n%s", got)
	}
	if err := d2.Disconnect(ctx, "live"); err != nil {
		t.Fatal(err)
	}
}

// TestRetiredPairsWaitForALull: a closed local vWire's pair is down at
// once, and moved out of the way when the next vWire asks for its name,
// but deleted only when no Connect or Disconnect has run for the reaper's
// quiet time; flush deletes at once. With the quiet time back to its
// default, retired pairs go by themselves.
func TestRetiredPairsWaitForALull(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	d.reap.mu.Lock()
	d.reap.quiet, d.reap.maxDelay = time.Hour, time.Hour
	d.reap.mu.Unlock()
	connect := func(id string, i int) {
		t.Helper()
		cc := ipContext(fmt.Sprintf("169.254.22.%d", 2*i+1), fmt.Sprintf("169.254.22.%d", 2*i+2))
		if err := d.Connect(ctx, id, kernelConn(clientPath, "nsm-c", cc), kernelConn(epPath, fmt.Sprintf("nsm-e%d", i), cc)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		id := fmt.Sprintf("conn-%d", i)
		connect(id, i)
		if err := d.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	connect("conn-live", 3)
	// The three retired pairs wait, down and renamed by the Connect that
	// took their name; the live vWire has the client's name.
	got := links(t, client)
	if n := strings.Count(got, "vwr"); n != 3 {
		t.Fatalf("want the 3 retired pairs still there, renamed:\n%s", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if strings.Contains(line, "vwr") && (strings.Contains(line, ",UP") || !strings.Contains(line, "group 1987510273")) {
			t.Fatalf("a retired pair is up or out of the reaper's group: %s", line)
		}
		if strings.Contains(line, " nsm-c@") && !strings.Contains(line, "vwire/wl/conn-live") {
			t.Fatalf("the client's name is not the live vWire's: %s", line)
		}
	}
	if err := ping(client, "169.254.22.8"); err != nil {
		t.Fatalf("the live vWire: %v", err)
	}
	d.reap.flush()
	if got := links(t, client); strings.Contains(got, "vwr") || !strings.Contains(got, "vwire/wl/conn-live") {
		t.Fatalf("after a flush, want only the live vWire's interface:\n%s", got)
	}

	// With the default quiet time, a Close's pair goes at the next lull.
	d.reap.mu.Lock()
	d.reap.quiet, d.reap.maxDelay = reapQuiet, reapMaxDelay
	d.reap.mu.Unlock()
	if err := d.Disconnect(ctx, "conn-live"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := links(t, client) + links(t, ep)
		if !strings.Contains(got, "vwr") && !strings.Contains(got, "nsm-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed vWire's pair was not deleted by itself:\n%s", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReapWait: when the pending calls run.
func TestReapWait(t *testing.T) {
	now := time.Now()
	type state struct {
		busy, now, maxBatch int
		lastEnd, oldest     time.Time
	}
	for _, tc := range []struct {
		name    string
		s       state
		pending []reapCall
		want    time.Duration
	}{
		{"idle long enough", state{lastEnd: now.Add(-time.Second)}, []reapCall{{marked: true}}, 0},
		{"idle, not long enough", state{lastEnd: now.Add(-5 * time.Millisecond)}, []reapCall{{marked: true}}, 15 * time.Millisecond},
		{"busy", state{busy: 1, lastEnd: now}, []reapCall{{marked: true}}, 600 * time.Millisecond},
		{"busy, too old", state{busy: 1, oldest: now.Add(-2 * time.Second)}, []reapCall{{marked: true}}, 0},
		{"busy, a caller waits", state{busy: 1}, []reapCall{{marked: true}, {done: make(chan error)}}, 0},
		{"busy, flushed", state{busy: 1, now: 1}, []reapCall{{marked: true}}, 0},
		{"busy, a full batch", state{busy: 1, maxBatch: 2}, []reapCall{{marked: true}, {marked: true}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &reaper{quiet: 20 * time.Millisecond, maxDelay: time.Second, maxBatch: cmp.Or(tc.s.maxBatch, reapMaxBatch),
				busy: tc.s.busy, now: tc.s.now, lastEnd: tc.s.lastEnd, pending: tc.pending}
			r.oldest = tc.s.oldest
			if r.oldest.IsZero() {
				r.oldest = now.Add(-400 * time.Millisecond)
			}
			if got := r.waitLocked(now); got != tc.want {
				t.Fatalf("wait %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRemoteDisconnectRetires: a remote (VXLAN) vWire's Disconnect returns
// with its links down and in the reaper's group, not deleted: both sides'
// VXLAN device and veth wait for the reaper's pass (held back here), and
// their VNIs stay taken until it. A Connect under the same id meanwhile
// gets its links (the old device's name and VNI are freed for it) and
// carries traffic; after the pass nothing of the closed vWire is left and
// its VNIs are free.
func TestRemoteDisconnectRetires(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	n1, p1, n2, p2 := twoNodes(t)
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d1 := newDP(t, p1, "10.222.0.1", 0)
	d2 := newDP(t, p2, "10.222.0.2", 0)
	before1, before2 := linkNames(t, n1), linkNames(t, n2)
	for _, d := range []*Dataplane{d1, d2} {
		d.reap.mu.Lock()
		d.reap.quiet, d.reap.maxDelay = time.Hour, time.Hour
		d.reap.mu.Unlock()
	}
	cc := ipContext("169.254.23.1", "169.254.23.2")
	connect := func() uint32 {
		t.Helper()
		offers, err := d1.Offer(ctx, "a", nil, true)
		if err != nil || len(offers) != 1 {
			t.Fatalf("offer: %v %v", offers, err)
		}
		accepted, err := d2.Accept(ctx, "b", nil, offers)
		if err != nil {
			t.Fatal(err)
		}
		if err := d2.Connect(ctx, "b", &networkservice.Connection{Mechanism: accepted, Context: cc}, kernelConn(epPath, "nsm-e", cc)); err != nil {
			t.Fatal(err)
		}
		if err := d1.Connect(ctx, "a", kernelConn(clientPath, "nsm-c", cc), &networkservice.Connection{Mechanism: accepted, Context: cc}); err != nil {
			t.Fatal(err)
		}
		if err := ping(client, "169.254.23.2"); err != nil {
			t.Fatal(err)
		}
		p, err := vxlan.FromMechanism(accepted)
		if err != nil {
			t.Fatal(err)
		}
		return p.VNI
	}
	disconnect := func() {
		t.Helper()
		for _, x := range []struct {
			d  *Dataplane
			id string
		}{{d1, "a"}, {d2, "b"}} {
			if err := x.d.Disconnect(ctx, x.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	vni := connect()
	disconnect()
	for _, x := range []struct{ ns, id string }{{n1, "a"}, {n2, "b"}} {
		for _, role := range []string{roleIn, roleOut} {
			l := run(t, "ip", "-n", x.ns, "-o", "-d", "link", "show", linkName(role, x.id))
			if strings.Contains(l, ",UP") || !strings.Contains(l, "group 1987510273") {
				t.Fatalf("after Disconnect, want %s down and in the reaper's group: %s", linkName(role, x.id), l)
			}
		}
	}
	for _, d := range []*Dataplane{d1, d2} {
		if !d.vnis.InUse(vni) {
			t.Fatalf("VNI %d free while its closed vWire's device is there", vni)
		}
	}
	// The same id again, while the closed vWire's links wait.
	vni2 := connect()
	disconnect()
	for _, d := range []*Dataplane{d1, d2} {
		d.reap.flush()
		for _, v := range []uint32{vni, vni2} {
			if d.vnis.InUse(v) {
				t.Fatalf("VNI %d still taken after the reaper's pass", v)
			}
		}
	}
	requireNoLinksLeft(t, n1, before1, client)
	requireNoLinksLeft(t, n2, before2, ep)
}
