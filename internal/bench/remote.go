package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp"
)

// remoteService is the service of the remote group's endpoint.
const remoteService = "bench-remote"

// remoteVariant is one way to carry a remote vWire between the same pair
// of nodes.
type remoteVariant struct {
	name string // in the rows: "vxlan, kernel"...
	// vpp puts both nodes on the VPP dataplane; otherwise they run the
	// kernel dataplane with --wireguard wireguard.
	vpp       bool
	wireguard string
	// payload of the service: the VPP dataplane offers WIREGUARD first
	// for IP, so its VXLAN row carries ETHERNET.
	payload string
	// link is the kind of link (ip link type) the kernel dataplane makes
	// in node1's namespace for the vWire; log is what node1's forwarder
	// logs when it uses that WireGuard. Both empty on VPP.
	link, log string
	// vppIf starts the name of the tunnel interface node1's VPP makes
	// for the vWire (VPP only).
	vppIf string
}

// remoteVariants are the rows of the remote group, the baseline first.
var remoteVariants = []remoteVariant{
	{name: "vxlan, kernel", wireguard: "off", payload: "IP", link: "vxlan", log: "WireGuard switched off"},
	{name: "wireguard, kernel module", wireguard: "kernel", payload: "IP", link: "wireguard", log: "kernel WireGuard available"},
	{name: "wireguard, userspace", wireguard: "userspace", payload: "IP", link: "tun", log: "userspace WireGuard"},
	{name: "vxlan, VPP (ETHERNET payload)", vpp: true, payload: "ETHERNET", vppIf: "vxlan_tunnel"},
	{name: "wireguard, VPP", vpp: true, payload: "IP", vppIf: "wg"},
}

// Why a variant is not measured.
const (
	noKernelWireGuard = "not available: no wireguard kernel module"
	noVPP             = "not available: VPP_BIN not set"
	noIperf3          = "not available: iperf3 is not installed (apt-get install -y iperf3)"
)

// remoteCase is a variant and, when it cannot run here, why.
type remoteCase struct {
	remoteVariant
	skip string
}

// planRemote says which variants run: kernelWG is nil when the kernel has
// WireGuard (as the forwarder finds it), vppBin is VPP_BIN.
func planRemote(kernelWG error, vppBin string, haveIperf3 bool) []remoteCase {
	var out []remoteCase
	for _, v := range remoteVariants {
		c := remoteCase{remoteVariant: v}
		switch {
		case !haveIperf3:
			c.skip = noIperf3
		case v.vpp && vppBin == "":
			c.skip = noVPP
		case v.wireguard == "kernel" && kernelWG != nil:
			c.skip = noKernelWireGuard
		}
		out = append(out, c)
	}
	return out
}

// kernelWireGuard looks for the kernel's WireGuard as the kernel
// dataplane does: its generic netlink family.
func kernelWireGuard() error {
	_, err := netlink.GenlFamilyGet("wireguard")
	return err
}

// remoteResult is what one variant measured.
type remoteResult struct {
	remoteCase
	mbps float64
	up   []time.Duration // Request→vWire-up
	err  error
}

