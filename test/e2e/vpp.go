package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/forwarder/vpp/vppstart"
)

// Meshes on the VPP dataplane. Each node runs its own VPP, started by the
// harness as a process of the node (as vpp.service or the Kubernetes
// manifest's vpp container do on a real node), and the node's forwarder
// attaches to it through its API socket with eth0 as the uplink. A
// forwarder killed or restarted therefore leaves VPP, and the vWires in it,
// running.

// VPPEnv is the VPP to run, from VPP_BIN and VPP_PLUGIN_PATH; Skip says
// why there is none.
type VPPEnv struct {
	Bin, PluginPath string
	Skip            string
}

// LookupVPP reads VPPEnv from the environment.
func LookupVPP() VPPEnv {
	bin := os.Getenv("VPP_BIN")
	if bin == "" {
		return VPPEnv{Skip: "VPP_BIN not set: the VPP dataplane's suites need a VPP 25.10 binary (and VPP_PLUGIN_PATH); `make test-vpp` runs them"}
	}
	if _, err := os.Stat(bin); err != nil {
		return VPPEnv{Skip: fmt.Sprintf("VPP_BIN=%s: %v", bin, err)}
	}
	return VPPEnv{Bin: bin, PluginPath: os.Getenv("VPP_PLUGIN_PATH")}
}

// vppConfig is what the harness adds to each node's VPP configuration:
// nothing, so VPP runs on its main thread alone. With a worker, a release
// build of VPP aborts ("worker thread deadlock") when its worker misses a
// barrier for 1 s, and on this two-core machine, shared by two VPPs (each
// pinning its worker to one core and its main thread to the other) and
// every other test run, workers went without CPU that long (about 8% of a
// core under a load average of 25): aborts with no af_packet livelock
// possible (forwarder/vpp/README.md, "The KERNEL trunk"). Without a worker
// there is no barrier to miss; a starved main thread is only slow.
const vppConfig = ""

// vppHeap is each node's VPP main heap. The full soak on VPP ran
// vppstart's default 512M out of heap (1,500 IP tables on node1 at its
// peak, before sides shared tables; and replies of dumps queued in the
// heap). 2G leaves room; it is faulted in as used.
const vppHeap = "2G"

// vppDir is node n's VPP state directory: its config, sockets and log.
func (n *MeshNode) vppDir() string { return filepath.Join(n.mesh.Lab.Dir, n.Name, "vpp") }

// VPPAPISocket is the binary API socket of node n's VPP.
func (n *MeshNode) VPPAPISocket() string { return filepath.Join(n.vppDir(), "api.sock") }

// StartVPP starts node n's VPP and waits until its API socket serves.
func (n *MeshNode) StartVPP() *Proc {
	m := n.mesh
	m.Lab.T.Helper()
	conf, err := vppstart.WriteConfig(vppstart.Config{
		Bin: m.Opts.VPP.Bin, PluginPath: m.Opts.VPP.PluginPath, Dir: n.vppDir(), Extra: vppConfig, MainHeapSize: vppHeap,
		// The main thread only serves the API and the CLI: it need not
		// spin. Both nodes' main threads are pinned to one core, and
		// their workers to the other; two spinning mains leave that core
		// to nobody else.
		PollSleepUsec: 100})
	if err != nil {
		m.Lab.T.Fatal(err)
	}
	for _, s := range []string{"api.sock", "stats.sock", "cli.sock"} {
		_ = os.Remove(filepath.Join(n.vppDir(), s)) // a previous VPP's
	}
	n.VPP = m.Lab.StartProgram(n.Netns, n.Name+"-vpp", m.Opts.VPP.Bin, "-c", conf)
	WaitUnixSocket(m.Lab.T, n.VPP, n.VPPAPISocket())
	return n.VPP
}

// OnVPP reports whether node n runs the VPP dataplane.
func (n *MeshNode) OnVPP() bool {
	o := n.mesh.Opts
	if o.VPP.Bin == "" {
		return false
	}
	if len(o.VPPNodes) == 0 {
		return true
	}
	return slices.ContainsFunc(o.VPPNodes, func(i int) bool { return i < len(n.mesh.Nodes) && n.mesh.Nodes[i] == n })
}

// dataplaneFlags are the forwarder's flags for the node's dataplane.
func (n *MeshNode) dataplaneFlags() []string {
	if !n.OnVPP() {
		return []string{"--dataplane", "kernel", "--wireguard", n.mesh.Opts.WireGuard}
	}
	return []string{"--dataplane", "vpp", "--vpp-api-socket", n.VPPAPISocket(), "--uplink", NodeDev}
}

