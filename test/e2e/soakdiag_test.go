package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/binapi/wireguard"
	"go.fd.io/govpp/core"
)

// What a failed soak keeps to find the cause by: each forwarder's VPP
// metrics (vwire_vpp_*: the API latency per message, errors, connection
// events, health-check misses) and each VPP's view of its interfaces,
// cross-connects and error counters, written to files in the lab's
// directory (kept with VWIRE_E2E_KEEP=1).

// soakVPPShows are the VPP CLI commands whose output a failed soak keeps.
var soakVPPShows = []string{
	"show interface", "show interface address", "show hardware-interfaces brief",
	"show l3xc", "show mode", "show ip fib summary", "show errors", "show memory main-heap",
	"show ip neighbors", "show ip6 neighbors",
	// Its threads, its API rings (a full ring: replies VPP cannot queue)
	// and clients, its buffers and the Unix errors it met.
	"show threads", "show api ring-stats", "show api clients", "show buffers", "show unix errors",
}

// keepSoakDiagnostics keeps those when
// the test has failed. It runs while the mesh still runs (registered
// after it, so before its teardown).
func keepSoakDiagnostics(m *Mesh) {
	t := m.Lab.T
	if !t.Failed() {
		return
	}
	for _, n := range m.Nodes {
		if text, err := rawMetrics(n.Netns, forwarderMetrics, "vwire_vpp_"); err != nil {
			t.Logf("%s: forwarder metrics: %v", n.Name, err)
		} else {
			keepFile(t, m.Lab, n.Name+"-forwarder-metrics.txt", text)
		}
		if n.VPP == nil || n.VPP.Exited() {
			continue
		}
		var b strings.Builder
		for _, cmd := range soakVPPShows {
			out, err := vppCLI(n, cmd)
			fmt.Fprintf(&b, "### %s\n%s\n", cmd, out)
			if err != nil {
				fmt.Fprintf(&b, "(error: %v)\n", err)
				break
			}
		}
		keepFile(t, m.Lab, n.Name+"-vpp-show.txt", b.String())
	}
}

func keepFile(t interface{ Logf(string, ...any) }, l *Lab, name, text string) {
	path := filepath.Join(l.Dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Logf("keep %s: %v", name, err)
		return
	}
	t.Logf("kept %s", path)
}

// vppCLI runs one CLI command on node n's VPP.
func vppCLI(n *MeshNode, cmd string) (string, error) {
	conn, err := core.Connect(socketclient.NewVppClient(n.VPPAPISocket()))
	if err != nil {
		return "", fmt.Errorf("%s VPP: connect: %w", n.Name, err)
	}
	defer conn.Disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reply, err := vlib.NewServiceClient(conn).CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("%s VPP: %q: %w", n.Name, cmd, err)
	}
	return reply.Reply, nil
}

