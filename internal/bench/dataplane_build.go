package bench

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/internal/tcbpf"
	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// Building the topologies: by vwire's dataplane and by hand, the traffic
// VPP's side of each, and the list of objects each builder made.

// build makes topo by vwire's dataplane (its Accept, Offer and Connect,
// what a forwarder does for a Request) or by plain VPP API calls making
// the same objects, and attaches the traffic VPP's memifs to it.
func (e *dpEnv) build(ctx context.Context, topo, by string) (*dpPath, error) {
	e.seq++
	path := &dpPath{ip: topo == TopoWireGuard || topo == TopoIPsec}
	files := [2]string{fmt.Sprintf("bdp%d-src", e.seq), fmt.Sprintf("bdp%d-dst", e.seq)}
	nsURL := "file://" + e.trafficNS.Path()
	var err error
	switch by {
	case BuiltByVwire:
		err = e.buildVwire(ctx, topo, path, files, nsURL)
	case BuiltByHand:
		err = e.buildHand(ctx, topo, path, files)
	}
	if err != nil {
		return path, err
	}
	for i, file := range files {
		var name string
		if i == 0 && kernelTopo(topo) {
			name, err = e.attachHost(ctx, path, kernelName(files))
		} else {
			name, err = e.attachTraffic(ctx, path, file, path.ip)
		}
		if err != nil {
			return path, err
		}
		if i == 0 {
			path.src = name
		} else {
			path.dst = name
		}
	}
	if topo == TopoChain {
		// CNF k takes hop k-1's far end and hop k's near end.
		hs := e.hops(topo, files)
		for k := 1; k < len(hs); k++ {
			if err := e.attachCNF(ctx, path, k, hs[k-1][1].file, hs[k][0].file); err != nil {
				return path, err
			}
		}
	}
	path.to = dpEndpoint
	if err := e.pingAddresses(ctx, path); err != nil {
		return path, err
	}
	if path.ip {
		// IP-mode frames come from ip4-input on the packet generator's
		// interface (its parser makes no bare IP for an interface's
		// output), routed out of src: each path its own destination.
		if err := e.pgInterface(ctx); err != nil {
			return path, err
		}
		path.to = netip.AddrFrom4([4]byte{172, 17, byte(e.seq >> 8), byte(e.seq)})
		route := fmt.Sprintf("ip route add %s/32 via %s", path.to, path.src)
		if _, err := e.traffic.cli(ctx, route); err != nil {
			return path, err
		}
		path.undo.push(func(ctx context.Context) {
			_, _ = e.traffic.cli(ctx, strings.Replace(route, " add ", " del ", 1))
		})
	}
	return path, nil
}

