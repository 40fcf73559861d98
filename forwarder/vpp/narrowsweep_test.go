package vpp

import (
	"context"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/api"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/l2"
	"go.fd.io/govpp/binapi/l3xc"
	"go.fd.io/govpp/binapi/memif"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// fullListings counts, by message, the requests sent to f so far that
// list every object of a kind: every interface, IP table, L3 and L2
// cross-connect; with memifs, every memif too. (An open intent's lookup
// lists memifs, intents.go: tests of ids with one leave memifs out.) On a node with a thousand vWires each is megabytes that
// VPP's main thread writes while every other caller waits.
func fullListings(f *fakeVPP, memifs bool) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, m := range f.sent {
		switch m := m.(type) {
		case *interfaces.SwInterfaceDump:
			if m.SwIfIndex == ^interface_types.InterfaceIndex(0) && !m.NameFilterValid {
				out[m.GetMessageName()]++
			}
		case *l3xc.L3xcDump:
			if m.SwIfIndex == ^interface_types.InterfaceIndex(0) {
				out[m.GetMessageName()]++
			}
		case *ip.IPTableDump, *l2.L2XconnectDump:
			out[m.GetMessageName()]++
		case *memif.MemifDump:
			if memifs {
				out[m.GetMessageName()]++
			}
		}
	}
	return out
}

// failLeavingMemif makes n's next Connect of id (two memifs, Ethernet) fail
// at its cross-connect with its rollback failing to delete a memif: the
// vWire's tagged memif and its socket stay in VPP for the id's next
// Connect or its Disconnect to remove.
func failLeavingMemif(t *testing.T, n *testNode, id string) (in, out *networkservice.Connection) {
	t.Helper()
	in, out = conn(memifMech(id+"-1.sock"), payload.Ethernet), conn(memifMech(id+"-2.sock"), payload.Ethernet)
	n.vpp.failNth("sw_interface_set_l2_xconnect", 1, int32(api.INVALID_VALUE))
	n.vpp.failNth("memif_delete", 1, int32(api.SYSCALL_ERROR_1))
	if err := n.dp.Connect(context.Background(), id, in, out); err == nil {
		t.Fatal("Connect succeeded with VPP refusing its cross-connect")
	}
	return in, out
}

