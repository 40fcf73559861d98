package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/internal/ethtool"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/vxlan"
)

// These tests build real vWires between network namespaces they create
// (and always delete), and ping across them.

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and vxlan devices")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

var nsSeq atomic.Int32

// run returns what the command printed on stdout. Not stderr: ip prints
// "Peer netns reference is invalid." there when a namespace it looks up
// goes meanwhile (other tests' namespaces come and go).
func run(t testing.TB, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// netns makes a namespace with lo up and returns its name and path.
func netnsFor(t testing.TB, role string) (string, string) {
	t.Helper()
	name := fmt.Sprintf("vwk%d-%s%d", os.Getpid(), role, nsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, "/var/run/netns/" + name
}

func ping(ns, addr string) error {
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-W", "2", "-i", "0.2", addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", addr, ns, err, out)
	}
	return nil
}

func links(t testing.TB, ns string) string {
	return run(t, "ip", "-n", ns, "-o", "link", "show")
}

// linkNames lists the devices in ns, one name a line: what a test compares
// before and after to see that nothing was left. Not the whole `ip link`
// line: a fixture's veth still reaching carrier (NO-CARRIER, then UP) would
// make two listings of the same devices differ.
func linkNames(t testing.TB, ns string) string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(links(t, ns)), "\n") {
		// "7: uplink@if6: <BROADCAST,...> ..."
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 2 {
			t.Fatalf("ip link: unexpected line %q", line)
		}
		name, _, _ := strings.Cut(f[1], "@")
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, "\n")
}

func ipContext(src, dst string) *networkservice.ConnectionContext {
	return &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{src + "/32"}, DstIpAddrs: []string{dst + "/32"},
		SrcRoutes: []*networkservice.Route{{Prefix: dst + "/32"}}, DstRoutes: []*networkservice.Route{{Prefix: src + "/32"}},
	}}
}

func kernelMech(path, name string) *networkservice.Mechanism {
	return kernel.New(kernel.Params{Name: name, NetNSURL: "file://" + path})
}

func newDP(t testing.TB, nodePath string, tunnel string, grace time.Duration) *Dataplane {
	t.Helper()
	// WireGuard (of any kind) has its own tests: these are of the rest.
	cfg := Config{NetNSPath: nodePath, Grace: grace, WireGuard: WireGuardOff, StateDir: t.TempDir()}
	if tunnel != "" {
		cfg.TunnelIP = netip.MustParseAddr(tunnel)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestLocalKernelToKernel(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_, nodePath := netnsFor(t, "node")
	node := strings.TrimPrefix(nodePath, "/var/run/netns/")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)

	cc := ipContext("169.254.10.1", "169.254.10.2")
	in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
	out := &networkservice.Connection{Mechanism: kernelMech(epPath, "nsm-e"), Context: cc}
	if err := d.Connect(ctx, "conn-1", in, out); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.10.2"); err != nil {
		t.Fatal(err)
	}
	if err := ping(ep, "169.254.10.1"); err != nil {
		t.Fatal(err)
	}
	if in.GetContext().GetMTU() != DefaultMTU {
		t.Fatalf("mtu %d", in.GetContext().GetMTU())
	}
	// One veth pair between the two workloads: nothing in the node's
	// namespace, the client's interface the endpoint's peer.
	if got := linkNames(t, node); got != before {
		t.Fatalf("a local vWire left links in the node namespace:\n%s", got)
	}
	if dev := run(t, "ip", "-n", client, "-d", "-o", "link", "show", "nsm-c"); !strings.Contains(dev, "veth") {
		t.Fatalf("client interface is not a veth:\n%s", dev)
	}
	// A refresh finds everything in place and changes nothing.
	idx := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c")
	if err := d.Connect(ctx, "conn-1", in, out); err != nil {
		t.Fatal(err)
	}
	if again := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c"); again != idx {
		t.Fatalf("refresh rebuilt the link:\n%s\n%s", idx, again)
	}
	// So does a restarted forwarder's first refresh: it finds the pair by
	// the mechanisms' namespaces and names.
	d2 := newDP(t, nodePath, "", 0)
	if err := d2.Connect(ctx, "conn-1", in, out); err != nil {
		t.Fatal(err)
	}
	if again := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c"); again != idx {
		t.Fatalf("a restarted forwarder rebuilt the link:\n%s\n%s", idx, again)
	}
	if !strings.Contains(links(t, client), "vwire/wl/conn-1") {
		t.Fatalf("workload end has no alias:\n%s", links(t, client))
	}

	if err := d.Disconnect(ctx, "conn-1"); err != nil {
		t.Fatal(err)
	}
	// Down at once (the client's end set down, the endpoint's without
	// carrier), deleted by the reaper at its next pass.
	for _, w := range []struct{ ns, name string }{{client, "nsm-c"}, {ep, "nsm-e"}} {
		if got, err := exec.Command("ip", "-n", w.ns, "-o", "link", "show", w.name).CombinedOutput(); err == nil &&
			!strings.Contains(string(got), "NO-CARRIER") && strings.Contains(string(got), ",UP") {
			t.Fatalf("%s still has its carrier after Disconnect:\n%s", w.name, got)
		}
	}
	d.reap.flush()
	requireNoLinksLeft(t, node, before, client, ep)
	// Disconnecting twice is fine.
	if err := d.Disconnect(ctx, "conn-1"); err != nil {
		t.Fatal(err)
	}
}