// pingAddresses gives the path's source and sink interfaces in the
// traffic VPP addresses of a subnet of their own, the sink's in an IP
// table of its own: a ping between them crosses the vWire there and back.
// (Interfaces deleted with the path take their addresses with them.)
func (e *dpEnv) pingAddresses(ctx context.Context, path *dpPath) error {
	e.seq++
	k := byte(e.seq)
	table := 1000 + e.seq
	path.pingTo = netip.AddrFrom4([4]byte{10, 200, k, 2})
	for _, c := range []string{
		fmt.Sprintf("ip table add %d", table),
		fmt.Sprintf("set interface ip table %s %d", path.dst, table),
		fmt.Sprintf("set interface ip address %s 10.200.%d.2/24", path.dst, k),
		fmt.Sprintf("set interface ip address %s 10.200.%d.1/24", path.src, k),
	} {
		if _, err := e.traffic.cli(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// kernelName is the name of the KERNEL side's interface in the traffic
// namespace (at most 15 bytes).
func kernelName(files [2]string) string { return strings.TrimSuffix(files[0], "-src") + "k" }

// memifEnd is a memif's socket file (abstract) and the namespace it is in.
type memifEnd struct {
	file string
	ns   *Netns
}

// hops are the memif→memif vWires of a local topology, in order: for
// memif one, from the source to the sink; for the chain ChainCNFs+1, from
// the source to the first CNF's input, from each CNF's output to the next
// one's input, and from the last CNF's output to the sink.
func (e *dpEnv) hops(topo string, files [2]string) [][2]memifEnd {
	ends := []memifEnd{{files[0], e.trafficNS}}
	if topo == TopoChain {
		prefix := strings.TrimSuffix(files[0], "-src")
		for k := 1; k <= ChainCNFs; k++ {
			ends = append(ends, memifEnd{fmt.Sprintf("%s-c%di", prefix, k), e.cnfNS}, memifEnd{fmt.Sprintf("%s-c%do", prefix, k), e.cnfNS})
		}
	}
	ends = append(ends, memifEnd{files[1], e.trafficNS})
	var out [][2]memifEnd
	for i := 0; i < len(ends); i += 2 {
		out = append(out, [2]memifEnd{ends[i], ends[i+1]})
	}
	return out
}

// attachCNF makes CNF k of a chain in the CNF VPP: a memif on each of its
// two socket files (the slave side, as the traffic VPP's), up, joined by
// cross-connects both ways: an L2 CNF passing every frame on.
func (e *dpEnv) attachCNF(ctx context.Context, path *dpPath, k int, in, out string) error {
	c := e.cnf
	var names [2]string
	for i, file := range []string{in, out} {
		e.seq++
		id := e.seq
		names[i] = fmt.Sprintf("memif%d/0", id)
		if _, err := c.cli(ctx, fmt.Sprintf("create memif socket id %d filename abstract:%s", id, file)); err != nil {
			return fmt.Errorf("CNF %d: %w", k, err)
		}
		path.undo.push(func(ctx context.Context) { _, _ = c.cli(ctx, fmt.Sprintf("delete memif socket id %d", id)) })
		if _, err := c.cli(ctx, fmt.Sprintf("create interface memif id 0 socket-id %d slave", id)); err != nil {
			return fmt.Errorf("CNF %d: %w", k, err)
		}
		name := names[i]
		path.undo.push(func(ctx context.Context) { _, _ = c.cli(ctx, "delete interface memif "+name) })
	}
	for _, cmd := range []string{
		"set interface l2 xconnect " + names[0] + " " + names[1],
		"set interface l2 xconnect " + names[1] + " " + names[0],
		"set interface state " + names[0] + " up",
		"set interface state " + names[1] + " up",
	} {
		if _, err := c.cli(ctx, cmd); err != nil {
			return fmt.Errorf("CNF %d: %w", k, err)
		}
	}
	return nil
}

// attachHost takes the KERNEL side's interface in the traffic namespace
// into the traffic VPP with af_packet, up, and returns its name.
func (e *dpEnv) attachHost(ctx context.Context, path *dpPath, ifname string) (string, error) {
	t := e.traffic
	if _, err := t.cli(ctx, "create host-interface name "+ifname); err != nil {
		return "", err
	}
	path.undo.push(func(ctx context.Context) { _, _ = t.cli(ctx, "delete host-interface name "+ifname) })
	name := "host-" + ifname
	if _, err := t.cli(ctx, "set interface state "+name+" up"); err != nil {
		return "", err
	}
	return name, nil
}

// pgInterface makes the packet generator's interface pg0, with IPv4 on,
// once.
func (e *dpEnv) pgInterface(ctx context.Context) error {
	if e.pgReady {
		return nil
	}
	for _, c := range []string{"create packet-generator interface pg0", "set interface ip address pg0 192.168.251.1/24", "set interface state pg0 up"} {
		if _, err := e.traffic.cli(ctx, c); err != nil {
			return err
		}
	}
	e.pgReady = true
	return nil
}

func dpConnContext() *networkservice.ConnectionContext {
	c, ep := dpClient.String(), dpEndpoint.String()
	return &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{c + "/32"}, DstIpAddrs: []string{ep + "/32"},
		SrcRoutes: []*networkservice.Route{{Prefix: ep + "/32"}}, DstRoutes: []*networkservice.Route{{Prefix: c + "/32"}},
	}}
}

// buildVwire makes the vWire the way the forwarders of a Request do: the
// client's node accepts the client's memif and offers onward, the
// endpoint's node accepts, offers to the endpoint and connects, then the
// client's node connects.
func (e *dpEnv) buildVwire(ctx context.Context, topo string, path *dpPath, files [2]string, nsURL string) error {
	pl := payload.Ethernet
	if path.ip {
		pl = payload.IP
	}
	cc := dpConnContext()
	conn := func(m *networkservice.Mechanism) *networkservice.Connection {
		return &networkservice.Connection{Mechanism: m, Context: cc, Payload: pl}
	}
	mk := func(i int) *networkservice.Mechanism {
		return memif.New(memif.Params{SocketFile: files[i], NetNSURL: nsURL})
	}
	idA, idB := fmt.Sprintf("bench-%d-a", e.seq), fmt.Sprintf("bench-%d-b", e.seq)
	n1 := e.duts[0]
	if kernelTopo(topo) {
		in := kernel.New(kernel.Params{Name: kernelName(files), NetNSURL: nsURL})
		if err := n1.dp.Connect(ctx, idA, conn(in), conn(mk(1))); err != nil {
			return fmt.Errorf("vWire: %w", err)
		}
		path.undo.push(func(ctx context.Context) { _ = n1.dp.Disconnect(ctx, idA) })
		return nil
	}
	if local(topo) {
		// One vWire per hop, as the forwarder makes one per Request of a
		// composition: the client's to the first CNF, each CNF's onward
		// Request to the next, the last one's to the endpoint.
		at := func(m memifEnd) *networkservice.Mechanism {
			return memif.New(memif.Params{SocketFile: m.file, NetNSURL: "file://" + m.ns.Path()})
		}
		for k, h := range e.hops(topo, files) {
			id := fmt.Sprintf("bench-%d-h%d", e.seq, k)
			if err := n1.dp.Connect(ctx, id, conn(at(h[0])), conn(at(h[1]))); err != nil {
				return fmt.Errorf("vWire %d: %w", k, err)
			}
			path.undo.push(func(ctx context.Context) { _ = n1.dp.Disconnect(ctx, id) })
		}
		return nil
	}
	n2 := e.duts[1]
	typ := map[string]string{TopoVXLAN: vxlan.Type, TopoWireGuard: wireguard.Type, TopoIPsec: ipsec.Type}[topo]
	c := conn(nil)
	in, err := n1.dp.Accept(ctx, idA, c, []*networkservice.Mechanism{mk(0)})
	if err != nil {
		return fmt.Errorf("accept the client: %w", err)
	}
	path.undo.push(func(ctx context.Context) { _ = n1.dp.Disconnect(ctx, idA) })
	offers, err := n1.dp.Offer(ctx, idA, c, true)
	if err != nil {
		return fmt.Errorf("offer onward: %w", err)
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == typ })
	if i < 0 {
		return fmt.Errorf("%s not offered (offers: %v)", typ, offers)
	}
	out, err := n2.dp.Accept(ctx, idB, c, offers[i:i+1])
	if err != nil {
		return fmt.Errorf("accept %s: %w", typ, err)
	}
	path.undo.push(func(ctx context.Context) { _ = n2.dp.Disconnect(ctx, idB) })
	local, err := n2.dp.Offer(ctx, idB, c, false)
	if err != nil {
		return fmt.Errorf("offer to the endpoint: %w", err)
	}
	j := slices.IndexFunc(local, func(m *networkservice.Mechanism) bool { return m.GetType() == memif.Type })
	if j < 0 {
		return fmt.Errorf("memif not offered to the endpoint (offers: %v)", local)
	}
	mp, err := memif.FromOffer(local[j])
	if err != nil {
		return err
	}
	mp.SocketFile, mp.NetNSURL = files[1], nsURL
	if err := n2.dp.Connect(ctx, idB, conn(out), conn(memif.New(mp))); err != nil {
		return fmt.Errorf("connect the endpoint's node: %w", err)
	}
	if err := n1.dp.Connect(ctx, idA, conn(in), conn(out)); err != nil {
		return fmt.Errorf("connect the client's node: %w", err)
	}
	// The client's memif is the one asked for.
	if p, err := memif.FromMechanism(in); err != nil || p.SocketFile != files[0] {
		return fmt.Errorf("the client's memif: socket file %q, want %q (%v)", p.SocketFile, files[0], err)
	}
	return nil
}