// TestRetryAfterFailedConnectSweepsNarrow: the retry of a Connect whose
// rollback left a tagged memif in VPP removes it by the index its create
// was answered with: no listing of every interface, IP table or
// cross-connect (under load each such listing of a thousand-vWire node
// outlasted its caller, whose retry listed again). The vWire then stands,
// and its Disconnect leaves VPP as it was.
func TestRetryAfterFailedConnectSweepsNarrow(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "10.0.0.1")
	// Other vWires on the node, whose objects a narrow sweep must leave.
	if err := n.dp.Connect(ctx, "other", conn(memifMech("o1.sock"), payload.Ethernet), conn(memifMech("o2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	before := n.vpp.snapshot()
	in, out := failLeavingMemif(t, n, "retry")
	check(t, n.vpp.snapshot() != before, "the failed rollback left nothing: the test proves nothing")
	n.vpp.requests(true)
	must(t, n.dp.Connect(ctx, "retry", in, out))
	if got := fullListings(n.vpp, false); len(got) != 0 {
		t.Errorf("the retried Connect listed all of VPP: %v", got)
	}
	n.dp.mu.Lock()
	st := n.dp.conns["retry"]
	n.dp.mu.Unlock()
	check(t, st != nil, "no vWire after the retry")
	memifs := n.vpp.count("memif")
	check(t, memifs == 4, "%d memifs in VPP, want the two vWires' 4 (the leftover removed)", memifs)
	must(t, n.dp.Disconnect(ctx, "retry"))
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after the Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestUncleanDisconnectSweepsNarrow: the Disconnect of an id whose Connect
// failed, its rollback leaving a tagged memif, removes it without listing
// all of VPP, and leaves the node's other vWire alone.
func TestUncleanDisconnectSweepsNarrow(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "10.0.0.1")
	if err := n.dp.Connect(ctx, "other", conn(memifMech("o1.sock"), payload.Ethernet), conn(memifMech("o2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	before := n.vpp.snapshot()
	failLeavingMemif(t, n, "unclean")
	check(t, n.vpp.snapshot() != before, "the failed rollback left nothing: the test proves nothing")
	n.vpp.requests(true)
	must(t, n.dp.Disconnect(ctx, "unclean"))
	if got := fullListings(n.vpp, false); len(got) != 0 {
		t.Errorf("the unclean Disconnect listed all of VPP: %v", got)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after the Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestFailedSideRebuildSweepsNarrow: a moved vWire whose one-side rebuild
// fails, its rollback leaving the new side's tagged sub-interface, is
// rebuilt whole without a listing of all of VPP: the side's sweep, then
// the whole vWire's, go by the indexes this process was answered. The
// Disconnect then leaves VPP as it was.
func TestFailedSideRebuildSweepsNarrow(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1")
	b := newTestNode(t, "192.0.2.2")
	before := b.vpp.snapshot()
	accepted, _ := remotePair(t, a, b, wireguard.Type, payload.IP, kernelMech(nsClient, "nsm-c"), kernelMech(nsServer, "nsm-e"))

	moved := &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{"172.16.9.1/32"}, DstIpAddrs: []string{"172.16.9.2/32"},
		SrcRoutes: []*networkservice.Route{{Prefix: "172.16.9.2/32"}}, DstRoutes: []*networkservice.Route{{Prefix: "172.16.9.1/32"}},
	}}
	inB, outB := conn(accepted, payload.IP), conn(kernelMech("/var/run/netns/server2", "nsm-e2"), payload.IP)
	inB.Context, outB.Context = moved, moved
	// The new side's MTU refused after its sub-interface is made and
	// tagged; the rollback's delete of it refused too (the first
	// delete_subif is the old side's, swept first).
	b.vpp.failNth("sw_interface_set_mtu", 1, int32(api.INVALID_VALUE))
	b.vpp.failNth("delete_subif", 2, int32(api.SYSCALL_ERROR_1))
	b.vpp.requests(true)
	must(t, b.dp.Connect(ctx, "b", inB, outB))
	check(t, len(b.vpp.sentOf("wireguard_interface_create")) == 1, "the side rebuild did not fail: the vWire was not rebuilt whole")
	if got := fullListings(b.vpp, false); len(got) != 0 {
		t.Errorf("the side rebuild and the whole rebuild after it listed all of VPP: %v", got)
	}
	subs := b.vpp.count("sub")
	check(t, subs == 1, "%d sub-interfaces in VPP, want the moved vWire's one (the failed side's removed)", subs)
	must(t, b.dp.Disconnect(ctx, "b"))
	if got := b.vpp.snapshot(); got != before {
		t.Errorf("VPP after the Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestOrphanSweptWhole: what a previous run left is known to this one only
// by its tag: an orphan's sweep lists every interface and IP table, and
// keeps doing so, on the id's retries, until one such sweep succeeds (a
// narrow one would look only at the indexes this run made, and miss it).
func TestOrphanSweptWhole(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "10.0.0.1")
	before := a.vpp.snapshot()
	if err := a.dp.Connect(ctx, "orphan", conn(memifMech("p1.sock"), payload.Ethernet), conn(memifMech("p2.sock"), payload.Ethernet)); err != nil {
		t.Fatal(err)
	}
	b := restart(t, a, time.Hour)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	must(t, b.dp.Start(sctx))
	// Not the vWire the previous run built (other sockets): not taken
	// back, so swept; the sweep fails at its first memif.
	in, out := conn(memifMech("q1.sock"), payload.Ethernet), conn(memifMech("q2.sock"), payload.Ethernet)
	b.vpp.failNth("memif_delete", 1, int32(api.SYSCALL_ERROR_1))
	b.vpp.requests(true)
	if err := b.dp.Connect(ctx, "orphan", in, out); err == nil {
		t.Fatal("Connect succeeded with its sweep failing")
	}
	if got := fullListings(b.vpp, false); got["sw_interface_dump"] == 0 {
		t.Errorf("an orphan's sweep did not list every interface: %v", got)
	}
	b.vpp.requests(true)
	must(t, b.dp.Connect(ctx, "orphan", in, out))
	if got := fullListings(b.vpp, false); got["sw_interface_dump"] == 0 || got["ip_table_dump"] == 0 {
		t.Errorf("the retry after an orphan's failed sweep did not list every interface and IP table: %v", got)
	}
	must(t, b.dp.Disconnect(ctx, "orphan"))
	if got := b.vpp.snapshot(); got != before {
		t.Errorf("VPP after the Disconnect:\n%s\nwant\n%s", got, before)
	}
}

// TestMemifSocketOf: the socket id of a memif read from the name VPP
// gives it; none from another name, nor VPP's default socket 0.
func TestMemifSocketOf(t *testing.T) {
	for name, want := range map[string]uint32{"memif7/0": 7, "memif4294967295/3": 4294967295, "memif0/1": 0, "memif7": 0, "memifx/1": 0, "tap7/0": 0, "memif/1": 0} {
		got, ok := memifSocketOf(name)
		if got != want || ok != (want != 0) {
			t.Errorf("memifSocketOf(%q) = %d, %v; want %d, %v", name, got, ok, want, want != 0)
		}
	}
}