// TestConnectMovedToAnotherEndpoint: the manager moves a live vWire to
// another endpoint (same connection id): the old endpoint's interface goes,
// the new one carries traffic with the new addresses.
func TestConnectMovedToAnotherEndpoint(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep1, ep1Path := netnsFor(t, "nse")
	ep2, ep2Path := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)

	cc := ipContext("169.254.11.1", "169.254.11.2")
	in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
	if err := d.Connect(ctx, "conn-m", in, &networkservice.Connection{Mechanism: kernelMech(ep1Path, "nsm-e"), Context: cc}); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.11.2"); err != nil {
		t.Fatal(err)
	}
	// The interface, less its peer's namespace: index, name, address.
	clientIf := func() string {
		f := strings.Fields(run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c"))
		return f[0] + f[1] + strings.Join(f[slices.Index(f, "link/ether"):][:2], " ")
	}
	was := clientIf()
	moved := ipContext("169.254.12.1", "169.254.12.2")
	in = &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: moved}
	if err := d.Connect(ctx, "conn-m", in, &networkservice.Connection{Mechanism: kernelMech(ep2Path, "nsm-e"), Context: moved}); err != nil {
		t.Fatal(err)
	}
	if got := links(t, ep1); strings.Contains(got, "nsm-e") {
		t.Fatalf("the old endpoint still has the vWire's interface:\n%s", got)
	}
	if err := ping(client, "169.254.12.2"); err != nil {
		t.Fatal(err)
	}
	if err := ping(ep2, "169.254.12.1"); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "ip", "-n", client, "-o", "addr", "show", "dev", "nsm-c"); strings.Contains(got, "169.254.11.1") {
		t.Fatalf("the client keeps the old address:\n%s", got)
	}
	// The client's interface stayed (only its addresses changed; its
	// peer moved to the new endpoint): the kernel deletes links one at a
	// time, so a mass heal deletes no more than it must.
	if again := clientIf(); again != was {
		t.Fatalf("the client's interface was rebuilt:\n%s\n%s", was, again)
	}
	if got := run(t, "ip", "-n", client, "route", "show", "dev", "nsm-c"); strings.Contains(got, "169.254.11.2") || !strings.Contains(got, "169.254.12.2") {
		t.Fatalf("the client's routes are not the new endpoint's:\n%s", got)
	}
	// The old endpoint's namespace is not held for the vWire any more.
	d.conns.mu.Lock()
	held := len(d.conns.held["conn-m"])
	d.conns.mu.Unlock()
	if n := d.conns.count(); n != 2 || held != 2 {
		t.Fatalf("%d workload namespaces with a socket, %d held for the vWire, after the move: want the client's and the new endpoint's", n, held)
	}
	if err := d.Disconnect(ctx, "conn-m"); err != nil {
		t.Fatal(err)
	}
}

func TestConnectFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	_, clientPath := netnsFor(t, "nsc")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	cc := ipContext("169.254.10.1", "169.254.10.2")
	in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
	out := &networkservice.Connection{Mechanism: kernelMech("/var/run/netns/does-not-exist", "nsm-e"), Context: cc}
	if err := d.Connect(ctx, "conn-x", in, out); err == nil {
		t.Fatal("connect into a missing namespace succeeded")
	}
	if got := linkNames(t, node); got != before {
		t.Fatalf("a failed connect left links:\n%s", got)
	}
	bad := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{SrcIpAddrs: []string{"not-an-ip"}}}}
	if err := d.Connect(ctx, "conn-y", bad, out); err == nil {
		t.Fatal("bad address accepted")
	}
	if got := linkNames(t, node); got != before {
		t.Fatalf("a failed connect left links:\n%s", got)
	}
}

// twoNodes makes two node namespaces joined by a veth with 10.222.0.1 and
// 10.222.0.2 on it.
func twoNodes(t *testing.T) (n1, p1, n2, p2 string) {
	n1, p1 = netnsFor(t, "node")
	n2, p2 = netnsFor(t, "node")
	peer := fmt.Sprintf("vwk%dp", nsSeq.Add(1))
	run(t, "ip", "-n", n1, "link", "add", "name", "uplink", "type", "veth", "peer", "name", peer)
	run(t, "ip", "-n", n1, "link", "set", peer, "netns", n2)
	run(t, "ip", "-n", n2, "link", "set", peer, "name", "uplink")
	for i, n := range []string{n1, n2} {
		run(t, "ip", "-n", n, "addr", "add", fmt.Sprintf("10.222.0.%d/24", i+1), "dev", "uplink")
		run(t, "ip", "-n", n, "link", "set", "uplink", "up")
	}
	return
}