// buildHand makes the same VPP objects as vwire would, with plain API
// calls: memifs (master, abstract socket in the traffic namespace), for IP
// an IP table per memif with the far workload's address and a route to the
// near one, the tunnel (unnumbered to the uplink), MTUs, and the
// cross-connects both ways.
func (e *dpEnv) buildHand(ctx context.Context, topo string, path *dpPath, files [2]string) error {
	memifOn := func(d *dpDUT, file string, ns *Netns, far, near netip.Addr) (vpp.SwIfIndex, error) {
		var table uint32
		if path.ip {
			table = uint32(40000 + e.seq)
			t := vpp.IPTable{ID: table, Name: fmt.Sprintf("bench-hand-%d", e.seq)}
			if err := d.vc.CreateIPTable(ctx, t); err != nil {
				return 0, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteIPTable(ctx, t) })
		}
		sock, err := d.vc.CreateMemifSocket(ctx, "abstract:"+file+",netns_name="+ns.Path())
		if err != nil {
			return 0, err
		}
		path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteMemifSocket(ctx, sock) })
		idx, err := d.vc.CreateMemif(ctx, vpp.MemifSpec{SocketID: sock, IP: path.ip})
		if err != nil {
			return 0, err
		}
		path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteMemif(ctx, idx) })
		if path.ip {
			if err := d.vc.SetInterfaceTable(ctx, idx, table, false); err != nil {
				return 0, err
			}
			if err := d.vc.AddInterfaceAddress(ctx, idx, netip.PrefixFrom(far, 32)); err != nil {
				return 0, err
			}
			r := vpp.Route{Table: table, Prefix: netip.PrefixFrom(near, 32), Via: idx}
			if err := d.vc.CreateRoute(ctx, r); err != nil {
				return 0, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteRoute(ctx, r) })
		}
		return idx, e.upWithMTU(ctx, d, idx)
	}
	xc := func(d *dpDUT, a, b vpp.SwIfIndex, toB, toA netip.Addr) error {
		if !path.ip {
			for _, x := range []vpp.L2XC{{Rx: a, Tx: b}, {Rx: b, Tx: a}} {
				if err := d.vc.CreateL2XC(ctx, x); err != nil {
					return err
				}
				path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteL2XC(ctx, x.Rx) })
			}
			return nil
		}
		for _, x := range []vpp.L3XC{{Rx: a, Tx: b, NextHop: toB}, {Rx: b, Tx: a, NextHop: toA}} {
			if err := d.vc.CreateL3XC(ctx, x); err != nil {
				return err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteL3XC(ctx, x.Rx, false) })
		}
		return nil
	}

	n1 := e.duts[0]
	if kernelTopo(topo) {
		// The kernel topology's baseline makes vwire's objects (a tap,
		// or a VLAN of a trunk); the trunk-cost row's makes a plain
		// af_packet veth instead, to show what the trunk costs.
		handKernel := e.handTrunkSide
		switch {
		case e.kernelSide == KernelTap:
			handKernel = e.handTap
		case topo == TopoTrunkCost:
			handKernel = e.handVeth
		}
		a, err := handKernel(ctx, n1, path, kernelName(files))
		if err != nil {
			return err
		}
		b, err := memifOn(n1, files[1], e.trafficNS, dpClient, dpEndpoint)
		if err != nil {
			return err
		}
		return xc(n1, a, b, dpEndpoint, dpClient)
	}
	if local(topo) {
		for _, h := range e.hops(topo, files) {
			a, err := memifOn(n1, h[0].file, h[0].ns, dpEndpoint, dpClient)
			if err != nil {
				return err
			}
			b, err := memifOn(n1, h[1].file, h[1].ns, dpClient, dpEndpoint)
			if err != nil {
				return err
			}
			if err := xc(n1, a, b, dpEndpoint, dpClient); err != nil {
				return err
			}
		}
		return nil
	}
	tunnels, err := e.handTunnels(ctx, topo, path)
	if err != nil {
		return err
	}
	for i, d := range e.duts {
		near, far := dpClient, dpEndpoint
		if i == 1 {
			near, far = far, near
		}
		m, err := memifOn(d, files[i], e.trafficNS, far, near)
		if err != nil {
			return err
		}
		if err := xc(d, m, tunnels[i], far, near); err != nil {
			return err
		}
	}
	return nil
}