// rawMetrics returns the lines of a process's /metrics whose names start
// with prefix.
func rawMetrics(ns *Netns, addr, prefix string) (string, error) {
	conn, err := inNetns(ns, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
	if err != nil {
		return "", fmt.Errorf("%s: metrics at %s: %w", ns.Label, addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("%s: metrics at %s: %w", ns.Label, addr, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String(), sc.Err()
}

// describeSilent says where a KERNEL vWire of the soak that carries no
// ping stands, hop by hop on its client's node n (every KERNEL side's
// VPP end is a VLAN sub-interface of the node's af_packet trunk, whose
// Linux end passes each VLAN to its veth by a tc filter): the client's
// interface towards the target (counters, neighbour, address), its host
// veth end in the node's namespace (counters), the trunk's filter of that
// veth (its VLAN, hit counters), VPP's sub-interface of that VLAN and what
// VPP knows of the client's address. Run while the vWire still stands.
// For a remote vWire over WireGuard it adds both VPPs' WireGuard
// state for it (describeWireguard, with every node in nodes).
func describeSilent(n *MeshNode, nodes []*MeshNode, tg pingTarget) string {
	var b strings.Builder
	sh := func(ns *Netns, args ...string) string {
		out, err := ns.IP(args...)
		fmt.Fprintf(&b, "$ ip -n %s %s\n%s\n", ns.Name, strings.Join(args, " "), out)
		if err != nil {
			fmt.Fprintf(&b, "(error: %v)\n", err)
		}
		return out
	}
	route := sh(tg.NS, "-o", "route", "get", tg.Addr)
	dev := fieldAfter(route, "dev")
	if dev == "" {
		return b.String()
	}
	link := sh(tg.NS, "-o", "-s", "-d", "link", "show", "dev", dev)
	sh(tg.NS, "neigh", "show", "dev", dev)
	addr := fieldAfter(sh(tg.NS, "-o", "-4", "addr", "show", "dev", dev), "inet")
	addr, _, _ = strings.Cut(addr, "/")
	// "v3@if1234:": the host end's index in the node's namespace.
	_, peer, _ := strings.Cut(strings.Fields(link + " x x")[1], "@if")
	peer = strings.TrimSuffix(peer, ":")
	host := ""
	if all, err := n.Netns.IP("-o", "link", "show"); err == nil {
		for _, l := range strings.Split(all, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == peer+":" {
				host, _, _ = strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			}
		}
	}
	if host == "" {
		fmt.Fprintf(&b, "host end (index %s) not found in %s\n", peer, n.Name)
		return b.String()
	}
	sh(n.Netns, "-s", "-d", "link", "show", "dev", host)
	sh(n.Netns, "-s", "link", "show", "dev", "vwire-trunk-l")
	filters, _ := run("tc", "-n", n.Netns.Name, "-s", "filter", "show", "dev", "vwire-trunk-l", "ingress")
	vlan := ""
	for _, l := range strings.Split(filters, "\n") {
		if strings.Contains(l, " "+host+" ") || strings.HasSuffix(l, " "+host) {
			fmt.Fprintf(&b, "trunk filter: %s\n", l)
			if h := fieldAfter(l, "handle"); h != "" {
				if v, err := strconv.ParseUint(strings.TrimPrefix(h, "0x"), 16, 16); err == nil {
					vlan = strconv.FormatUint(v, 10)
				}
			}
		}
	}
	hostPush, _ := run("tc", "-n", n.Netns.Name, "-s", "filter", "show", "dev", host, "ingress")
	fmt.Fprintf(&b, "host end's filter:\n%s\n", hostPush)
	if vlan == "" {
		fmt.Fprintf(&b, "no trunk filter names %s\n", host)
	}
	sub := "host-vwire-trunk." + vlan
	cli := func(cmd string) string {
		out, err := vppCLI(n, cmd)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", cmd, err)
			return ""
		}
		return out
	}
	if vlan != "" {
		for _, cmd := range []string{"show interface " + sub, "show interface " + sub + " addr"} {
			fmt.Fprintf(&b, "### %s\n%s\n", cmd, cli(cmd))
		}
	}
	fmt.Fprintf(&b, "### show ip neighbors (%s)\n%s\n", addr, linesWith(cli("show ip neighbors"), addr))
	// The cross-connects that name the sub-interface, whole: the one it
	// feeds and the one that feeds it (naming the vWire's other side).
	var others []string
	for _, x := range strings.Split(cli("show l3xc"), "l3xc:[") {
		if vlan != "" && strings.Contains(x+"\n", sub+"\n") || strings.Contains(x, sub+":") || strings.Contains(x, sub+" ") {
			fmt.Fprintf(&b, "### l3xc:[%s\n", x)
			if f := strings.Fields(x); len(f) > 1 && f[1] != sub {
				others = append(others, f[1])
			}
		}
	}
	for _, o := range others {
		fmt.Fprintf(&b, "### show interface %s\n%s\n", o, cli("show interface "+o))
	}
	fmt.Fprintf(&b, "### show wireguard peer (%s)\n%s\n", strings.Join(others, ", "), blocksWith(cli("show wireguard peer"), others...))
	// Where VPP takes the vWire's packets now: a packet trace of two
	// echo requests (nothing else pings once the round has failed).
	cli("clear trace")
	cli("trace add af-packet-input 20")
	out, _ := run("ip", "netns", "exec", tg.NS.Name, "ping", "-c", "2", "-i", "0.3", "-W", "1", tg.Addr)
	fmt.Fprintf(&b, "$ ping %s\n%s\n", tg.Addr, out)
	trace := cli("show trace")
	var mine []string
	for _, p := range strings.Split(trace, "\nPacket ") {
		if strings.Contains(p, tg.Addr) {
			mine = append(mine, "Packet "+p)
		}
	}
	fmt.Fprintf(&b, "### show trace (packets to or from %s)\n%s\n", tg.Addr, strings.Join(mine, "\n"))
	cli("clear trace")
	fmt.Fprintf(&b, "### show errors (non-zero)\n%s\n", cli("show errors"))
	// What the forwarder did for this vWire (the workload end's alias
	// is vwire/wl/<connection id>).
	key := strings.TrimSuffix(strings.TrimPrefix(fieldAfter(link, "alias"), "vwire/wl/"), "\\")
	if key != "" && strings.Contains(strings.Join(others, " "), "wg") {
		fmt.Fprintf(&b, "### WireGuard of %s on every node\n%s\n", key, describeWireguard(nodes, key))
	}
	if key != "" && n.Forwarder != nil {
		for _, f := range []string{n.Forwarder.Stdout, n.Forwarder.Stderr} {
			if data, err := os.ReadFile(f); err == nil {
				lines := strings.Split(linesWith(string(data), key), "\n")
				if len(lines) > 60 {
					lines = append(lines[:20], append([]string{"..."}, lines[len(lines)-40:]...)...)
				}
				fmt.Fprintf(&b, "### %s, lines of %s\n%s\n", f, key, strings.Join(lines, "\n"))
			}
		}
	}
	return b.String()
}

// blocksWith keeps the blank-line-separated blocks of s that contain any
// of subs.
func blocksWith(s string, subs ...string) string {
	var keep []string
	for _, blk := range strings.Split(s, "\n\n") {
		for _, sub := range subs {
			if sub != "" && strings.Contains(blk, sub) {
				keep = append(keep, blk)
				break
			}
		}
	}
	return strings.Join(keep, "\n\n")
}

// fieldAfter is the word after key in s ("" when none).
func fieldAfter(s, key string) string {
	f := strings.Fields(s)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == key {
			return f[i+1]
		}
	}
	return ""
}

// linesWith keeps the lines of s that contain any of subs.
func linesWith(s string, subs ...string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if sub != "" && strings.Contains(l+"\n", sub) {
				keep = append(keep, l)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}

// wgIface and wgPeer are what one VPP holds of a WireGuard interface and
// peer (the binary API's view, not the forwarder's).
type wgIface struct {
	name, tag string
	pub       string
	port      uint16
}

type wgPeer struct {
	index     uint32
	iface     uint32
	pub       string
	endpoint  string
	port      uint16
	flags     uint8
	ifaceName string
}

// wgState is one node's VPP WireGuard state: every interface and peer.
type wgState struct {
	ifaces map[uint32]wgIface
	peers  []wgPeer
}

// vppWireguard dumps node n's interfaces (for names and tags), WireGuard
// interfaces (with their public keys) and peers.
func vppWireguard(n *MeshNode) (*wgState, error) {
	conn, err := core.Connect(socketclient.NewVppClient(n.VPPAPISocket()))
	if err != nil {
		return nil, fmt.Errorf("%s VPP: connect: %w", n.Name, err)
	}
	defer conn.Disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := &wgState{ifaces: map[uint32]wgIface{}}
	names := map[uint32][2]string{}
	is, err := interfaces.NewServiceClient(conn).SwInterfaceDump(ctx, &interfaces.SwInterfaceDump{SwIfIndex: ^interface_types.InterfaceIndex(0)})
	if err != nil {
		return nil, fmt.Errorf("%s VPP: interfaces: %w", n.Name, err)
	}
	for {
		d, err := is.Recv()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s VPP: interfaces: %w", n.Name, err)
		}
		names[uint32(d.SwIfIndex)] = [2]string{d.InterfaceName, d.Tag}
	}
	wc := wireguard.NewServiceClient(conn)
	ws, err := wc.WireguardInterfaceDump(ctx, &wireguard.WireguardInterfaceDump{SwIfIndex: ^interface_types.InterfaceIndex(0)})
	if err != nil {
		return nil, fmt.Errorf("%s VPP: wireguard interfaces: %w", n.Name, err)
	}
	for {
		d, err := ws.Recv()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s VPP: wireguard interfaces: %w", n.Name, err)
		}
		i := uint32(d.Interface.SwIfIndex)
		st.ifaces[i] = wgIface{name: names[i][0], tag: names[i][1], pub: base64.StdEncoding.EncodeToString(d.Interface.PublicKey), port: d.Interface.Port}
	}
	ps, err := wc.WireguardPeersDump(ctx, &wireguard.WireguardPeersDump{PeerIndex: ^uint32(0)})
	if err != nil {
		return nil, fmt.Errorf("%s VPP: wireguard peers: %w", n.Name, err)
	}
	for {
		d, err := ps.Recv()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s VPP: wireguard peers: %w", n.Name, err)
		}
		i := uint32(d.Peer.SwIfIndex)
		st.peers = append(st.peers, wgPeer{index: d.Peer.PeerIndex, iface: i, pub: base64.StdEncoding.EncodeToString(d.Peer.PublicKey),
			endpoint: d.Peer.Endpoint.String(), port: d.Peer.Port, flags: uint8(d.Peer.Flags), ifaceName: names[i][0]})
	}
	return st, nil
}