func TestRemoteKernelVxlanKernel(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	n1, p1, n2, p2 := twoNodes(t)
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d1 := newDP(t, p1, "10.222.0.1", 0)
	d2 := newDP(t, p2, "10.222.0.2", 0)
	cc := ipContext("169.254.20.1", "169.254.20.2")

	// The protocol's order: node1 offers, node2 accepts and builds, node1 builds.
	offers, err := d1.Offer(ctx, "a", nil, true)
	if err != nil || len(offers) != 1 {
		t.Fatalf("offer: %v %v", offers, err)
	}
	accepted, err := d2.Accept(ctx, "b", nil, offers)
	if err != nil {
		t.Fatal(err)
	}
	in2 := &networkservice.Connection{Mechanism: accepted, Context: cc}
	if err := d2.Connect(ctx, "b", in2, &networkservice.Connection{Mechanism: kernelMech(epPath, "nsm-e"), Context: cc}); err != nil {
		t.Fatal(err)
	}
	in1 := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
	if err := d1.Connect(ctx, "a", in1, &networkservice.Connection{Mechanism: accepted, Context: cc}); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.20.2"); err != nil {
		t.Fatal(err)
	}
	if want := uint32(1500 - vxlanOverhead); in1.GetContext().GetMTU() != want {
		t.Fatalf("mtu %d, want %d", in1.GetContext().GetMTU(), want)
	}
	mtu := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c")
	if !strings.Contains(mtu, "mtu 1450") {
		t.Fatalf("client interface mtu: %s", mtu)
	}
	// A zero UDP checksum over IPv4; offloads kept toward a kernel peer,
	// off toward one that takes no offloaded packets (as a VPP node says).
	if dev := run(t, "ip", "-n", n1, "-d", "link", "show", linkName(roleOut, "a")); !strings.Contains(dev, "noudpcsum") {
		t.Errorf("vxlan device with a UDP checksum: %s", dev)
	}
	txCsum := func(name string) bool {
		t.Helper()
		var on bool
		if err := d1.inNetNS(func() (err error) { on, err = ethtool.TxChecksum(name); return err }); err != nil {
			t.Fatal(err)
		}
		return on
	}
	if !txCsum(linkName(roleOut, "a")) {
		t.Error("tx checksum offload off toward a kernel peer")
	}
	offersN, _ := d1.Offer(ctx, "n", nil, true)
	accN, err := d2.Accept(ctx, "n-b", nil, offersN)
	if err != nil {
		t.Fatal(err)
	}
	accN.GetParameters()[vxlan.DstNoOffload] = "true"
	ccN := ipContext("169.254.22.1", "169.254.22.2")
	if err := d1.Connect(ctx, "n", &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-n"), Context: ccN}, &networkservice.Connection{Mechanism: accN, Context: ccN}); err != nil {
		t.Fatal(err)
	}
	if txCsum(linkName(roleOut, "n")) {
		t.Error("tx checksum offload on toward a peer that takes no offloaded packets")
	}
	if err := d1.Disconnect(ctx, "n"); err != nil {
		t.Fatal(err)
	}

	// A restarted forwarder on node1 keeps the links a refresh claims and
	// removes the others after the grace period.
	stray := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-s"), Context: ipContext("169.254.21.1", "169.254.21.2")}
	offers2, _ := d1.Offer(ctx, "stray", nil, true)
	acc2, err := d2.Accept(ctx, "stray-b", nil, offers2)
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Connect(ctx, "stray", stray, &networkservice.Connection{Mechanism: acc2}); err != nil {
		t.Fatal(err)
	}
	d1b := newDP(t, p1, "10.222.0.1", 500*time.Millisecond)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d1b.Start(sctx); err != nil {
		t.Fatal(err)
	}
	offersAgain, err := d1b.Offer(ctx, "a", nil, true)
	if err != nil || offersAgain[0].GetParameters()["vni"] != offers[0].GetParameters()["vni"] {
		t.Fatalf("restarted forwarder offers a different VNI for a live vWire: %v vs %v (%v)", offersAgain, offers, err)
	}
	if err := d1b.Connect(ctx, "a", in1, &networkservice.Connection{Mechanism: accepted, Context: cc}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(links(t, n1), linkName(roleOut, "stray")) {
		if time.Now().After(deadline) {
			t.Fatalf("unclaimed links not removed:\n%s", links(t, n1))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ping(client, "169.254.20.2"); err != nil {
		t.Fatalf("claimed vWire broken by reconcile: %v", err)
	}
	if err := ping(ep, "169.254.20.1"); err != nil {
		t.Fatal(err)
	}
	_ = n2
}

// TestConnectAgainRightAfterDisconnect: a vWire closed and requested again
// at once, under the same connection id (a heal) or another one, with the
// same interface names, while the reaper may still hold the old links:
// the new one is built and carries traffic.
func TestConnectAgainRightAfterDisconnect(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	cc := ipContext("169.254.13.1", "169.254.13.2")
	in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
	out := &networkservice.Connection{Mechanism: kernelMech(epPath, "nsm-e"), Context: cc}
	for _, id := range []string{"conn-a", "conn-a", "conn-b"} {
		if err := d.Connect(ctx, id, in, out); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if err := ping(client, "169.254.13.2"); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if err := d.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	d.reap.flush()
	requireNoLinksLeft(t, node, before, client, ep)
}

// TestConnectTakesNameOfClosedVWire: the workload's interface names are
// still held by a closed vWire's pair, down and waiting for the reaper
// (which is held back here): a new vWire asking for the same names renames
// them out of the way instead of waiting, and carries traffic; the renamed
// ends go with the reaper's pass.
func TestConnectTakesNameOfClosedVWire(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	cc := ipContext("169.254.14.1", "169.254.14.2")
	in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
	out := &networkservice.Connection{Mechanism: kernelMech(epPath, "nsm-e"), Context: cc}
	if err := d.Connect(ctx, "conn-old", in, out); err != nil {
		t.Fatal(err)
	}
	// Hold the reaper back: Disconnect leaves the pair down and marked.
	d.reap.mu.Lock()
	d.reap.running = true
	d.reap.mu.Unlock()
	if err := d.Disconnect(ctx, "conn-old"); err != nil {
		t.Fatal(err)
	}
	if got := links(t, client); !strings.Contains(got, "vwire/wl/conn-old") {
		t.Fatalf("the closed pair is gone before the reaper ran:\n%s", got)
	}

	if err := d.Connect(ctx, "conn-new", in, out); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.14.2"); err != nil {
		t.Fatal(err)
	}
	if got := links(t, client); !strings.Contains(got, "vwr") || !strings.Contains(got, "vwire/wl/conn-new") {
		t.Fatalf("want the closed end renamed and the new one in place:\n%s", got)
	}
	d.reap.run() // what enqueue would have started
	for _, ns := range []string{client, ep} {
		if got := links(t, ns); strings.Contains(got, "vwr") || strings.Contains(got, "conn-old") {
			t.Fatalf("closed ends left in %s:\n%s", ns, got)
		}
	}
	if err := d.Disconnect(ctx, "conn-new"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()
	requireNoLinksLeft(t, node, before, client, ep)
}

// TestConnectTakesNameOfLiveVWire: a new connection id asks for the
// interface names a live older vWire holds (a client that requests anew
// before closing): the newer Request wins, as on the VPP dataplane; the
// older vWire's link, known by its alias, goes, and its Close leaves the
// new one alone. A link of that name that is not a vWire's is refused with
// an error that says so, and left as it is. Both for a local pair and for
// a client side that is its own veth (its endpoint remote).
func TestConnectTakesNameOfLiveVWire(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	ccOld, ccNew := ipContext("169.254.15.1", "169.254.15.2"), ipContext("169.254.15.5", "169.254.15.6")
	if err := d.Connect(ctx, "conn-old", kernelConn(clientPath, "nsm-c", ccOld), kernelConn(epPath, "nsm-e", ccOld)); err != nil {
		t.Fatal(err)
	}
	// The same names under a new id, the old vWire still live.
	if err := d.Connect(ctx, "conn-new", kernelConn(clientPath, "nsm-c", ccNew), kernelConn(epPath, "nsm-e", ccNew)); err != nil {
		t.Fatalf("newer Request on a live vWire's names: %v", err)
	}
	if err := ping(client, "169.254.15.6"); err != nil {
		t.Fatal(err)
	}
	// The old vWire's Close leaves the new one alone.
	if err := d.Disconnect(ctx, "conn-old"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()
	if err := ping(client, "169.254.15.6"); err != nil {
		t.Fatalf("the older vWire's Close broke the newer one: %v", err)
	}
	for _, ns := range []string{client, ep} {
		if got := links(t, ns); strings.Contains(got, "conn-old") || !strings.Contains(got, "vwire/wl/conn-new") {
			t.Fatalf("%s: want only the newer vWire's interface:\n%s", ns, got)
		}
	}

	// A client side of its own (a veth into the node's namespace, as when
	// the endpoint is remote) taking the name from the live pair.
	spec, err := vethSpecFor(roleIn, "conn-side", kernelMech(clientPath, "nsm-c"), ipContext("169.254.15.9", "169.254.15.10"), DefaultMTU)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.createVeth(spec); err != nil {
		t.Fatalf("client side on a live pair's name: %v", err)
	}
	if got := links(t, client); !strings.Contains(got, "vwire/wl/conn-side") || strings.Contains(got, "vwire/wl/conn-new") {
		t.Fatalf("want the side's interface in place of the pair's:\n%s", got)
	}
	if err := d.removeLinks("conn-side"); err != nil {
		t.Fatal(err)
	}
	if err := d.Disconnect(ctx, "conn-new"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()

	// A link that is not a vWire's keeps its name.
	run(t, "ip", "-n", client, "link", "add", "nsm-c", "type", "veth", "peer", "name", "foreign")
	err = d.Connect(ctx, "conn-x", kernelConn(clientPath, "nsm-c", ccNew), kernelConn(epPath, "nsm-e", ccNew))
	if err == nil || !strings.Contains(err.Error(), "not a vWire's") {
		t.Fatalf("a foreign link's name: want a clear refusal, got %v", err)
	}
	if dev := run(t, "ip", "-n", client, "-o", "link", "show", "nsm-c"); !strings.Contains(dev, "nsm-c@foreign") || strings.Contains(dev, "alias") {
		t.Fatalf("the foreign link was touched:\n%s", dev)
	}
	if got := links(t, ep); strings.Contains(got, "nsm-e") || strings.Contains(got, "vwr") {
		t.Fatalf("a refused Connect left links in the endpoint namespace:\n%s", got)
	}
	d.reap.flush()
	if got := linkNames(t, node); got != before {
		t.Fatalf("links left in the node namespace:\n%s", got)
	}
}

// TestConnectMovedBetweenLocalAndRemote: a local vWire (one pair) moved to
// a remote endpoint gets a client side of its own with the same interface
// name and the new addresses, and back to a local endpoint a pair again;
// nothing is left of the form it had before.
func TestConnectMovedBetweenLocalAndRemote(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	n1, p1, _, p2 := twoNodes(t)
	client, clientPath := netnsFor(t, "nsc")
	local, localPath := netnsFor(t, "nse")
	remote, remotePath := netnsFor(t, "nse")
	d1 := newDP(t, p1, "10.222.0.1", 0)
	d2 := newDP(t, p2, "10.222.0.2", 0)
	before := linkNames(t, n1)

	ccLocal := ipContext("169.254.22.1", "169.254.22.2")
	in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: ccLocal}
	if err := d1.Connect(ctx, "a", in, &networkservice.Connection{Mechanism: kernelMech(localPath, "nsm-e"), Context: ccLocal}); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.22.2"); err != nil {
		t.Fatal(err)
	}

	ccRemote := ipContext("169.254.23.1", "169.254.23.2")
	offers, err := d1.Offer(ctx, "a", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := d2.Accept(ctx, "b", nil, offers)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Connect(ctx, "b", &networkservice.Connection{Mechanism: accepted, Context: ccRemote}, &networkservice.Connection{Mechanism: kernelMech(remotePath, "nsm-e"), Context: ccRemote}); err != nil {
		t.Fatal(err)
	}
	in = &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: ccRemote}
	if err := d1.Connect(ctx, "a", in, &networkservice.Connection{Mechanism: accepted, Context: ccRemote}); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.23.2"); err != nil {
		t.Fatal(err)
	}
	if got := links(t, local); strings.Contains(got, "nsm-e") {
		t.Fatalf("the local endpoint keeps the pair's end:\n%s", got)
	}
	if n := d1.conns.count(); n != 0 {
		t.Fatalf("%d workload namespaces still with a socket once the vWire is no pair any more", n)
	}
	if got := run(t, "ip", "-n", client, "-o", "addr", "show", "dev", "nsm-c"); strings.Contains(got, "169.254.22.1") || !strings.Contains(got, "169.254.23.1") {
		t.Fatalf("the client's addresses are not the remote endpoint's IPAM's:\n%s", got)
	}

	// Back to the local endpoint.
	in = &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: ccLocal}
	if err := d1.Connect(ctx, "a", in, &networkservice.Connection{Mechanism: kernelMech(localPath, "nsm-e"), Context: ccLocal}); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.22.2"); err != nil {
		t.Fatal(err)
	}
	if err := d2.Disconnect(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := linkNames(t, n1); got != before {
		t.Fatalf("the remote form's links are left in node1's namespace:\n%s", got)
	}
	if err := d1.Disconnect(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	d1.reap.flush()
	d2.reap.flush()
	requireNoLinksLeft(t, "", "", client, local, remote)
}

// TestDisconnectAfterDescriptorsClosed: the workloads' namespaces reach the
// dataplane as descriptors (/proc/<pid>/fd/<n>) that the forwarder closes
// before Disconnect: the pair still goes, as the dataplane holds the
// client's namespace while the pair is its own.
func TestDisconnectAfterDescriptorsClosed(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	viaFD := func(path string) (string, *os.File) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), f
	}
	cPath, cf := viaFD(clientPath)
	ePath, ef := viaFD(epPath)
	cc := ipContext("169.254.24.1", "169.254.24.2")
	in := &networkservice.Connection{Mechanism: kernelMech(cPath, "nsm-c"), Context: cc}
	out := &networkservice.Connection{Mechanism: kernelMech(ePath, "nsm-e"), Context: cc}
	if err := d.Connect(ctx, "conn-fd", in, out); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.24.2"); err != nil {
		t.Fatal(err)
	}
	cf.Close()
	ef.Close()
	if err := d.Disconnect(ctx, "conn-fd"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()
	requireNoLinksLeft(t, "", "", client, ep)
}

// requireNoLinksLeft fails t if node's links (unless node is "") are not
// before, or a workload namespace still has a vWire's link: one of the
// names given (nsm-*) or an end renamed out of a name's way (vwr*).
func requireNoLinksLeft(t *testing.T, node, before string, workloads ...string) {
	t.Helper()
	if node != "" {
		if got := linkNames(t, node); got != before {
			t.Fatalf("links left in the node namespace:\n%s", got)
		}
	}
	for _, ns := range workloads {
		if got := links(t, ns); strings.Contains(got, "nsm-") || strings.Contains(got, "vwr") {
			t.Fatalf("links left in %s:\n%s", ns, got)
		}
	}
}

// kernelConn is a connection of the kernel mechanism: interface name in
// the namespace at ns, with cc.
func kernelConn(ns, name string, cc *networkservice.ConnectionContext) *networkservice.Connection {
	return &networkservice.Connection{Mechanism: kernelMech(ns, name), Context: cc}
}