// handVeth makes a veth pair with its workload end, wl, in the traffic
// namespace and the other in the node's, both up with the vWire's MTU (the
// node's end without IPv6, so the kernel sends nothing of its own into
// VPP), and takes the node's end into VPP with af_packet, as vwire does
// where VPP cannot make taps.
func (e *dpEnv) handVeth(ctx context.Context, d *dpDUT, path *dpPath, wl string) (vpp.SwIfIndex, error) {
	host := wl + "h"
	ns := d.ns
	mtu := strconv.Itoa(dpMTU)
	if _, err := ns.IP("link", "add", host, "mtu", mtu, "type", "veth", "peer", "name", wl, "mtu", mtu, "netns", e.trafficNS.Name); err != nil {
		return 0, err
	}
	path.undo.push(func(context.Context) { _, _ = ns.IP("link", "del", host) })
	for _, args := range [][]string{{"link", "set", host, "addrgenmode", "none"}, {"link", "set", host, "up"}} {
		if _, err := ns.IP(args...); err != nil {
			return 0, err
		}
	}
	if _, err := e.trafficNS.IP("link", "set", wl, "up"); err != nil {
		return 0, err
	}
	idx, err := d.vc.CreateAfPacket(ctx, vpp.AfPacketSpec{HostIfName: host, TxFrames: dpAfPacketTxFrames})
	if err != nil {
		return 0, err
	}
	path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteAfPacket(ctx, host) })
	return idx, e.upWithMTU(ctx, d, idx)
}