// remoteRows turns the results into rows: per variant its iperf3
// throughput and its Request→vWire-up p50 and p99, each next to the first
// variant's (kernel VXLAN) when that was measured; a variant that did not
// run or failed gives rows saying why.
func remoteRows(results []remoteResult) []Row {
	const group = GroupRemote
	var rows []Row
	var base *remoteResult
	if len(results) > 0 && results[0].skip == "" && results[0].err == nil {
		base = &results[0]
	}
	for i, r := range results {
		tp := "TCP across a remote vWire, " + r.name + " (iperf3)"
		up := "request→vWire-up, remote, " + r.name
		why := r.skip
		if r.err != nil {
			why = "failed: " + r.err.Error()
		}
		if why != "" {
			rows = append(rows, Skip(group, tp, why), Skip(group, up, why))
			continue
		}
		row := Row{Group: group, Name: tp, Value: r.mbps, Unit: "Mbit/s"}
		if base != nil && i > 0 {
			row = row.WithBaseline(base.name, base.mbps)
		}
		rows = append(rows, row)
		for _, p := range []float64{50, 99} {
			row := Row{Group: group, Name: fmt.Sprintf("%s, p%.0f", up, p), Value: Millis(Percentile(r.up, p)), Unit: "ms", Samples: len(r.up)}
			if base != nil && i > 0 {
				row = row.WithBaseline(base.name, Millis(Percentile(base.up, p)))
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// measureRemote measures every variant on a pair of nodes of its own
// (the same addresses and namespaces each time, one pair at a time):
// iperf3 across a vWire from a client on node1 to an endpoint on node2,
// then cfg.RemoteRequests Requests one after the other, each closed
// before the next.
func measureRemote(ctx context.Context, cfg Config, p *Progress) ([]Row, error) {
	_, lookErr := exec.LookPath("iperf3")
	cases := planRemote(kernelWireGuard(), cfg.VPPBin, lookErr == nil)
	var results []remoteResult
	var errs []error
	for _, c := range cases {
		r := remoteResult{remoteCase: c}
		switch {
		case c.skip != "":
		case ctx.Err() != nil:
			r.err = ctx.Err()
		default:
			r.mbps, r.up, r.err = measureRemoteVariant(ctx, cfg, c.remoteVariant, p)
			if r.err != nil {
				p.Done()
				p.Logf("remote %s failed: %v", c.name, r.err)
				errs = append(errs, fmt.Errorf("%s: %w", c.name, r.err))
			}
		}
		results = append(results, r)
	}
	return remoteRows(results), errors.Join(errs...)
}

// measureRemoteVariant builds a world with two nodes for v, measures it
// and removes the world.
func measureRemoteVariant(ctx context.Context, cfg Config, v remoteVariant, p *Progress) (mbps float64, up []time.Duration, err error) {
	w, err := NewWorld(cfg.Bin)
	if err != nil {
		return 0, nil, err
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	p.Stage(fmt.Sprintf("remote %s: starting two nodes", v.name), 0)
	o := meshOptions{WireGuard: v.wireguard}
	if v.vpp {
		o = meshOptions{VPPBin: cfg.VPPBin, VPPPluginPath: cfg.VPPPluginPath}
	}
	m, err := newMeshWith(ctx, w, 2, o)
	if err != nil {
		return 0, nil, fmt.Errorf("start the nodes: %w", err)
	}
	defer m.close()
	n1, n2 := m.nodes[0], m.nodes[1]
	if v.log != "" {
		if err := n1.proc.WaitLog(ctx, startTimeout, v.log); err != nil {
			return 0, nil, fmt.Errorf("node1's forwarder: %w", err)
		}
	}
	nscNS, err := w.Netns("rm-nsc")
	if err != nil {
		return 0, nil, err
	}
	epNS, err := w.Netns("rm-nse")
	if err != nil {
		return 0, nil, err
	}
	e := &endpoint{name: "nse-rm", service: remoteService, cidr: "172.16.62.0/24", ns: epNS, node: n2, args: []string{"--payload", v.payload}}
	if err := m.restartEndpoint(ctx, e); err != nil {
		return 0, nil, err
	}
	p.Stage(fmt.Sprintf("remote %s: iperf3 %v, %d Requests", v.name, cfg.Duration, cfg.RemoteRequests), cfg.RemoteRequests+1)
	conn, err := m.request(ctx, n1, nscNS, remoteService, "nsm-rm")
	if err != nil {
		return 0, nil, err
	}
	mbps, err = remoteThroughput(ctx, m, v, conn.GetContext().GetIpContext().GetDstIpAddrs(), nscNS, epNS, cfg.Duration)
	if cerr := m.closeConn(ctx, n1, conn); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, err
	}
	p.Step()
	up, err = sequentialRequests(ctx, m, n1, nscNS, remoteService, cfg.RemoteRequests, p)
	if err != nil {
		return 0, nil, err
	}
	p.Done()
	return mbps, up, nil
}

// remoteThroughput checks that the vWire to dst is up and made of the
// link v expects, and runs iperf3 across it.
func remoteThroughput(ctx context.Context, m *mesh, v remoteVariant, dstIPs []string, from, to *Netns, d time.Duration) (float64, error) {
	if len(dstIPs) == 0 {
		return 0, errors.New("the vWire has no destination address")
	}
	dst, _, _ := strings.Cut(dstIPs[0], "/")
	if err := pingUntilReply(ctx, from, dst, 30*time.Second); err != nil {
		return 0, err
	}
	if v.link != "" {
		out, err := m.nodes[0].ns.IP("-o", "link", "show", "type", v.link)
		if err != nil {
			return 0, err
		}
		if strings.TrimSpace(out) == "" {
			return 0, fmt.Errorf("node1 has no %s link: the vWire went another way", v.link)
		}
	}
	if v.vppIf != "" {
		if err := vppHasInterface(ctx, filepath.Join(m.w.Dir, m.nodes[0].name, "vpp", "api.sock"), v.vppIf); err != nil {
			return 0, fmt.Errorf("node1: %w", err)
		}
	}
	srv, err := startIperf3Server(ctx, m.w, to, "iperf3-remote")
	if err != nil {
		return 0, err
	}
	defer srv.Stop()
	return iperf3(ctx, tpPath{name: v.name, from: from, to: to, addr: dst}, d)
}

// vppHasInterface checks that the VPP serving apiSocket has an interface
// whose name starts with prefix.
func vppHasInterface(ctx context.Context, apiSocket, prefix string) error {
	conn, err := core.Connect(socketclient.NewVppClient(apiSocket))
	if err != nil {
		return fmt.Errorf("VPP at %s: connect: %w", apiSocket, err)
	}
	defer conn.Disconnect()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ifaces, err := vpp.NewClient(conn, nil, nil).ListInterfaces(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, prefix) {
			return nil
		}
		names = append(names, i.Name)
	}
	return fmt.Errorf("VPP has no %s* interface (%s): the vWire went another way", prefix, strings.Join(names, ", "))
}
