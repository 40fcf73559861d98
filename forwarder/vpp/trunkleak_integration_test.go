package vpp

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	interfaces "go.fd.io/govpp/binapi/interface"

	"github.com/vwire/vwire/mechanisms/kernel"
)

// TestLeftoverSubifsVPP, on a real VPP: a create_vlan_subif whose reply
// nobody reads (its caller gone) is found by its VLAN and deleted, as a
// rollback does; and a KERNEL vWire whose VLANs hold sub-interfaces left
// by hand (one untagged, one tagged for a vWire that no longer exists) is
// built, carries ping, and leaves VPP as before once closed.
func TestLeftoverSubifsVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n1, n2 := twoNodes(t)
	before := interfacesOf(t, n1)
	cl := n1.vpp
	trunk := n1.trunk.ifIndex()

	// A create whose reply is never read: VPP makes it all the same.
	const lateVLAN = 4000
	stream, err := n1.conn.NewStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&interfaces.CreateVlanSubif{SwIfIndex: trunk.api(), VlanID: lateVLAN}); err != nil {
		t.Fatal(err)
	}
	_ = stream.Close()
	if err := removeUnansweredSubif(ctx, cl, trunk, lateVLAN); err != nil {
		t.Fatal(err)
	}
	if i, ok, err := cl.FindVlanSubif(ctx, trunk, lateVLAN); err != nil || ok {
		t.Fatalf("sub-interface in VLAN %d after the rollback's look: %+v (err %v)", lateVLAN, i, err)
	}
	if got := interfacesOf(t, n1); got != before {
		t.Fatalf("VPP after the unanswered create's rollback:\n%s\nbefore:\n%s", got, before)
	}

	// Leftovers in the two VLANs the next local KERNEL vWire gets.
	n1.trunk.mu.Lock()
	next := n1.trunk.next
	n1.trunk.mu.Unlock()
	if _, err := cl.CreateVlanSubif(ctx, trunk, next); err != nil {
		t.Fatal(err)
	}
	tagged, err := cl.CreateVlanSubif(ctx, trunk, next+1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SetInterfaceTag(ctx, tagged, tagOf(roleIn, "gone").String()); err != nil {
		t.Fatal(err)
	}
	v := &trunkVWire{client: newNS(t, "nsc"), ep: newNS(t, "nse"), id: "leftover",
		name: "nsm-c", ename: "nsm-e", caddr: "172.16.170.1", eaddr: "172.16.170.2"}
	if err := v.connect(ctx, n1, n2); err != nil {
		t.Fatalf("connect over leftover sub-interfaces in VLANs %d, %d: %v", next, next+1, err)
	}
	eventually(t, 20*time.Second, func() error {
		out, err := exec.Command("ip", "netns", "exec", v.client.name, "ping", "-c", "1", "-W", "1", v.eaddr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s: %v\n%s", v.eaddr, err, out)
		}
		return nil
	})
	if err := v.close(ctx, n1, n2); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, n1); got != before {
		t.Errorf("VPP after close:\n%s\nbefore:\n%s", got, before)
	}
	if n := n1.trunk.inUse(); n != 0 {
		t.Errorf("%d VLANs in use after close", n)
	}
}

// TestLeftoverSubifsRemovedAtStartVPP: a forwarder attached to a running
// VPP deletes, when it starts, the trunk's untagged sub-interfaces left by
// a previous run's unanswered creates, and leaves the previous run's
// vWire, which a refresh then takes back unchanged.
func TestLeftoverSubifsRemovedAtStartVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNS(t, "node")
	proc := startVPPIn(ctx, t, ns)
	open := func() *Dataplane {
		dp, err := New(ctx, Config{APISocket: proc.APISocket, StatsSocket: proc.StatsSocket, NetNSPath: ns.path, Kernel: KernelVeth,
			StateDir: stateDir(t), Grace: time.Minute, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		return dp
	}
	dp1 := open()
	before := interfacesOf(t, dp1)
	c, e := newWorkload(t, "kernel", "nsc", "172.16.171.1"), newWorkload(t, "kernel", "nse", "172.16.171.2")
	cc := ipCtx(c.addr, e.addr)
	in := &networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-c", NetNSURL: "file://" + c.ns.path}), Context: cc, Payload: payload.IP}
	out := &networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + e.ns.path}), Context: cc, Payload: payload.IP}
	if err := dp1.Connect(ctx, "kept", in, out); err != nil {
		t.Fatal(err)
	}
	withKept := interfacesOf(t, dp1)
	const leftVLAN = 3000
	trunk := dp1.trunk.ifIndex()
	if _, err := dp1.vpp.CreateVlanSubif(ctx, trunk, leftVLAN); err != nil {
		t.Fatal(err)
	}
	dp1.Close()

	dp2 := open()
	if i, ok, err := dp2.vpp.FindVlanSubif(ctx, trunk, leftVLAN); err != nil || ok {
		t.Fatalf("untagged sub-interface in VLAN %d after the restart: %+v (err %v)", leftVLAN, i, err)
	}
	if err := dp2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dp2.Connect(ctx, "kept", in, out); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, dp2); got != withKept {
		t.Fatalf("VPP after the restart and refresh:\n%s\nwant:\n%s", got, withKept)
	}
	eventually(t, 10*time.Second, func() error { return c.ping(t, e.addr) })
	if err := dp2.Disconnect(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, dp2); got != before {
		t.Fatalf("VPP after close:\n%s\nbefore:\n%s", got, before)
	}
	if n := dp2.trunk.inUse(); n != 0 {
		t.Errorf("%d VLANs in use after close", n)
	}
}