// describeWireguard says, for the remote vWire id over WireGuard, what
// each node's VPP holds of it and which keys each forwarder logged
// building it, then which end disagrees with which. Connection ids
// differ per hop, so the far end is found by key: the interface holding
// the key this end's peer names, and the interface whose peer names this
// end's key (one and the same when both ends agree). No other interface
// or peer on either VPP may hold either key: VPP finds a handshake's
// interface by key among all those on the port, and its peer by key
// among all peers.
func describeWireguard(nodes []*MeshNode, id string) string {
	var b strings.Builder
	states := map[*MeshNode]*wgState{}
	for _, n := range nodes {
		if n.VPP == nil || n.VPP.Exited() {
			continue
		}
		st, err := vppWireguard(n)
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
			continue
		}
		states[n] = st
	}
	peersOf := func(st *wgState, idx uint32) []wgPeer {
		var out []wgPeer
		for _, p := range st.peers {
			if p.iface == idx {
				out = append(out, p)
			}
		}
		return out
	}
	show := func(n *MeshNode, st *wgState, idx uint32, why string) {
		w := st.ifaces[idx]
		fmt.Fprintf(&b, "%s: %s %s (sw_if_index %d, tag %q, port %d) key %s\n", n.Name, why, w.name, idx, w.tag, w.port, w.pub)
		ps := peersOf(st, idx)
		for _, p := range ps {
			fmt.Fprintf(&b, "  peer [%d] key %s endpoint %s:%d flags %d\n", p.index, p.pub, p.endpoint, p.port, p.flags)
		}
		if len(ps) == 0 {
			b.WriteString("  no peer\n")
		}
		if _, key, ok := strings.Cut(strings.TrimPrefix(w.tag, "vwire/"), "/"); ok && n.Forwarder != nil {
			if data, err := os.ReadFile(n.Forwarder.Stderr); err == nil {
				var keys []string
				for _, l := range strings.Split(linesWith(string(data), key), "\n") {
					if strings.Contains(strings.ToLower(l), "wireguard") {
						keys = append(keys, l)
					}
				}
				if len(keys) > 20 {
					keys = keys[len(keys)-20:]
				}
				fmt.Fprintf(&b, "  %s forwarder's WireGuard lines for %s:\n    %s\n", n.Name, key, strings.Join(keys, "\n    "))
			}
		}
	}
	// This end: the interface tagged with id.
	var home *MeshNode
	var idx uint32
	for _, n := range nodes {
		if states[n] == nil {
			continue
		}
		for i, w := range states[n].ifaces {
			if strings.HasSuffix(w.tag, "/"+id) {
				if home != nil {
					fmt.Fprintf(&b, "VERDICT: a second interface tagged with %s: %s on %s\n", id, w.name, n.Name)
					continue
				}
				home, idx = n, i
			}
		}
	}
	if home == nil {
		fmt.Fprintf(&b, "VERDICT: no WireGuard interface tagged with %s on any node\n", id)
		return b.String()
	}
	st := states[home]
	me := st.ifaces[idx]
	show(home, st, idx, "the vWire's")
	mine := peersOf(st, idx)
	if len(mine) != 1 {
		fmt.Fprintf(&b, "VERDICT: %s's %s has %d peers, want 1\n", home.Name, me.name, len(mine))
	}
	for _, n := range nodes {
		o := states[n]
		if o == nil {
			continue
		}
		var holds, names []uint32 // interfaces holding the key our peer names; naming our key
		for i, w := range o.ifaces {
			if n == home && i == idx {
				continue
			}
			for _, p := range mine {
				if w.pub == p.pub {
					holds = append(holds, i)
				}
			}
			if w.pub == me.pub {
				fmt.Fprintf(&b, "VERDICT: %s's key %s is also held by %s's %s (tag %q)\n", home.Name, me.pub, n.Name, w.name, w.tag)
			}
		}
		for _, p := range o.peers {
			if p.pub == me.pub && !(n == home && p.iface == idx) {
				names = append(names, p.iface)
			}
		}
		for _, i := range holds {
			show(n, o, i, "holds the key "+home.Name+"'s peer names:")
		}
		for _, i := range names {
			if !slices.Contains(holds, i) {
				show(n, o, i, "has a peer naming "+home.Name+"'s key:")
			}
		}
		if n == home {
			continue
		}
		switch {
		case len(holds) == 0 && len(names) == 0:
			fmt.Fprintf(&b, "VERDICT: %s holds neither the key %s's peer names nor a peer naming %s's key\n", n.Name, home.Name, home.Name)
		case len(holds) == 0:
			fmt.Fprintf(&b, "VERDICT: %s's peer names a key %s's interface does not hold (%s disagrees with %s: a key %s no longer has)\n", home.Name, n.Name, home.Name, n.Name, n.Name)
		case len(names) == 0:
			fmt.Fprintf(&b, "VERDICT: %s's interface holds the key %s's peer names, but has no peer naming %s's key (%s disagrees with %s)\n", n.Name, home.Name, home.Name, n.Name, home.Name)
		case len(holds) == 1 && len(names) == 1 && holds[0] == names[0]:
			fmt.Fprintf(&b, "VERDICT: keys agree between %s's %s and %s's %s\n", home.Name, me.name, n.Name, o.ifaces[holds[0]].name)
		default:
			fmt.Fprintf(&b, "VERDICT: keys split on %s: interfaces %v hold the key, %v name ours\n", n.Name, holds, names)
		}
	}
	return b.String()
}
