package vpp

import (
	"context"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.fd.io/govpp/api"
)

// TestIntentsAfterRestartVPP, on a real VPP the forwarder attaches to:
// creates whose replies nobody reads (VPP carries them out, as one whose
// caller gave up), each recorded in the intent journal first as a build
// records it (memif socket with an id vwire chose and its memif, a socket
// whose id VPP chooses, VXLAN tunnel, WireGuard interface, IPsec SA,
// IP-in-IP tunnel), and a VXLAN tunnel another owner tagged, with an
// intent naming it too. The forwarder's process state is then dropped (its
// Dataplane closed: an attached VPP keeps everything), and a new Dataplane
// on the same VPP and state directory finds each untagged object by its
// keys and deletes it, leaves the tagged one alone, and clears every
// intent: VPP's objects are back as they were but for the tagged tunnel.
func TestIntentsAfterRestartVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNS(t, "node")
	proc := startVPPIn(ctx, t, ns)
	state := stateDir(t)
	open := func() *Dataplane {
		dp, err := New(ctx, Config{APISocket: proc.APISocket, StatsSocket: proc.StatsSocket, NetNSPath: ns.path, Kernel: KernelVeth,
			StateDir: state, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		return dp
	}
	dp := open()
	before, ifaces := vppObjects(t, dp), interfacesOf(t, dp)

	dir := t.TempDir()
	src, dst := netip.MustParseAddr("10.223.0.1"), netip.MustParseAddr("198.51.100.7")
	var key [WireguardKeyLen]byte
	key[0], key[31] = 0x40, 0x7f
	sa := SA{ID: 0x7ffe0002, SPI: 0x7ffe0002, Salt: 7, UDPSrcPort: 4500, UDPDstPort: 4500}
	sa.Key[3] = 9
	sock, err := dp.memifSockIDs.take(ctx, dp.vpp)
	if err != nil {
		t.Fatal(err)
	}
	fileA, fileB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	v := VxlanTunnel{Src: src, Dst: dst, VNI: 4242}
	w := WireguardInterfaceSpec{PrivateKey: key, Src: src, Port: 51999}
	p := IpipTunnel{Src: src, Dst: dst}
	const id = "gone"
	its := []intent{
		{ID: id, Kind: intentMemifSocket, Sock: sock, File: fileA},
		{ID: id, Kind: intentMemif, Sock: sock, File: fileA},
		{ID: id, Kind: intentMemifSocket, File: fileB},
		vxlanIntent(id, v), wireguardIntent(id, w),
		{ID: id, Kind: intentSA, SA: sa.ID},
		{ID: id, Kind: intentIpip, Src: src, Dst: dst},
	}
	reqs := []api.Message{
		createMemifSocketCall(fileA, sock, nil).req, createMemifCall(MemifSpec{SocketID: sock}, nil).req,
		createMemifSocketCall(fileB, ^uint32(0), nil).req,
		v.request(true), createWireguardInterfaceCall(w, nil).req, sa.request(), p.request(),
	}
	// Another owner's tunnel, tagged, with an intent naming it.
	other := VxlanTunnel{Src: src, Dst: dst, VNI: 4343}
	idx, err := dp.vpp.CreateVxlanTunnel(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.vpp.SetInterfaceTag(ctx, idx, "other/owner"); err != nil {
		t.Fatal(err)
	}
	withOther := vppObjects(t, dp)
	its = append(its, vxlanIntent("other", other))
	if _, err := dp.intents.record(its...); err != nil {
		t.Fatal(err)
	}
	sendUnread(ctx, t, dp, reqs)
	// VPP serves a connection's messages in order: this listing, sent
	// after, sees what they made.
	if got := vppObjects(t, dp); reflect.DeepEqual(got, withOther) {
		t.Fatalf("VPP's objects %v: the creates made nothing, the test does not test", got)
	}
	dp.Close()

	dp = open()
	if left := dp.intents.ids(); len(left) != 0 {
		t.Fatalf("intents still open for %v", left)
	}
	if got := vppObjects(t, dp); !reflect.DeepEqual(got, withOther) {
		t.Fatalf("VPP's objects after the restart %v, want %v (the tagged tunnel only added to %v)", got, withOther, before)
	}
	tunnels, err := dp.vpp.ListVxlanTunnels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tunnels) != 1 || tunnels[0].VNI != other.VNI {
		t.Fatalf("vxlan tunnels %v, want the tagged one only", tunnels)
	}
	if err := dp.vpp.DeleteVxlanTunnel(ctx, other); err != nil {
		t.Fatal(err)
	}
	if got := vppObjects(t, dp); !reflect.DeepEqual(got, before) {
		t.Fatalf("VPP's objects %v, before %v", got, before)
	}
	if got := interfacesOf(t, dp); got != ifaces {
		t.Fatalf("VPP's interfaces:\n%s\nbefore:\n%s", got, ifaces)
	}
	// The SA is gone: its id is taken again.
	if err := dp.vpp.CreateSA(ctx, sa); err != nil {
		t.Fatalf("SA %d not removed: %v", sa.ID, err)
	}
	if err := dp.vpp.DeleteSA(ctx, sa.ID); err != nil {
		t.Fatal(err)
	}
}
