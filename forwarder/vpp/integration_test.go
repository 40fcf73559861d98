package vpp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp/vppstart"
	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// These tests run real VPPs: one per node (each node a network namespace,
// joined to the other by a veth that the VPPs take over with af_packet), and
// one per memif workload (a memif slave with an address). They run only when
// VPP_BIN names a VPP binary (VPP_PLUGIN_PATH its plugins) and as root, and
// always remove their namespaces and VPPs.

func needVPP(t testing.TB) (bin, plugins string) {
	t.Helper()
	bin = os.Getenv("VPP_BIN")
	if bin == "" {
		t.Skip("VPP_BIN not set: the integration tests need a VPP 25.10 binary (and VPP_PLUGIN_PATH for its plugins)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veths and VPPs")
	}
	return bin, os.Getenv("VPP_PLUGIN_PATH")
}

var itSeq atomic.Int32

type itNS struct{ name, path string }

func newNS(t testing.TB, role string) itNS {
	t.Helper()
	name := fmt.Sprintf("vwv%d-%s%d", os.Getpid(), role, itSeq.Add(1))
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return itNS{name: name, path: "/var/run/netns/" + name}
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func stateDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vwv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startNode starts a node's dataplane (and its VPP) in ns.
func startNode(t testing.TB, ns itNS, uplink string, opts ...nodeOpt) *Dataplane {
	t.Helper()
	bin, plugins := needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kept := newKeepHandler(testLogger(t).Handler())
	cfg := Config{Bin: bin, PluginPath: plugins, StateDir: stateDir(t), NetNSPath: ns.path, Uplink: uplink,
		Kernel: KernelVeth, PollSleepUsec: 100, Logger: slog.New(kept), MaxInFlight: maxInFlight(t)}
	for _, o := range opts {
		o(&cfg)
	}
	dp, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	// Before the Close above and the state directory's removal.
	t.Cleanup(func() { reportVPPOnFailure(t, dp, kept) })
	if err := dp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return dp
}

// maxInFlight is the real-VPP tests' Config.MaxInFlight:
// VWIRE_MAX_IN_FLIGHT as --vpp-max-in-flight takes it (0: no bound), else
// the default; for measuring the bound (BenchmarkMemifConnect,
// BenchmarkRemoteConnect, the scale tests).
func maxInFlight(t testing.TB) int {
	t.Helper()
	v := os.Getenv("VWIRE_MAX_IN_FLIGHT")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("VWIRE_MAX_IN_FLIGHT=%q: want 0 (no bound) or more", v)
	}
	if n == 0 {
		return -1
	}
	return n
}

// twoNodes makes two node namespaces joined by a veth "uplink" with
// 10.223.0.1/24 and 10.223.0.2/24, and a dataplane in each.
func twoNodes(t testing.TB, opts ...nodeOpt) (n1, n2 *Dataplane) {
	a, b := newNS(t, "node"), newNS(t, "node")
	peer := fmt.Sprintf("vwv%dp%d", os.Getpid(), itSeq.Add(1))
	sh(t, "ip", "-n", a.name, "link", "add", "name", "uplink", "type", "veth", "peer", "name", peer)
	sh(t, "ip", "-n", a.name, "link", "set", peer, "netns", b.name)
	sh(t, "ip", "-n", b.name, "link", "set", peer, "name", "uplink")
	for i, ns := range []itNS{a, b} {
		sh(t, "ip", "-n", ns.name, "addr", "add", fmt.Sprintf("10.223.0.%d/24", i+1), "dev", "uplink")
		sh(t, "ip", "-n", ns.name, "link", "set", "uplink", "up")
	}
	return startNode(t, a, "uplink", opts...), startNode(t, b, "uplink", opts...)
}

// memifWorkload is a VPP acting as a workload: a memif slave with an
// address, which pings.
type memifWorkload struct {
	ns   itNS
	proc *vppstart.Process
	conn *core.Connection
}

