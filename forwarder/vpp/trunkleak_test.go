package vpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter/mock"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/core"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

// trunkSubs describes the trunk's sub-interfaces in the fake VPP.
func trunkSubs(n *testNode) []string {
	n.vpp.mu.Lock()
	defer n.vpp.mu.Unlock()
	trunk := uint32(n.dp.trunk.ifIndex())
	var out []string
	for _, i := range n.vpp.ifaces {
		if i.sub && i.sup == trunk {
			out = append(out, fmt.Sprintf("%s tag=%q", i.name, i.tag))
		}
	}
	return out
}

// addSubif makes a sub-interface of the trunk in vlan by hand, tagged tag,
// as VPP has it after a create whose caller never learned of it.
func addSubif(n *testNode, vlan uint16, tag string) uint32 {
	n.vpp.mu.Lock()
	defer n.vpp.mu.Unlock()
	parent := n.vpp.ifaces[uint32(n.dp.trunk.ifIndex())]
	i := n.vpp.newIface("sub", fmt.Sprintf("%s.%d", parent.name, vlan))
	i.sub, i.sup, i.subID, i.tag = true, parent.idx, uint32(vlan), tag
	return i.idx
}

// nextVLAN is the VLAN the trunk gives next.
func nextVLAN(n *testNode) uint16 {
	n.dp.trunk.mu.Lock()
	defer n.dp.trunk.mu.Unlock()
	return n.dp.trunk.next
}

// buildKernel builds a KERNEL vWire within ctx, as Connect does on a
// context of its own (30 s): the test need not wait that long for a
// create's reply to be late.
func buildKernel(ctx context.Context, n *testNode, id string) error {
	p, err := n.dp.plan(id, conn(kernelMech(nsClient, "nsm-c"+id), payload.Ethernet), conn(kernelMech(nsServer, "nsm-e"+id), payload.Ethernet))
	if err != nil {
		return err
	}
	_, _, _, err = n.dp.build(ctx, n.dp.vpp, p, true)
	return err
}

func connectKernel(ctx context.Context, n *testNode, id string) error {
	return n.dp.Connect(ctx, id, conn(kernelMech(nsClient, "nsm-c"+id), payload.Ethernet), conn(kernelMech(nsServer, "nsm-e"+id), payload.Ethernet))
}