// handTrunk is the hand-made baseline's KERNEL trunk on a node: the
// objects of vwire's (forwarder/vpp/trunk.go) under names of its own, made
// once, as vwire makes its trunk once, and removed with the run.
type handTrunk struct {
	idx  vpp.SwIfIndex   // the af_packet interface on the VPP end
	nl   *netlink.Handle // netlink in the node's namespace
	link netlink.Link    // the Linux end, where the tc filters are
	next uint16          // the next VLAN to give
}

// Names of the hand-made trunk's ends, and forwarder/vpp's trunkMTU and
// trunkTxFrames, which it copies.
const (
	dpHandTrunk       = "bdptrunk"
	dpHandTrunkPort   = "bdptrunk-l"
	dpTrunkMTU        = 9000
	dpTrunkTxFrames   = 256
	dpHandTrunkFirstV = 100 // VLANs far from vwire's (they would not clash: another trunk)
)

// handTrunkOn makes node d's hand-made trunk, the first time: a veth pair
// with both ends' MTU at the trunk's and no IPv6 link-local address, a
// clsact qdisc on the Linux end (tcbpf, the code vwire uses), and the
// af_packet interface on the other end (VPP's default rx and tx rings but
// vwire's TX ring size) with the trunk's MTU, up.
func (e *dpEnv) handTrunkOn(ctx context.Context, d *dpDUT) (_ *handTrunk, err error) {
	if d.trunk != nil {
		return d.trunk, nil
	}
	ns := d.ns
	mtu := strconv.Itoa(dpTrunkMTU)
	if _, err := ns.IP("link", "add", dpHandTrunkPort, "mtu", mtu, "type", "veth", "peer", "name", dpHandTrunk, "mtu", mtu); err != nil {
		return nil, err
	}
	t := &handTrunk{idx: vpp.NoInterface, next: dpHandTrunkFirstV}
	defer func() {
		if err != nil {
			t.remove(d)
		}
	}()
	for _, l := range []string{dpHandTrunkPort, dpHandTrunk} {
		for _, args := range [][]string{{"link", "set", l, "addrgenmode", "none"}, {"link", "set", l, "up"}} {
			if _, err := ns.IP(args...); err != nil {
				return t, err
			}
		}
	}
	h, err := netns.GetFromPath(ns.Path())
	if err != nil {
		return t, fmt.Errorf("%s: open netns: %w", ns.Label, err)
	}
	defer h.Close()
	if t.nl, err = netlink.NewHandleAt(h); err != nil {
		return t, fmt.Errorf("%s: netlink: %w", ns.Label, err)
	}
	if t.link, err = t.nl.LinkByName(dpHandTrunkPort); err != nil {
		return t, fmt.Errorf("%s: %s: %w", ns.Label, dpHandTrunkPort, err)
	}
	if err := tcbpf.AddClsact(t.nl, t.link); err != nil {
		return t, err
	}
	if t.idx, err = d.vc.CreateAfPacket(ctx, vpp.AfPacketSpec{HostIfName: dpHandTrunk, TxFrames: dpTrunkTxFrames}); err != nil {
		return t, err
	}
	if err := d.vc.SetInterfaceMTU(ctx, t.idx, dpTrunkMTU); err != nil {
		return t, err
	}
	d.trunk = t
	e.stops = append(e.stops, func() { t.remove(d) })
	return t, nil
}

