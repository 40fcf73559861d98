package vpp

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/mechanisms/kernel"
)

// TestRefreshAfterNameTaken: a KERNEL side's workload interface name taken
// by a newer connection's vWire (the same client requesting again under a
// new connection id: createVeth deletes the old workload end) leaves the
// old vWire's sub-interface standing in VPP. The old connection's refresh
// must not report its vWire intact, nor take the name back from the newer
// one: it fails, saying whose the name is now. The newer vWire is left
// alone by it and by the old one's Close.
func TestRefreshAfterNameTaken(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	oldIn, oldOut := conn(kernelMech(nsClient, "nsm-c"), payload.Ethernet), conn(memifMech("old-e.sock"), payload.Ethernet)
	if err := n.dp.Connect(ctx, "old", oldIn, oldOut); err != nil {
		t.Fatal(err)
	}
	newIn, newOut := conn(kernelMech(nsClient, "nsm-c"), payload.Ethernet), conn(memifMech("new-e.sock"), payload.Ethernet)
	if err := n.dp.Connect(ctx, "new", newIn, newOut); err != nil {
		t.Fatal(err)
	}
	n.host.mu.Lock()
	n.host.calls = nil
	n.host.mu.Unlock()

	err := n.dp.Connect(ctx, "old", oldIn, oldOut)
	if !errors.Is(err, ErrWorkloadNameTaken) || !strings.Contains(err.Error(), "nsm-c") || !strings.Contains(err.Error(), tagKey("new")) {
		t.Fatalf("refresh of the old connection: %v, want %v naming nsm-c and the vWire that holds it", err, ErrWorkloadNameTaken)
	}
	n.host.mu.Lock()
	calls := slices.Clone(n.host.calls)
	n.host.mu.Unlock()
	if slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "createVeth") }) {
		t.Errorf("the old connection's refresh made a veth (took the name back): %v", calls)
	}
	// The newer vWire still stands: its refresh makes nothing.
	n.vpp.requests(true)
	if err := n.dp.Connect(ctx, "new", newIn, newOut); err != nil {
		t.Fatalf("refresh of the new connection: %v", err)
	}
	if got := n.vpp.requests(false); len(got) != 0 {
		t.Errorf("refresh of the new connection sent %v, want nothing but its check", got)
	}
	if err := n.dp.Disconnect(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if err := n.dp.Connect(ctx, "new", newIn, newOut); err != nil {
		t.Fatalf("refresh of the new connection after the old one's Close: %v", err)
	}
	if got := n.vpp.requests(false); slices.ContainsFunc(got, func(r string) bool { return r == "create_vlan_subif" || r == "memif_create_v2" }) {
		t.Errorf("the new vWire was rebuilt after the old one's Close: %v", got)
	}
	if err := n.dp.Disconnect(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after both Closes:\n%s\nwant\n%s", got, before)
	}
	if c := n.host.linkCount(); c != 0 {
		t.Errorf("veths left: %v", n.host.linkAlias)
	}
}

// TestRefreshRebuildsLostVeth: a KERNEL side whose veth went (deleted by
// someone else, its name free) is rebuilt by the refresh.
func TestRefreshRebuildsLostVeth(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	in, out := conn(kernelMech(nsClient, "nsm-c"), payload.Ethernet), conn(memifMech("e.sock"), payload.Ethernet)
	if err := n.dp.Connect(ctx, "a", in, out); err != nil {
		t.Fatal(err)
	}
	n.host.dropVeth(linkName(roleIn, tagKey("a")))
	if err := n.dp.Connect(ctx, "a", in, out); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	ok, heldBy, err := n.host.vethState(linkName(roleIn, tagKey("a")), tagOf(roleIn, "a").String(), workloadLink{netns: nsClient, name: "nsm-c"})
	if err != nil || !ok || heldBy != tagOf(roleWL, "a").String() {
		t.Errorf("after the refresh: host end %v, nsm-c held by %q (%v); want the vWire's veth again", ok, heldBy, err)
	}
	if err := n.dp.Disconnect(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := n.vpp.snapshot(); got != before {
		t.Errorf("VPP after Close:\n%s\nwant\n%s", got, before)
	}
	if c := n.host.linkCount(); c != 0 {
		t.Errorf("veths left: %v", n.host.linkAlias)
	}
}

// TestRefreshAfterNameTakenVPP is TestRefreshAfterNameTaken on a real VPP,
// real namespaces and the KERNEL trunk: one client's nsm-c, requested
// again under a new connection id to another endpoint, is the new vWire's
// and carries ping; the old connection's refresh fails naming the new
// one, and its Close leaves the new vWire working; VPP ends as it began.
func TestRefreshAfterNameTakenVPP(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	n := startNode(t, newNS(t, "node"), "")
	before := interfacesOf(t, n)
	client := newWorkload(t, "kernel", "nsc", "172.16.152.1")
	epOld := newWorkload(t, "kernel", "nse", "172.16.152.2")
	epNew := newWorkload(t, "kernel", "nse", "172.16.153.2")
	vwire := func(ep *workload, clientAddr string) (in, out *networkservice.Connection) {
		cc := ipCtx(clientAddr, ep.addr)
		return &networkservice.Connection{Mechanism: client.clientMech(), Context: cc, Payload: payload.IP},
			&networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + ep.ns.path}),
				Context: cc, Payload: payload.IP}
	}
	oldIn, oldOut := vwire(epOld, "172.16.152.1")
	if err := n.Connect(ctx, "old", oldIn, oldOut); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error { return client.ping(t, epOld.addr) })
	newIn, newOut := vwire(epNew, "172.16.153.1")
	if err := n.Connect(ctx, "new", newIn, newOut); err != nil {
		t.Fatal(err)
	}
	err := n.Connect(ctx, "old", oldIn, oldOut)
	if !errors.Is(err, ErrWorkloadNameTaken) || !strings.Contains(err.Error(), tagKey("new")) {
		t.Fatalf("refresh of the old connection: %v, want %v naming the new vWire", err, ErrWorkloadNameTaken)
	}
	if err := n.Disconnect(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if err := n.Connect(ctx, "new", newIn, newOut); err != nil {
		t.Fatalf("refresh of the new connection: %v", err)
	}
	eventually(t, 20*time.Second, func() error { return client.ping(t, epNew.addr) })
	if err := n.Disconnect(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, n); got != before {
		t.Errorf("VPP after both Closes:\n%s\nbefore:\n%s", got, before)
	}
}