func startMemifWorkload(t testing.TB, ns itNS) *memifWorkload {
	t.Helper()
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	proc := startVPPIn(ctx, t, ns)
	conn, err := core.Connect(socketclient.NewVppClient(proc.APISocket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Disconnect)
	return &memifWorkload{ns: ns, proc: proc, conn: conn}
}

func (w *memifWorkload) cli(t testing.TB, cmd string) string {
	t.Helper()
	reply, err := vlib.NewServiceClient(w.conn).CliInband(context.Background(), &vlib.CliInband{Cmd: cmd})
	if err != nil {
		t.Fatalf("vpp cli %q: %v", cmd, err)
	}
	return reply.Reply
}

// attach connects a slave memif to the abstract socket file in the
// workload's namespace and gives it addr (with a route to peer for IP mode).
func (w *memifWorkload) attach(t testing.TB, file string, ipMode bool, addr, peer string) {
	t.Helper()
	w.cli(t, "create memif socket id 1 filename abstract:"+file)
	mode := ""
	if ipMode {
		mode = " mode ip"
	}
	w.cli(t, "create interface memif id 0 socket-id 1 slave"+mode)
	w.cli(t, "set interface state memif1/0 up")
	if ipMode {
		w.cli(t, "set interface ip address memif1/0 "+addr+"/32")
		w.cli(t, "ip route add "+peer+"/32 via memif1/0")
	} else {
		w.cli(t, "set interface ip address memif1/0 "+addr+"/24")
	}
}

var received = regexp.MustCompile(`(\d+) sent, (\d+) received`)

func (w *memifWorkload) ping(t testing.TB, dst string) error {
	out := w.cli(t, "ping "+dst+" repeat 3 interval 0.2")
	m := received.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("ping %s: %s", dst, out)
	}
	if n, _ := strconv.Atoi(m[2]); n == 0 {
		return fmt.Errorf("ping %s: nothing received: %s", dst, out)
	}
	return nil
}

// workload is one end of a vWire in the matrix.
type workload struct {
	kind  string // "kernel" or "memif"
	ns    itNS
	memif *memifWorkload
	addr  string // its address
	file  string // memif socket file
}

func newWorkload(t testing.TB, kind, role, addr string) *workload {
	w := &workload{kind: kind, ns: newNS(t, role), addr: addr}
	if kind == "memif" {
		w.memif = startMemifWorkload(t, w.ns)
	}
	return w
}

// clientMech is what a client of this kind offers.
func (w *workload) clientMech() *networkservice.Mechanism {
	if w.kind == "kernel" {
		return kernel.New(kernel.Params{Name: "nsm-c", NetNSURL: "file://" + w.ns.path})
	}
	return memif.New(memif.Params{NetNSURL: "file://" + w.ns.path})
}

// endpointChoice is what an endpoint of this kind picks from offers.
func (w *workload) endpointChoice(t testing.TB, offers []*networkservice.Mechanism) *networkservice.Mechanism {
	t.Helper()
	typ := kernel.Type
	if w.kind == "memif" {
		typ = memif.Type
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == typ })
	if i < 0 {
		t.Fatalf("endpoint %s: not offered in %v", typ, offers)
	}
	if w.kind == "kernel" {
		return kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + w.ns.path})
	}
	p, err := memif.FromOffer(offers[i])
	if err != nil {
		t.Fatal(err)
	}
	p.NetNSURL = "file://" + w.ns.path
	return memif.New(p)
}

// up attaches a memif workload once the forwarder made its master.
func (w *workload) up(t testing.TB, m *networkservice.Mechanism, ipMode bool, peer string) {
	if w.kind != "memif" {
		return
	}
	p, err := memif.FromMechanism(m)
	if err != nil {
		t.Fatal(err)
	}
	w.memif.attach(t, p.AbstractName(), ipMode, w.addr, peer)
}

func (w *workload) ping(t testing.TB, dst string) error {
	if w.kind == "memif" {
		return w.memif.ping(t, dst)
	}
	out, err := exec.Command("ip", "netns", "exec", w.ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", dst, w.ns.name, err, out)
	}
	return nil
}

func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// interfacesOf lists a dataplane's VPP interfaces by name and tag.
func interfacesOf(t testing.TB, d *Dataplane) string {
	t.Helper()
	ifaces, err := d.vpp.ListInterfaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, i := range ifaces {
		fmt.Fprintf(&b, "%s %q\n", i.Name, i.Tag)
	}
	return b.String()
}

func ipCtx(client, endpoint string) *networkservice.ConnectionContext {
	return &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{client + "/32"}, DstIpAddrs: []string{endpoint + "/32"},
		SrcRoutes: []*networkservice.Route{{Prefix: endpoint + "/32"}}, DstRoutes: []*networkservice.Route{{Prefix: client + "/32"}},
	}}
}