// remove deletes what of the trunk was made.
func (t *handTrunk) remove(d *dpDUT) {
	if t.idx != vpp.NoInterface {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = d.vc.DeleteAfPacket(ctx, dpHandTrunk)
		cancel()
		t.idx = vpp.NoInterface
	}
	_, _ = d.ns.IP("link", "del", dpHandTrunkPort)
	if t.nl != nil {
		t.nl.Close()
		t.nl = nil
	}
}

// handTrunkSide makes a KERNEL side as vwire's dataplane does without a
// tap: a veth pair (its workload end, wl, in the traffic namespace, the
// other end without IPv6 and with the vWire's MTU) joined to the node's
// trunk in a VLAN of its own by the same two tc programs (tcbpf), and
// VPP's dot1q sub-interface of the trunk for that VLAN, popping its tag,
// with the vWire's MTU, up.
func (e *dpEnv) handTrunkSide(ctx context.Context, d *dpDUT, path *dpPath, wl string) (vpp.SwIfIndex, error) {
	t, err := e.handTrunkOn(ctx, d)
	if err != nil {
		return 0, fmt.Errorf("hand-made trunk: %w", err)
	}
	vlan := t.next
	if vlan > tcbpf.MaxVLAN {
		return 0, errors.New("hand-made trunk: out of VLANs")
	}
	t.next++
	host := wl + "h"
	ns := d.ns
	mtu := strconv.Itoa(dpMTU)
	if _, err := ns.IP("link", "add", host, "mtu", mtu, "type", "veth", "peer", "name", wl, "mtu", mtu, "netns", e.trafficNS.Name); err != nil {
		return 0, err
	}
	path.undo.push(func(context.Context) { _, _ = ns.IP("link", "del", host) })
	if _, err := ns.IP("link", "set", host, "addrgenmode", "none"); err != nil {
		return 0, err
	}
	l, err := t.nl.LinkByName(host)
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", ns.Label, host, err)
	}
	path.undo.push(func(context.Context) { _ = tcbpf.Leave(t.nl, t.link, vlan) })
	if err := tcbpf.Join(t.nl, l, t.link, vlan, host); err != nil {
		return 0, err
	}
	if _, err := ns.IP("link", "set", host, "up"); err != nil {
		return 0, err
	}
	if _, err := e.trafficNS.IP("link", "set", wl, "up"); err != nil {
		return 0, err
	}
	idx, err := d.vc.CreateVlanSubif(ctx, t.idx, vlan)
	if err != nil {
		return 0, err
	}
	path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteSubif(ctx, idx) })
	if err := d.vc.SetVlanTagPop(ctx, idx); err != nil {
		return 0, err
	}
	return idx, e.upWithMTU(ctx, d, idx)
}

// handTap makes a tap whose host end, wl, is in the traffic namespace,
// up with the vWire's MTU, as vwire does where /dev/vhost-net exists.
// (Not run here: this host has no /dev/vhost-net.)
func (e *dpEnv) handTap(ctx context.Context, d *dpDUT, path *dpPath, wl string) (vpp.SwIfIndex, error) {
	idx, err := d.vc.CreateTap(ctx, vpp.TapSpec{HostIfName: wl, HostNamespace: e.trafficNS.Path(), HostMTU: dpMTU})
	if err != nil {
		return 0, err
	}
	path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteTap(ctx, idx) })
	if _, err := e.trafficNS.IP("link", "set", wl, "up"); err != nil {
		return 0, err
	}
	return idx, e.upWithMTU(ctx, d, idx)
}

