package kernel

import (
	"context"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// TestPairSocketsHeldWhileVWiresLive: local pairs share one route socket
// per workload namespace, held while a vWire of the forwarder lives there
// (and until the reaper has deleted a closed one's pair), then closed, so
// that a workload's namespace is not held alive past its vWires. A second
// vWire between the same namespaces reuses the sockets; a route the
// kernel refuses, in the middle of an end's exchange, fails the Connect
// with the kernel's reason and leaves no link, socket or record.
func TestPairSocketsHeldWhileVWiresLive(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	conn := func(name, src, dst string) (*networkservice.Connection, *networkservice.Connection) {
		cc := ipContext(src, dst)
		return &networkservice.Connection{Mechanism: kernelMech(clientPath, name+"-c"), Context: cc},
			&networkservice.Connection{Mechanism: kernelMech(epPath, name+"-e"), Context: cc}
	}
	in1, out1 := conn("nsm1", "169.254.21.1", "169.254.21.2")
	if err := d.Connect(ctx, "conn-1", in1, out1); err != nil {
		t.Fatal(err)
	}
	first := map[nsKey]*nsConn{}
	d.conns.mu.Lock()
	for k, x := range d.conns.m {
		first[k] = x
	}
	d.conns.mu.Unlock()
	if len(first) != 2 {
		t.Fatalf("%d namespaces with a socket after one pair, want 2", len(first))
	}
	in2, out2 := conn("nsm2", "169.254.21.5", "169.254.21.6")
	if err := d.Connect(ctx, "conn-2", in2, out2); err != nil {
		t.Fatal(err)
	}
	d.conns.mu.Lock()
	for k, x := range d.conns.m {
		if first[k] != x {
			t.Errorf("the second pair opened a socket of its own in a namespace the first holds one in")
		}
	}
	d.conns.mu.Unlock()
	for _, p := range []struct{ ns, dst string }{{client, "169.254.21.2"}, {client, "169.254.21.6"}, {ep, "169.254.21.1"}} {
		if err := ping(p.ns, p.dst); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Disconnect(ctx, "conn-1"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()
	if n := d.conns.count(); n != 2 {
		t.Fatalf("%d namespaces with a socket while conn-2 lives, want 2", n)
	}
	if err := ping(client, "169.254.21.6"); err != nil {
		t.Fatalf("conn-2 after conn-1's Close: %v", err)
	}
	if err := d.Disconnect(ctx, "conn-2"); err != nil {
		t.Fatal(err)
	}
	d.reap.flush()
	if n := d.conns.count(); n != 0 {
		t.Fatalf("%d namespaces still with a socket after the last Close", n)
	}
	requireNoLinksLeft(t, node, before, client, ep)

	// The endpoint's end's exchange: alias and up, address, then a route
	// whose next hop no connected subnet has.
	in3, out3 := conn("nsm3", "169.254.21.9", "169.254.21.10")
	out3.Context.IpContext.DstRoutes = append(out3.Context.IpContext.DstRoutes, &networkservice.Route{Prefix: "10.99.0.0/16", NextHop: "192.0.2.77"})
	err := d.Connect(ctx, "conn-3", in3, out3)
	if err == nil || !strings.Contains(err.Error(), "route 10.99.0.0/16 via nsm3-e") {
		t.Fatalf("a route the kernel refuses: err %v", err)
	}
	d.reap.flush()
	requireNoLinksLeft(t, node, before, client, ep)
	if n := d.conns.count(); n != 0 {
		t.Fatalf("%d namespaces still with a socket after a failed Connect", n)
	}
	if n := recordCount(t, d.recs.dir); n != 0 {
		t.Fatalf("%d pair records after a failed Connect", n)
	}
}

// TestAddPairEcho: the pair's creation answers with its echo (on kernels
// that send one), and addPair's client end, echoed or looked up, has the
// index and peer index the kernel lists in the two namespaces. A reply
// that is not the echo of the client's end is not taken for it.
func TestAddPairEcho(t *testing.T) {
	needRoot(t)
	node, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d := newDP(t, nodePath, "", 0)
	before := linkNames(t, node)
	cc := ipContext("169.254.23.1", "169.254.23.2")
	p, _, err := directFor("conn-echo", &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-echo"), Context: cc},
		&networkservice.Connection{Mechanism: kernelMech(epPath, "nsm-echo-e"), Context: cc}, DefaultMTU)
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.openPair(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	c, err := d.addPair(h, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.in.rtnl.linkByName("nsm-echo")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := h.out.rtnl.linkByName("nsm-echo-e")
	if err != nil {
		t.Fatal(err)
	}
	if c.Attrs().Name != "nsm-echo" || c.Attrs().Index != got.Attrs().Index || c.Attrs().ParentIndex != peer.Attrs().Index {
		t.Fatalf("addPair: %s index %d peer %d; the kernel lists nsm-echo index %d, nsm-echo-e index %d",
			c.Attrs().Name, c.Attrs().Index, c.Attrs().ParentIndex, got.Attrs().Index, peer.Attrs().Index)
	}

	// The echo itself, where the kernel sends one (Linux 6.1 and later).
	req := getLinkReq("nsm-echo")
	_, replies, err := h.in.rtnl.exchange(req)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := echoedPair(replies[0], "nsm-echo"); err != nil || e.Attrs().Index != c.Attrs().Index {
		t.Fatalf("the client's end's own description: %v, %v", e, err)
	}
	if _, err := echoedPair(replies[0], "nsm-other"); err == nil {
		t.Fatal("a description of nsm-echo taken for nsm-other's")
	}
	if _, err := echoedPair(nil, "nsm-echo"); err == nil {
		t.Fatal("no echo taken for one")
	}
	if _, err := echoedPair(replies[0][:8], "nsm-echo"); err == nil {
		t.Fatal("a truncated echo taken")
	}
	// On a kernel that echoes a creation, addPair must have taken the
	// echo: a veth made the same way answers with one.
	probe := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	probe.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	probe.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("nsm-probe")))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peerInfo := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peerInfo, unix.AF_UNSPEC)
	peerInfo.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("nsm-probe-p"))
	probe.AddData(info)
	errs, replies, err := h.in.rtnl.exchange(probe)
	if err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	if e, err := echoedPair(replies[0], "nsm-probe"); err == nil {
		if errs, _, err := h.in.rtnl.exchange(delLinkReq(e.Attrs().Index)); err != nil || errs[0] != nil {
			t.Fatal(err, errs)
		}
	} else {
		run(t, "ip", "-n", client, "link", "del", "nsm-probe")
		var u unix.Utsname
		_ = unix.Uname(&u)
		t.Logf("this kernel (%s) does not echo a link's creation (%v): addPair looked the end up", unix.ByteSliceToString(u.Release[:]), err)
	}
	if errs, _, err := h.in.rtnl.exchange(delLinkReq(c.Attrs().Index)); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	requireNoLinksLeft(t, node, before, client, ep)
}