// VPPObjects lists what node n's VPP holds, one line per object, sorted:
// interfaces by kind and tag (the instance numbers VPP gives a rebuilt
// interface may differ), IP tables by name, cross-connects by their
// interfaces, memif sockets, WireGuard peers. Two inventories are equal
// when VPP holds the same objects for the same vWires.
func (n *MeshNode) VPPObjects(ctx context.Context) ([]string, error) {
	conn, err := core.Connect(socketclient.NewVppClient(n.VPPAPISocket()))
	if err != nil {
		return nil, fmt.Errorf("%s VPP: connect: %w", n.Name, err)
	}
	defer conn.Disconnect()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := vpp.NewClient(conn, nil, nil)

	ifaces, err := c.ListInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	byIndex := map[vpp.SwIfIndex]string{}
	var out []string
	for _, i := range ifaces {
		kind := strings.TrimRight(i.Name, "0123456789/")
		if strings.HasPrefix(i.Name, "host-") {
			kind = "host" // af_packet: named after the veth, which carries the connection id
		}
		name := kind + " " + i.Tag
		if i.Tag == "" {
			name = i.Name // VPP's own: local0, a loopback
		}
		byIndex[i.Index] = name
		out = append(out, "interface "+name)
	}
	tables, err := c.ListIPTables(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		out = append(out, fmt.Sprintf("table ip6=%v %s", t.IP6, t.Name))
	}
	l2, err := c.ListL2XCs(ctx)
	if err != nil {
		return nil, err
	}
	for _, x := range l2 {
		out = append(out, "l2xc "+byIndex[x.Rx]+" -> "+byIndex[x.Tx])
	}
	l3, err := c.ListL3XCs(ctx)
	if err != nil {
		return nil, err
	}
	for _, x := range l3 {
		out = append(out, fmt.Sprintf("l3xc ip6=%v %s -> %s", x.IP6, byIndex[x.Rx], byIndex[x.Tx]))
	}
	socks, err := c.ListMemifSockets(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range socks {
		out = append(out, "memif-socket "+s.Filename)
	}
	peers, err := c.ListWireguardPeers(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		out = append(out, "wireguard-peer on "+byIndex[p.Interface])
	}
	slices.Sort(out)
	return out, nil
}

// VPPSnapshot is every node's VPP inventory.
type VPPSnapshot map[string][]string

// VPPSnapshot takes the inventory of every node's VPP (empty on a kernel
// mesh).
func (m *Mesh) VPPSnapshot() (VPPSnapshot, error) {
	s := VPPSnapshot{}
	if m.Opts.VPP.Bin == "" {
		return s, nil
	}
	for _, n := range m.Nodes {
		if !n.OnVPP() {
			continue
		}
		objs, err := n.VPPObjects(context.Background())
		if err != nil {
			return nil, err
		}
		s[n.Name] = objs
	}
	return s, nil
}

// MustVPPSnapshot is VPPSnapshot that fails the test on error.
func (m *Mesh) MustVPPSnapshot() VPPSnapshot {
	m.Lab.T.Helper()
	s, err := m.VPPSnapshot()
	if err != nil {
		m.Lab.T.Fatal(err)
	}
	return s
}

// Diff lists what is in now but not in s ("+ node: object") and what is
// in s but not in now ("- node: object"), duplicates counted.
func (s VPPSnapshot) Diff(now VPPSnapshot) []string {
	var diff []string
	nodes := slices.Collect(maps.Keys(s))
	for n := range now {
		if _, ok := s[n]; !ok {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	for _, node := range nodes {
		left := slices.Clone(s[node])
		for _, o := range now[node] {
			if i := slices.Index(left, o); i >= 0 {
				left = slices.Delete(left, i, i+1)
			} else {
				diff = append(diff, "+ "+node+": "+o)
			}
		}
		for _, o := range left {
			diff = append(diff, "- "+node+": "+o)
		}
	}
	return diff
}

// WaitNoVPPLeak waits until every node's VPP holds what it held in before.
func (m *Mesh) WaitNoVPPLeak(timeout time.Duration, before VPPSnapshot) {
	m.Lab.T.Helper()
	if m.Opts.VPP.Bin == "" {
		return
	}
	Eventually(m.Lab.T, timeout, "every VPP holds the objects it held before the scenario", func() error {
		now, err := m.VPPSnapshot()
		if err != nil {
			return err
		}
		if d := before.Diff(now); len(d) > 0 {
			if len(d) > 20 {
				d = append(d[:20], fmt.Sprintf("... and %d more", len(d)-20))
			}
			return fmt.Errorf("VPP objects differ:\n\t%s", strings.Join(d, "\n\t"))
		}
		return nil
	})
}

// ReportVPPHang logs, when the test has failed, each node VPP that exited
// or no longer answers its API: a VPP that aborted or hung (see "The KERNEL
// trunk" in forwarder/vpp/README.md) looks from outside like vWires that stop
// carrying traffic and forwarders that cannot reach VPP.
func (m *Mesh) ReportVPPHang() {
	t := m.Lab.T
	if !t.Failed() || m.Opts.VPP.Bin == "" {
		return
	}
	for _, n := range m.Nodes {
		if n.VPP == nil {
			continue
		}
		if err, ok := n.VPP.Wait(0); ok {
			t.Logf("%s's VPP %s (its output is above; \"worker thread deadlock\" means its worker missed a barrier for 1 s: starved of CPU, or spinning, see forwarder/vpp/README.md); last %d lines of its own log:\n%s",
				n.Name, vppstart.DescribeExit(err), vppstart.LogTailLines, vppstart.TailFile(filepath.Join(n.vppDir(), "vpp.log"), vppstart.LogTailLines))
			continue
		}
		// Whether a VPP that does not answer is starved by the host, busy
		// on its own work, blocked in the kernel or idle.
		if s, err := vppstart.SampleSched(context.Background(), n.VPP.Pid(), time.Second); err != nil {
			t.Logf("%s's VPP: %v", n.Name, err)
		} else {
			t.Logf("%s's VPP threads: %s", n.Name, s)
		}
		answered := make(chan error, 1)
		go func() {
			_, err := n.VPPObjects(context.Background())
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				t.Logf("%s's VPP: %v", n.Name, err)
			}
		case <-time.After(5 * time.Second):
			t.Logf("%s's VPP does not answer its API within 5 s: hung (see \"The KERNEL trunk\" in forwarder/vpp/README.md)", n.Name)
		}
	}
}