// handTunnels makes the tunnel of topo on both nodes, up, and returns its
// interfaces.
func (e *dpEnv) handTunnels(ctx context.Context, topo string, path *dpPath) ([2]vpp.SwIfIndex, error) {
	var idx [2]vpp.SwIfIndex
	switch topo {
	case TopoVXLAN:
		for i, d := range e.duts {
			t := vpp.VxlanTunnel{Src: d.hand, Dst: e.duts[1-i].hand, Port: 4789, VNI: uint32(4000 + e.seq)}
			x, err := d.vc.CreateVxlanTunnel(ctx, t)
			if err != nil {
				return idx, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteVxlanTunnel(ctx, t) })
			idx[i] = x
		}
	case TopoWireGuard:
		var priv [2]*ecdh.PrivateKey
		for i := range priv {
			k, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				return idx, err
			}
			priv[i] = k
		}
		port := func(i int) uint16 { return uint16(52000 + 2*e.seq + i) }
		for i, d := range e.duts {
			spec := vpp.WireguardInterfaceSpec{Src: d.hand, Port: port(i)}
			copy(spec.PrivateKey[:], priv[i].Bytes())
			x, err := d.vc.CreateWireguardInterface(ctx, spec)
			if err != nil {
				return idx, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteWireguardInterface(ctx, x) })
			peer := vpp.WireguardPeerSpec{Interface: x, Endpoint: e.duts[1-i].hand, Port: port(1 - i),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}
			copy(peer.PublicKey[:], priv[1-i].PublicKey().Bytes())
			pi, err := d.vc.CreateWireguardPeer(ctx, peer)
			if err != nil {
				return idx, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteWireguardPeer(ctx, pi) })
			idx[i] = x
		}
	case TopoIPsec:
		// One SA each way, from random keys: what the keys come from does
		// not change what VPP does per packet.
		var sas [2]vpp.SA
		for i := range sas {
			var b [40]byte
			if _, err := rand.Read(b[:]); err != nil {
				return idx, err
			}
			spi := binary.BigEndian.Uint32(b[32:36])&0x7fffffff | 0x100
			sas[i] = vpp.SA{ID: spi, SPI: spi, Salt: binary.BigEndian.Uint32(b[36:]), UDPSrcPort: 4500, UDPDstPort: 4500}
			copy(sas[i].Key[:], b[:32])
		}
		for i, d := range e.duts {
			out, in := sas[i], sas[1-i] // node i sends with sas[i]
			in.Inbound = true
			for _, sa := range []vpp.SA{out, in} {
				if err := d.vc.CreateSA(ctx, sa); err != nil {
					return idx, err
				}
				path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteSA(ctx, sa.ID) })
			}
			x, err := d.vc.CreateIpipTunnel(ctx, vpp.IpipTunnel{Src: d.hand, Dst: e.duts[1-i].hand})
			if err != nil {
				return idx, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteIpipTunnel(ctx, x) })
			if err := d.vc.CreateTunnelProtection(ctx, vpp.TunnelProtection{Interface: x, Out: out.ID, In: []uint32{in.ID}}); err != nil {
				return idx, err
			}
			path.undo.push(func(ctx context.Context) { _ = d.vc.DeleteTunnelProtection(ctx, x) })
			idx[i] = x
		}
	default:
		return idx, fmt.Errorf("topology %q has no tunnel", topo)
	}
	for i, d := range e.duts {
		if path.ip {
			if err := d.vc.SetInterfaceUnnumbered(ctx, idx[i], d.uplink); err != nil {
				return idx, err
			}
		}
		if err := e.upWithMTU(ctx, d, idx[i]); err != nil {
			return idx, err
		}
	}
	return idx, nil
}

var ifKind = regexp.MustCompile(`^[a-z_-]+`)