// TestUnansweredSubifCreateLeavesNothing: a create_vlan_subif that VPP
// carries out but answers only after the Connect's deadline (the soak at
// load 19 to 32 had 907) leaves no sub-interface and no VLAN behind: the
// rollback looks for it and deletes it. Before, it stayed in VPP untagged,
// where no sweep finds it.
func TestUnansweredSubifCreateLeavesNothing(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	n.vpp.withhold("create_vlan_subif", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := buildKernel(ctx, n, "late")
	check(t, errors.Is(err, context.DeadlineExceeded), "Connect: %v, want DeadlineExceeded", err)
	check(t, len(trunkSubs(n)) == 0, "sub-interfaces left on the trunk: %v", trunkSubs(n))
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
	check(t, n.dp.trunk.inUse() == 0, "%d VLANs still held", n.dp.trunk.inUse())

	// The next vWire gets a working side, and Close leaves VPP as before.
	must(t, connectKernel(context.Background(), n, "next"))
	must(t, n.dp.Disconnect(context.Background(), "next"))
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
	check(t, n.dp.trunk.inUse() == 0, "%d VLANs still held", n.dp.trunk.inUse())
}

// TestUnansweredSubifCreateLookupFails: when the rollback cannot look for
// the sub-interface (the connection fails), its VLAN stays reserved, so no
// new vWire meets it; the next KERNEL side looks again, deletes it and frees
// the VLAN.
func TestUnansweredSubifCreateLookupFails(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	vlan := nextVLAN(n)
	n.vpp.withhold("create_vlan_subif", 1)
	n.vpp.refuseSend("sw_interface_dump", errors.New("connection broken"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := buildKernel(ctx, n, "late")
	check(t, errors.Is(err, context.DeadlineExceeded), "Connect: %v, want DeadlineExceeded", err)
	check(t, err != nil && strings.Contains(err.Error(), "connection broken"), "Connect: %v, want the failed lookup", err)
	check(t, len(trunkSubs(n)) == 1, "trunk sub-interfaces %v, want the unanswered create's", trunkSubs(n))
	n.dp.trunk.mu.Lock()
	held, ok := n.dp.trunk.used[vlan]
	n.dp.trunk.mu.Unlock()
	check(t, ok && held == "", "VLAN %d must stay reserved (held %q, %v)", vlan, held, ok)

	n.vpp.refuseSend("sw_interface_dump", nil)
	must(t, connectKernel(context.Background(), n, "next"))
	n.dp.trunk.mu.Lock()
	_, ok = n.dp.trunk.used[vlan]
	n.dp.trunk.mu.Unlock()
	check(t, !ok, "VLAN %d still reserved after its sub-interface was looked for again", vlan)
	must(t, n.dp.Disconnect(context.Background(), "next"))
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
	check(t, n.dp.trunk.inUse() == 0, "%d VLANs still held", n.dp.trunk.inUse())
}

// TestLeftoverSubifInNewVLAN: a sub-interface left in the VLAN a new side
// gets (untagged, or tagged for a vWire this dataplane does not know) is
// deleted and the side made; one of a live vWire is left alone and the
// Connect fails saying so. Before, VPP's VLAN_ALREADY_EXISTS failed the
// Connect and the sub-interface stayed.
func TestLeftoverSubifInNewVLAN(t *testing.T) {
	for _, tc := range []struct {
		name string
		tag  func(live string) string
		ok   bool
	}{
		{name: "untagged", tag: func(string) string { return "" }, ok: true},
		{name: "tagged for no vWire", tag: func(string) string { return tagOf(roleIn, "gone").String() }, ok: true},
		{name: "tagged for a live vWire", tag: func(live string) string { return tagOf(roleIn, live).String() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, "192.0.2.1")
			before := n.vpp.snapshot()
			must(t, connectKernel(context.Background(), n, "live"))
			liveState := n.vpp.snapshot()
			vlan := nextVLAN(n)
			idx := addSubif(n, vlan, tc.tag("live"))
			err := connectKernel(context.Background(), n, "new")
			if !tc.ok {
				check(t, err != nil && strings.Contains(err.Error(), "belongs to vWire live"), "Connect: %v, want refused for the live vWire's sub-interface", err)
				n.vpp.mu.Lock()
				_, kept := n.vpp.ifaces[idx]
				n.vpp.mu.Unlock()
				check(t, kept, "a live vWire's sub-interface was deleted")
				n.vpp.mu.Lock()
				n.vpp.delIface(idx)
				n.vpp.mu.Unlock()
				check(t, n.vpp.snapshot() == liveState, "VPP now:\n%s\nwant:\n%s", n.vpp.snapshot(), liveState)
			} else {
				must(t, err)
				for _, s := range trunkSubs(n) {
					check(t, !strings.Contains(s, fmt.Sprintf(".%d tag=%q", vlan, tc.tag("live"))), "leftover still there: %s", s)
				}
				must(t, n.dp.Disconnect(context.Background(), "new"))
			}
			must(t, n.dp.Disconnect(context.Background(), "live"))
			check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
			check(t, n.dp.trunk.inUse() == 0, "%d VLANs still held", n.dp.trunk.inUse())
		})
	}
}

// TestLeftoverSubifsRemovedAtStart: a restarted forwarder deletes the
// trunk's untagged sub-interfaces whose VLAN no veth holds (left by creates
// with no answer) and frees their VLANs; tagged ones stay for their
// vWire's refresh or sweep.
func TestLeftoverSubifsRemovedAtStart(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	must(t, connectKernel(context.Background(), n, "kept"))
	addSubif(n, 100, "")
	addSubif(n, 101, "")
	n.dp.Close()
	cfg := Config{Adapter: n.vpp, StatsAdapter: mock.NewStatsAdapter(), Uplink: "eth0", host: n.host, Kernel: KernelVeth, MemifDir: n.memifDir, StateDir: n.stateDir, Logger: testLogger(t)}
	dp, err := New(context.Background(), cfg)
	must(t, err)
	defer dp.Close()
	n.dp = dp
	subs := trunkSubs(n)
	check(t, len(subs) == 2, "trunk sub-interfaces %v, want the kept vWire's two only", subs)
	for _, s := range subs {
		check(t, strings.Contains(s, "vwire/"), "untagged sub-interface left: %s", s)
	}
	check(t, dp.trunk.inUse() == 2, "%d VLANs in use, want the kept vWire's two", dp.trunk.inUse())
}

// TestAnswered: only VPP's refusal (a retval) says nothing was made; an
// ended context, govpp's reply timeout or a broken connection leave the
// outcome unknown.
func TestAnswered(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{name: "retval", err: fmt.Errorf("sub-interface 2.1: create: %w", api.VLAN_ALREADY_EXISTS), want: true},
		{name: "deadline", err: fmt.Errorf("create: %w", context.DeadlineExceeded)},
		{name: "canceled", err: context.Canceled},
		{name: "govpp reply timeout", err: fmt.Errorf("%w 1s", core.ErrReplyTimeout)},
		{name: "connection", err: errors.New("write: broken pipe")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := answered(tc.err); got != tc.want {
				t.Fatalf("answered(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