// TestVWireMatrix builds and pings every client × path × endpoint vWire.
func TestVWireMatrix(t *testing.T) {
	needVPP(t)
	n1, n2 := twoNodes(t)
	paths := []struct {
		name    string
		typ     string // "" for a local vWire
		payload string
	}{
		{"local", "", payload.IP},
		{"vxlan", vxlan.Type, payload.Ethernet},
		{"wireguard", wireguard.Type, payload.IP},
		{"ipsec", ipsec.Type, payload.IP},
	}
	seq := 0
	for _, path := range paths {
		for _, ck := range []string{"kernel", "memif"} {
			for _, ek := range []string{"kernel", "memif"} {
				seq++
				name := fmt.Sprintf("%s-%s-%s", ck, path.name, ek)
				clientIP, epIP := fmt.Sprintf("172.16.%d.1", seq), fmt.Sprintf("172.16.%d.2", seq)
				t.Run(name, func(t *testing.T) {
					runVWire(t, n1, n2, path.typ, path.payload, newWorkload(t, ck, "nsc", clientIP), newWorkload(t, ek, "nse", epIP), name)
				})
			}
		}
	}
}

func runVWire(t *testing.T, n1, n2 *Dataplane, remote, pl string, client, ep *workload, id string) {
	ctx := context.Background()
	before1, before2 := interfacesOf(t, n1), interfacesOf(t, n2)
	cc := ipCtx(client.addr, ep.addr)
	c := &networkservice.Connection{Payload: pl, Context: cc}
	idA, idB := id+"-a", id+"-b"

	// The forwarder protocol's order: node 1 accepts the client and offers
	// onward; node 2 accepts, offers to the endpoint and builds; node 1
	// builds.
	in, err := n1.Accept(ctx, idA, c, []*networkservice.Mechanism{client.clientMech()})
	if err != nil {
		t.Fatal(err)
	}
	var out *networkservice.Mechanism
	epNode, epID := n1, idA
	if remote != "" {
		offers, err := n1.Offer(ctx, idA, c, true)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == remote })
		if i < 0 {
			t.Fatalf("%s not offered: %v", remote, offers)
		}
		if out, err = n2.Accept(ctx, idB, c, offers[i:i+1]); err != nil {
			t.Fatal(err)
		}
		epNode, epID = n2, idB
	}
	local, err := epNode.Offer(ctx, epID, c, false)
	if err != nil {
		t.Fatal(err)
	}
	epMech := ep.endpointChoice(t, local)
	if remote != "" {
		if err := n2.Connect(ctx, idB, &networkservice.Connection{Mechanism: out, Context: cc, Payload: pl}, &networkservice.Connection{Mechanism: epMech, Context: cc, Payload: pl}); err != nil {
			t.Fatal(err)
		}
	} else {
		out = epMech
	}
	inConn := &networkservice.Connection{Mechanism: in, Context: cc, Payload: pl}
	if err := n1.Connect(ctx, idA, inConn, &networkservice.Connection{Mechanism: out, Context: cc, Payload: pl}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n1.Disconnect(ctx, idA)
		_ = n2.Disconnect(ctx, idB)
	})
	ipMode := pl == payload.IP
	client.up(t, in, ipMode, ep.addr)
	ep.up(t, epMech, ipMode, client.addr)

	eventually(t, 20*time.Second, func() error { return client.ping(t, ep.addr) })
	eventually(t, 10*time.Second, func() error { return ep.ping(t, client.addr) })
	checkMetrics(t, n1, idA)
	t.Logf("%s: vWire MTU %d", id, inConn.GetContext().GetMTU())

	// Close leaves VPP as it was.
	if err := n1.Disconnect(ctx, idA); err != nil {
		t.Fatal(err)
	}
	if err := n2.Disconnect(ctx, idB); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, n1); got != before1 {
		t.Fatalf("node 1 after close:\n%s\nbefore:\n%s", got, before1)
	}
	if got := interfacesOf(t, n2); got != before2 {
		t.Fatalf("node 2 after close:\n%s\nbefore:\n%s", got, before2)
	}
}