// objects lists, node by node, the interfaces each builder made (vwire's
// by their tags, the hand-made ones untagged), with their MTU and state
// and what they are cross-connected to: what a packet meets on the path.
func (e *dpEnv) objects(ctx context.Context, topo string) (TopologyObjects, error) {
	var v, h []string
	for n, d := range e.duts {
		ifs, err := d.vc.ListInterfaces(ctx)
		if err != nil {
			return TopologyObjects{}, err
		}
		l2, err := d.vc.ListL2XCs(ctx)
		if err != nil {
			return TopologyObjects{}, err
		}
		l3, err := d.vc.ListL3XCs(ctx)
		if err != nil {
			return TopologyObjects{}, err
		}
		kind := map[vpp.SwIfIndex]string{}
		for _, i := range ifs {
			kind[i.Index] = ifKind.FindString(i.Name)
			if strings.HasPrefix(i.Name, "host-") {
				kind[i.Index] = "af_packet" // host-<its Linux name>
			}
			if strings.Contains(i.Name, ".") {
				kind[i.Index] += "_vlan_subif" // <parent>.<VLAN>: vwire's KERNEL trunk
			}
		}
		xc := map[vpp.SwIfIndex][]string{}
		for _, x := range l2 {
			xc[x.Rx] = append(xc[x.Rx], "l2xc→"+kind[x.Tx])
		}
		for _, x := range l3 {
			xc[x.Rx] = append(xc[x.Rx], "l3xc→"+kind[x.Tx])
		}
		var nv, nh []string
		for _, i := range ifs {
			if i.Name == "local0" || i.Name == "host-"+dpUplinkName || i.Name == "host-"+dpHandTrunk {
				continue
			}
			tag, ok := vpp.ParseTag(i.Tag)
			if ok && tag.Role == "uplink" {
				continue // the node's own (its KERNEL trunk), on no vWire's path
			}
			sig := fmt.Sprintf("%s(mtu %d, up %v, %s)", kind[i.Index], i.MTU, i.AdminUp, strings.Join(xc[i.Index], " "))
			if ok {
				nv = append(nv, sig)
			} else {
				nh = append(nh, sig)
			}
		}
		slices.Sort(nv)
		slices.Sort(nh)
		v = append(v, fmt.Sprintf("node%d: %s", n+1, strings.Join(nv, ", ")))
		h = append(h, fmt.Sprintf("node%d: %s", n+1, strings.Join(nh, ", ")))
	}
	if local(topo) {
		v, h = v[:1], h[:1]
	}
	o := TopologyObjects{Topology: topo, Vwire: strings.Join(v, "; "), Hand: strings.Join(h, "; ")}
	o.Same = o.Vwire == o.Hand
	return o, nil
}

func (e *dpEnv) upWithMTU(ctx context.Context, d *dpDUT, idx vpp.SwIfIndex) error {
	if err := d.vc.SetInterfaceMTU(ctx, idx, dpMTU); err != nil {
		return err
	}
	return d.vc.SetInterfaceUp(ctx, idx)
}

// setRxMode puts the rx queues of every memif and af_packet interface of
// the VPPs under test in the mode asked for.
func (e *dpEnv) setRxMode(ctx context.Context) error {
	for _, d := range e.duts {
		ifs, err := d.vc.ListInterfaces(ctx)
		if err != nil {
			return err
		}
		for _, i := range ifs {
			// A sub-interface (vwire's KERNEL side on its trunk) has
			// no queues of its own: its parent's are set.
			if (strings.HasPrefix(i.Name, "memif") || strings.HasPrefix(i.Name, "host-")) && !strings.Contains(i.Name, ".") {
				if _, err := d.cli(ctx, "set interface rx-mode "+i.Name+" "+e.cfg.RxMode); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// attachTraffic makes a slave memif in the traffic VPP on the abstract
// socket file (its namespace's), up, and returns its name.
func (e *dpEnv) attachTraffic(ctx context.Context, path *dpPath, file string, ip bool) (string, error) {
	e.seq++
	id := e.seq
	name := fmt.Sprintf("memif%d/0", id)
	mode := ""
	if ip {
		mode = " mode ip"
	}
	t := e.traffic
	if _, err := t.cli(ctx, fmt.Sprintf("create memif socket id %d filename abstract:%s", id, file)); err != nil {
		return "", err
	}
	path.undo.push(func(ctx context.Context) { _, _ = t.cli(ctx, fmt.Sprintf("delete memif socket id %d", id)) })
	if _, err := t.cli(ctx, fmt.Sprintf("create interface memif id 0 socket-id %d slave%s", id, mode)); err != nil {
		return "", err
	}
	path.undo.push(func(ctx context.Context) { _, _ = t.cli(ctx, "delete interface memif "+name) })
	if _, err := t.cli(ctx, "set interface state "+name+" up"); err != nil {
		return "", err
	}
	return name, nil
}