// A VPP that dies is started again, and the vWires come back from what
// Connect was given.
func TestVPPRestartRestoresVWires(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	ns := newNS(t, "node")
	dp := startNode(t, ns, "")
	client, ep := newWorkload(t, "kernel", "nsc", "172.16.100.1"), newWorkload(t, "kernel", "nse", "172.16.100.2")
	cc := ipCtx(client.addr, ep.addr)
	in := &networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-c", NetNSURL: "file://" + client.ns.path}), Context: cc, Payload: payload.IP}
	out := &networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + ep.ns.path}), Context: cc, Payload: payload.IP}
	if err := dp.Connect(ctx, "restart", in, out); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error { return client.ping(t, ep.addr) })

	dp.mu.Lock()
	pid := dp.proc.Pid()
	dp.mu.Unlock()
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		dp.mu.Lock()
		now := dp.proc.Pid()
		dp.mu.Unlock()
		if now == pid {
			return fmt.Errorf("VPP not restarted yet")
		}
		return client.ping(t, ep.addr)
	})
	if err := dp.Disconnect(ctx, "restart"); err != nil {
		t.Fatal(err)
	}
}

// A forwarder attached to a running VPP that restarts takes back the
// vWire a refresh claims, untouched, and removes the one nothing claims.
func TestForwarderRestartReconciles(t *testing.T) {
	needVPP(t)
	ctx := context.Background()
	ns := newNS(t, "node")
	proc := startVPPIn(ctx, t, ns)
	open := func(grace time.Duration) *Dataplane {
		dp, err := New(ctx, Config{APISocket: proc.APISocket, StatsSocket: proc.StatsSocket, NetNSPath: ns.path, Kernel: KernelVeth,
			StateDir: stateDir(t), Grace: grace, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		return dp
	}
	before := ""
	dp1 := open(time.Minute)
	before = interfacesOf(t, dp1)
	vwire := func(n int) (*workload, *workload, *networkservice.Connection, *networkservice.Connection) {
		c, e := newWorkload(t, "kernel", "nsc", fmt.Sprintf("172.16.%d.1", 110+n)), newWorkload(t, "kernel", "nse", fmt.Sprintf("172.16.%d.2", 110+n))
		cc := ipCtx(c.addr, e.addr)
		return c, e, &networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-c", NetNSURL: "file://" + c.ns.path}), Context: cc, Payload: payload.IP},
			&networkservice.Connection{Mechanism: kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + e.ns.path}), Context: cc, Payload: payload.IP}
	}
	c1, e1, in1, out1 := vwire(1)
	_, _, in2, out2 := vwire(2)
	if err := dp1.Connect(ctx, "claimed", in1, out1); err != nil {
		t.Fatal(err)
	}
	if err := dp1.Connect(ctx, "stray", in2, out2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error { return c1.ping(t, e1.addr) })
	withBoth := interfacesOf(t, dp1)
	dp1.Close() // the forwarder stops; VPP keeps the vWires

	dp2 := open(time.Second)
	if err := dp2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dp2.Connect(ctx, "claimed", in1, out1); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, dp2); got != withBoth {
		t.Fatalf("taking the vWire back changed VPP:\n%s\nwas\n%s", got, withBoth)
	}
	eventually(t, 10*time.Second, func() error {
		if strings.Contains(interfacesOf(t, dp2), "vwire/in/stray") {
			return fmt.Errorf("unclaimed vWire still there:\n%s", interfacesOf(t, dp2))
		}
		return nil
	})
	if err := c1.ping(t, e1.addr); err != nil {
		t.Fatalf("claimed vWire broken by reconcile: %v", err)
	}
	if err := dp2.Disconnect(ctx, "claimed"); err != nil {
		t.Fatal(err)
	}
	if got := interfacesOf(t, dp2); got != before {
		t.Fatalf("VPP after close:\n%s\nbefore:\n%s", got, before)
	}
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// startVPPIn starts a VPP (VPP_BIN) in ns, its files in a directory of the
// test's, stopped when the test ends.
func startVPPIn(ctx context.Context, t testing.TB, ns itNS) *vppstart.Process {
	t.Helper()
	bin, plugins := needVPP(t)
	proc, err := vppstart.Start(ctx, vppstart.Config{Bin: bin, PluginPath: plugins, Dir: stateDir(t), NetNSPath: ns.path, PollSleepUsec: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(vppstart.DefaultStopTimeout) })
	return proc
}
