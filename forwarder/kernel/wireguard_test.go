package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// kernelWireguard reports whether the kernel has WireGuard, as New probes
// it.
func kernelWireguard(t *testing.T) bool {
	t.Helper()
	_, err := netlink.GenlFamilyGet(wgFamily)
	return err == nil
}

// hasTUN reports whether userspace WireGuard can run here.
func hasTUN() bool {
	_, err := os.Stat("/dev/net/tun")
	return err == nil
}

// newDPWG is newDP with WireGuard as mode asks.
func newDPWG(t *testing.T, nodePath, tunnel string, grace time.Duration, mode string) *Dataplane {
	t.Helper()
	cfg := Config{NetNSPath: nodePath, Grace: grace, WireGuard: mode}
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

// wgModes are the WireGuard implementations this host can run, to test
// each: the kernel's where it has it, userspace where /dev/net/tun is.
func wgModes(t *testing.T) []string {
	var modes []string
	if kernelWireguard(t) {
		modes = append(modes, WireGuardKernel)
	}
	if hasTUN() {
		modes = append(modes, WireGuardUserspace)
	}
	return modes
}

func types(ms []*networkservice.Mechanism) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetType())
	}
	return out
}

// TestWireguardModes: the implementation each Config.WireGuard picks on
// this host, and WIREGUARD neither offered nor accepted without one.
func TestWireguardModes(t *testing.T) {
	kernelWG := kernelWireguard(t)
	auto := WireGuardUserspace
	if kernelWG {
		auto = WireGuardKernel
	}
	if !kernelWG && !hasTUN() {
		auto = ""
	}
	kernelOnly := ""
	if kernelWG {
		kernelOnly = WireGuardKernel
	}
	user := ""
	if hasTUN() {
		user = WireGuardUserspace
	}
	tests := []struct {
		mode, want string
	}{
		{mode: "", want: auto},
		{mode: WireGuardAuto, want: auto},
		{mode: WireGuardKernel, want: kernelOnly},
		{mode: WireGuardUserspace, want: user},
		{mode: WireGuardOff, want: ""},
	}
	for _, tt := range tests {
		t.Run("mode "+tt.mode, func(t *testing.T) {
			d := newDPWG(t, "", "10.222.0.1", 0, tt.mode)
			if got := d.WireGuard(); got != tt.want {
				t.Fatalf("WireGuard() = %q, want %q", got, tt.want)
			}
			if tt.want != "" {
				return
			}
			ctx := context.Background()
			offers, err := d.Offer(ctx, "c", &networkservice.Connection{}, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := types(offers); len(got) != 1 || got[0] != vxlan.Type {
				t.Fatalf("offers %v, want only VXLAN", got)
			}
			key, _, _ := wireguard.GenerateKey()
			offer := wireguard.New(wireguard.Offer(netip.MustParseAddr("10.222.0.2"), 0, key))
			_, err = d.Accept(ctx, "c", &networkservice.Connection{}, []*networkservice.Mechanism{offer})
			if !errors.Is(err, forwarder.ErrNoMechanism) || !errors.Is(err, errNoWireguard) {
				t.Fatalf("accept WIREGUARD without WireGuard: %v", err)
			}
			if err := d.Disconnect(ctx, "c"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := New(Config{WireGuard: "quantum"}); err == nil || !strings.Contains(err.Error(), "quantum") {
		t.Fatalf("New with an unknown WireGuard mode: %v", err)
	}
}

// pretendWireguard gives d a WireGuard implementation that negotiates
// WIREGUARD and can build no device (a wgctrl client without the kernel
// module), when it has none.
func pretendWireguard(t *testing.T, d *Dataplane) {
	t.Helper()
	if d.wg != nil {
		return
	}
	c, err := wgctrl.New()
	if err != nil {
		// wgctrl opens without the module; failing means no netlink here.
		t.Fatalf("wgctrl: %v", err)
	}
	d.wg = &wgKernel{nl: d.nl, ctl: c}
}

func TestWireguardNegotiation(t *testing.T) {
	ctx := context.Background()
	d1 := newDP(t, "", "10.222.0.1", 0)
	d2 := newDP(t, "", "10.222.0.2", 0)
	pretendWireguard(t, d1)
	pretendWireguard(t, d2)
	ip := &networkservice.Connection{Payload: payload.IP}
	eth := &networkservice.Connection{Payload: payload.Ethernet}

	offers, err := d1.Offer(ctx, "a", ip, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := types(offers); len(got) != 2 || got[0] != wireguard.Type || got[1] != vxlan.Type {
		t.Fatalf("IP payload offers %v, want WIREGUARD then VXLAN", got)
	}
	if got, _ := d1.Offer(ctx, "e", eth, true); len(got) != 1 || got[0].GetType() != vxlan.Type {
		t.Fatalf("ETHERNET payload offers %v, want only VXLAN", types(got))
	}
	if local, _ := d1.Offer(ctx, "l", ip, false); len(local) != 1 || local[0].GetType() == wireguard.Type {
		t.Fatalf("local offers %v", types(local))
	}
	again, _ := d1.Offer(ctx, "a", ip, true)
	if fmt.Sprint(again[0].GetParameters()) != fmt.Sprint(offers[0].GetParameters()) {
		t.Fatalf("a second offer for the same vWire changed: %v vs %v", again[0], offers[0])
	}
	offer, err := wireguard.FromOffer(offers[0])
	if err != nil {
		t.Fatal(err)
	}
	if offer.SrcPort < wgFirstPort || offer.SrcPort >= wgFirstPort+wgPorts || offer.MTU != 1500-wgOverhead {
		t.Fatalf("offer %+v", offer)
	}

	if _, err := d2.Accept(ctx, "b", eth, offers[:1]); err == nil || !strings.Contains(err.Error(), "ETHERNET") {
		t.Fatalf("accepted WIREGUARD for an ETHERNET payload: %v", err)
	}
	reply, err := d2.Accept(ctx, "b", ip, offers)
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetType() != wireguard.Type {
		t.Fatalf("accepted %s, want WIREGUARD (offered first)", reply.GetType())
	}
	agreed, err := wireguard.Confirm(offer, reply)
	if err != nil {
		t.Fatal(err)
	}

	// Each side's device: its own key and port, the other as its one peer.
	c1, err := d1.wireguardDevice(roleOut, "a", reply)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := d2.wireguardDevice(roleIn, "b", reply)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name         string
		cfg          wgtypes.Config
		port         uint16
		peerKey      string
		peerEndpoint string
	}{
		{"client side", c1, agreed.SrcPort, agreed.DstPublicKey, fmt.Sprintf("10.222.0.2:%d", agreed.DstPort)},
		{"server side", c2, agreed.DstPort, agreed.SrcPublicKey, fmt.Sprintf("10.222.0.1:%d", agreed.SrcPort)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			if *c.ListenPort != int(tt.port) || len(c.Peers) != 1 || !c.ReplacePeers {
				t.Fatalf("config %+v", c)
			}
			p := c.Peers[0]
			if p.PublicKey.String() != tt.peerKey || p.Endpoint.String() != tt.peerEndpoint || len(p.AllowedIPs) != 2 {
				t.Fatalf("peer %+v", p)
			}
		})
	}
	if c1.PrivateKey.PublicKey().String() != agreed.SrcPublicKey || c2.PrivateKey.PublicKey().String() != agreed.DstPublicKey {
		t.Fatal("a device's private key is not that of the public key it announced")
	}
	// A mechanism naming another key for this node is refused.
	bad := agreed
	bad.SrcPublicKey = agreed.DstPublicKey
	if _, err := d1.wireguardDevice(roleOut, "a", wireguard.New(bad)); err == nil {
		t.Fatal("built a device for a key this node does not hold")
	}
	// The local end may be another address this node holds (a public
	// address on the host, --public-ip), not one it does not.
	held, foreign := agreed, agreed
	held.SrcIP, foreign.SrcIP = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.222.9.9")
	if _, err := d1.wireguardDevice(roleOut, "a", wireguard.New(held)); err != nil {
		t.Fatalf("local end on an address this node holds: %v", err)
	}
	if _, err := d1.wireguardDevice(roleOut, "a", wireguard.New(foreign)); err == nil || !strings.Contains(err.Error(), "not this node's") {
		t.Fatalf("local end on an address this node does not hold: %v", err)
	}

	// Disconnect frees the ports.
	for _, d := range []*Dataplane{d1, d2} {
		for _, id := range []string{"a", "b", "e", "l"} {
			if err := d.Disconnect(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if len(d.wgPorts.used) != 0 || len(d.wgHeld) != 0 {
			t.Fatalf("ports %v, keys %v left after Disconnect", d.wgPorts.used, d.wgHeld)
		}
	}
}

func TestPortAllocator(t *testing.T) {
	tests := []struct {
		name    string
		first   int
		n       int
		reserve []uint16
		wantErr error // of the last Reserve
	}{
		{name: "in range", first: 100, n: 4, reserve: []uint16{100, 103}},
		{name: "twice", first: 100, n: 4, reserve: []uint16{101, 101}, wantErr: errPortInUse},
		{name: "below", first: 100, n: 4, reserve: []uint16{99}, wantErr: errors.New("outside")},
		{name: "above", first: 100, n: 4, reserve: []uint16{104}, wantErr: errors.New("outside")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newPortAllocator(tt.first, tt.n)
			var err error
			for _, p := range tt.reserve {
				err = a.Reserve(p)
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatal(err)
			case tt.wantErr != nil && (err == nil || !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error())):
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
		})
	}

	a := newPortAllocator(200, 3)
	if err := a.Reserve(201); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{201: true}
	for range 2 {
		p, err := a.Allocate()
		if err != nil || seen[p] || p < 200 || p > 202 {
			t.Fatalf("allocate: %d %v (have %v)", p, err, seen)
		}
		seen[p] = true
	}
	if _, err := a.Allocate(); !errors.Is(err, errNoFreePort) {
		t.Fatalf("full allocator: %v", err)
	}
	a.Release(201)
	a.Release(201)
	if p, err := a.Allocate(); err != nil || p != 201 {
		t.Fatalf("after release: %d %v", p, err)
	}
}

func TestWgDeviceConfig(t *testing.T) {
	priv, _, _ := wireguard.GenerateKey()
	_, peer, _ := wireguard.GenerateKey()
	c := wgDeviceConfig(priv, 51821, peer, netip.MustParseAddr("192.0.2.7"), 51999)
	if *c.PrivateKey != priv || *c.ListenPort != 51821 || !c.ReplacePeers || c.FirewallMark != nil {
		t.Fatalf("device %+v", c)
	}
	p := c.Peers[0]
	if p.PublicKey != peer || p.Endpoint.String() != "192.0.2.7:51999" || !p.ReplaceAllowedIPs || p.PersistentKeepaliveInterval != nil {
		t.Fatalf("peer %+v", p)
	}
	var allowed []string
	for _, a := range p.AllowedIPs {
		allowed = append(allowed, a.String())
	}
	if strings.Join(allowed, " ") != "0.0.0.0/0 ::/0" {
		t.Fatalf("allowed IPs %v", allowed)
	}
}

func TestPlanRouted(t *testing.T) {
	d := newDP(t, "", "10.222.0.1", 0)
	pub, port, err := d.holdWireguard("w", roleOut)
	if err != nil {
		t.Fatal(err)
	}
	_, peer, _ := wireguard.GenerateKey()
	wg := wireguard.New(wireguard.Params{SrcIP: netip.MustParseAddr("10.222.0.1"), DstIP: netip.MustParseAddr("10.222.0.2"),
		SrcPort: port, DstPort: wgFirstPort, SrcPublicKey: wireguard.EncodeKey(pub), DstPublicKey: wireguard.EncodeKey(peer)})
	k := kernelMech("/var/run/netns/x", "nsm-c")
	v4 := ipContext("169.254.1.1", "169.254.1.2")
	v6 := ipContext("fd00::1", "fd00::2")
	dual := ipContext("169.254.1.1", "169.254.1.2")
	dual.IpContext.SrcIpAddrs = append(dual.IpContext.SrcIpAddrs, "fd00::1/128")
	dual.IpContext.DstIpAddrs = append(dual.IpContext.DstIpAddrs, "fd00::2/128")
	dual.IpContext.SrcRoutes = append(dual.IpContext.SrcRoutes, &networkservice.Route{Prefix: "fd00:9::/64", NextHop: "fd00::fe"}, &networkservice.Route{Prefix: "fd00::9/128"})
	from, to := wgTables(port)
	tests := []struct {
		name    string
		id      string
		in, out *networkservice.Connection
		want    *routedXC
		wantErr string
	}{
		{name: "no WireGuard side", id: "w", in: &networkservice.Connection{Mechanism: k, Context: v4}, out: &networkservice.Connection{Mechanism: k}},
		{name: "kernel to WireGuard", id: "w", in: &networkservice.Connection{Mechanism: k, Context: v4}, out: &networkservice.Connection{Mechanism: wg},
			want: &routedXC{fromIn: from, fromOut: to, v4: true, in: &ethSide{gw4: netip.MustParseAddr("169.254.1.1")}}},
		{name: "ETHERNET payload", id: "w", in: &networkservice.Connection{Mechanism: k, Context: v4, Payload: payload.Ethernet}, out: &networkservice.Connection{Mechanism: wg}, wantErr: "ETHERNET"},
		{name: "IPv6", id: "w", in: &networkservice.Connection{Mechanism: k, Context: v6}, out: &networkservice.Connection{Mechanism: wg},
			want: &routedXC{fromIn: from, fromOut: to, v6: true, in: &ethSide{gw6: netip.MustParseAddr("fd00::1"), ndp: []netip.Addr{netip.MustParseAddr("fd00::2")}}}},
		{name: "dual stack, next hop", id: "w", in: &networkservice.Connection{Mechanism: k, Context: dual}, out: &networkservice.Connection{Mechanism: wg},
			want: &routedXC{fromIn: from, fromOut: to, v4: true, v6: true, in: &ethSide{gw4: netip.MustParseAddr("169.254.1.1"), gw6: netip.MustParseAddr("fd00::1"),
				ndp: []netip.Addr{netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::fe"), netip.MustParseAddr("fd00::9")}}}},
		{name: "bad address", id: "w", in: &networkservice.Connection{Mechanism: k, Context: ipContext("169.254.1.1/7", "x")}, out: &networkservice.Connection{Mechanism: wg}, wantErr: "src_ip_addrs"},
		{name: "no client address", id: "w", in: &networkservice.Connection{Mechanism: k}, out: &networkservice.Connection{Mechanism: wg}, wantErr: "workload's address"},
		{name: "no key held", id: "other", in: &networkservice.Connection{Mechanism: k, Context: v4}, out: &networkservice.Connection{Mechanism: wg}, wantErr: "holds no key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.planRouted(tt.id, tt.in, tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("got %+v, want nil", got)
				}
				return
			}
			dev, ok := got.devices[linkName(roleOut, tt.id)]
			if len(got.devices) != 1 || !ok || *dev.ListenPort != int(port) || dev.Peers[0].PublicKey != peer {
				t.Fatalf("devices %+v", got.devices)
			}
			got.devices = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v %+v, want %+v %+v", got, got.in, tt.want, tt.want.in)
			}
		})
	}
}

func TestWgMatches(t *testing.T) {
	priv, _, _ := wireguard.GenerateKey()
	_, peer, _ := wireguard.GenerateKey()
	_, other, _ := wireguard.GenerateKey()
	want := wgDeviceConfig(priv, 51821, peer, netip.MustParseAddr("192.0.2.7"), 51999)
	device := func(change func(*wgtypes.Device)) *wgtypes.Device {
		d := &wgtypes.Device{PrivateKey: priv, ListenPort: 51821, Peers: []wgtypes.Peer{{
			PublicKey: peer, Endpoint: want.Peers[0].Endpoint, AllowedIPs: want.Peers[0].AllowedIPs}}}
		if change != nil {
			change(d)
		}
		return d
	}
	tests := []struct {
		name string
		dev  *wgtypes.Device
		want bool
	}{
		{name: "as configured", dev: device(nil), want: true},
		{name: "other port", dev: device(func(d *wgtypes.Device) { d.ListenPort++ })},
		{name: "other key", dev: device(func(d *wgtypes.Device) { d.PrivateKey = other })},
		{name: "other peer", dev: device(func(d *wgtypes.Device) { d.Peers[0].PublicKey = other })},
		{name: "peer moved", dev: device(func(d *wgtypes.Device) { d.Peers[0].Endpoint = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 8), Port: 51999} })},
		{name: "no peer", dev: device(func(d *wgtypes.Device) { d.Peers = nil })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wgMatches(tt.dev, want); got != tt.want {
				t.Fatalf("wgMatches %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWireguardConnectFailureLeavesNothing negotiates WIREGUARD; the
// device cannot be made, and Connect must leave nothing of its own behind:
//   - kernel: on a kernel without WireGuard by itself (a wgctrl client
//     stands in), on one with it because a foreign link holds its name;
//   - userspace: a foreign TUN device holds its name (opening it by name
//     would attach to it), or a foreign socket its UDP port.
func TestWireguardConnectFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		mode  string
		spoil func(t *testing.T, ns string, d *Dataplane, port uint16)
	}{
		{name: "kernel", mode: WireGuardOff, spoil: func(t *testing.T, ns string, d *Dataplane, _ uint16) {
			pretendWireguard(t, d)
			if kernelWireguard(t) {
				if !hasTUN() {
					t.Skip("this kernel has WireGuard, and the test needs /dev/net/tun to make the device fail")
				}
				run(t, "ip", "-n", ns, "tuntap", "add", "mode", "tun", "name", linkName(roleOut, "a"))
			}
		}},
		{name: "userspace, name taken", mode: WireGuardUserspace, spoil: func(t *testing.T, ns string, _ *Dataplane, _ uint16) {
			run(t, "ip", "-n", ns, "tuntap", "add", "mode", "tun", "name", linkName(roleOut, "a"))
		}},
		{name: "userspace, port taken", mode: WireGuardUserspace, spoil: func(t *testing.T, _ string, d *Dataplane, port uint16) {
			var c *net.UDPConn
			err := d.inNetNS(func() (err error) {
				c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: int(port)})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mode == WireGuardUserspace && !hasTUN() {
				t.Skip("needs /dev/net/tun")
			}
			ctx := context.Background()
			n1, p1, _, p2 := twoNodes(t)
			_, clientPath := netnsFor(t, "nsc")
			d1 := newDPWG(t, p1, "10.222.0.1", 0, tt.mode)
			d2 := newDPWG(t, p2, "10.222.0.2", 0, tt.mode)
			pretendWireguard(t, d2)
			conn := &networkservice.Connection{Payload: payload.IP}
			// The kernel case's stand-in must be there to offer.
			if tt.mode == WireGuardOff {
				tt.spoil(t, n1, d1, 0)
			}
			offers, err := d1.Offer(ctx, "a", conn, true)
			if err != nil {
				t.Fatal(err)
			}
			reply, err := d2.Accept(ctx, "b", conn, offers)
			if err != nil {
				t.Fatal(err)
			}
			if tt.mode != WireGuardOff {
				p, _ := wireguard.FromMechanism(reply)
				tt.spoil(t, n1, d1, p.SrcPort)
			}
			before := linkNames(t, n1)
			cc := ipContext("169.254.50.1", "169.254.50.2")
			in := &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
			err = d1.Connect(ctx, "a", in, &networkservice.Connection{Mechanism: reply, Context: cc})
			if err == nil || !strings.Contains(err.Error(), "wireguard") {
				t.Fatalf("connect over WireGuard whose device cannot be made: %v", err)
			}
			t.Logf("connect failed as it must: %v", err)
			if got := linkNames(t, n1); got != before {
				t.Fatalf("a failed connect left links:\n%s\nwere:\n%s", got, before)
			}
			if got := ruleLines(t, n1); got != "" {
				t.Fatalf("a failed connect left rules:\n%s", got)
			}
			if u, ok := d1.wg.(*wgUser); ok && u.Len() != 0 {
				t.Fatalf("a failed connect left %d userspace devices", u.Len())
			}
			if err := d1.Disconnect(ctx, "a"); err != nil && !strings.Contains(err.Error(), "not ours") {
				t.Fatal(err)
			}
		})
	}
}

// tunPair makes an L3 device named name in each of two namespaces and
// copies packets between them: a stand-in for two WireGuard devices that
// are each other's peer, to test the routed cross-connect on a kernel
// without WireGuard.
func tunPair(t *testing.T, ns1, ns2, name1, name2 string) {
	t.Helper()
	var files []*os.File
	for _, x := range []struct{ ns, name string }{{ns1, name1}, {ns2, name2}} {
		run(t, "ip", "-n", x.ns, "tuntap", "add", "mode", "tun", "name", x.name)
		f, err := openTun("/var/run/netns/"+x.ns, x.name)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var wg sync.WaitGroup
	pump := func(from, to *os.File) {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, err := from.Read(buf)
			if err != nil {
				return
			}
			_, _ = to.Write(buf[:n])
		}
	}
	wg.Add(2)
	go pump(files[0], files[1])
	go pump(files[1], files[0])
	t.Cleanup(func() {
		files[0].Close()
		files[1].Close()
		wg.Wait()
	})
}

func openTun(nsPath, name string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, _ := netns.Get()
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			c <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			c <- result{err: err}
			return
		}
		f, err := func() (*os.File, error) {
			fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if err != nil {
				return nil, err
			}
			ifr, err := unix.NewIfreq(name)
			if err == nil {
				ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
				err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
			}
			if err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("tun %s: %w", name, err)
			}
			return os.NewFile(uintptr(fd), name), nil
		}()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		c <- result{f, err}
	}()
	r := <-c
	return r.f, r.err
}

func ruleLines(t *testing.T, ns string) string {
	var out []string
	for _, l := range strings.Split(run(t, "ip", "-n", ns, "rule", "show")+"\n"+run(t, "ip", "-n", ns, "-6", "rule", "show"), "\n") {
		if strings.HasPrefix(l, fmt.Sprintf("%d:", wgRulePriority)) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRoutedCrossConnect builds the routed cross-connect a WireGuard
// vWire uses, with tun devices standing in for the WireGuard ones, and
// pings across: it runs on any kernel.
func TestRoutedCrossConnect(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
	ctx := context.Background()
	n1, p1 := netnsFor(t, "node")
	n2, p2 := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	d1 := newDP(t, p1, "", 0)
	d2 := newDP(t, p2, "", 0)
	before1, before2 := linkNames(t, n1), linkNames(t, n2)
	cc := ipContext("169.254.30.1", "169.254.30.2")

	// Node 1: client veth (in) and the tunnel (out); node 2: the tunnel
	// (in) and the endpoint's veth (out).
	tunPair(t, n1, n2, linkName(roleOut, "a"), linkName(roleIn, "b"))
	run(t, "ip", "-n", n1, "link", "set", linkName(roleOut, "a"), "alias", alias(roleOut, "a"), "up")
	run(t, "ip", "-n", n2, "link", "set", linkName(roleIn, "b"), "alias", alias(roleIn, "b"), "up")
	in1, err := d1.side(roleIn, "a", kernelMech(clientPath, "nsm-c"), cc, 1400)
	if err != nil {
		t.Fatal(err)
	}
	out2, err := d2.side(roleOut, "b", kernelMech(epPath, "nsm-e"), cc, 1400)
	if err != nil {
		t.Fatal(err)
	}
	tun1, err := d1.nl.LinkByName(linkName(roleOut, "a"))
	if err != nil {
		t.Fatal(err)
	}
	tun2, err := d2.nl.LinkByName(linkName(roleIn, "b"))
	if err != nil {
		t.Fatal(err)
	}
	f1, t1 := wgTables(wgFirstPort + 1)
	f2, t2 := wgTables(wgFirstPort + 2)
	x1 := &routedXC{fromIn: f1, fromOut: t1, v4: true, in: &ethSide{gw4: netip.MustParseAddr("169.254.30.1")}}
	x2 := &routedXC{fromIn: f2, fromOut: t2, v4: true, out: &ethSide{gw4: netip.MustParseAddr("169.254.30.2")}}
	if err := d1.routeConnect(in1, tun1, x1); err != nil {
		t.Fatal(err)
	}
	if err := d2.routeConnect(tun2, out2, x2); err != nil {
		t.Fatal(err)
	}
	if err := ping(client, "169.254.30.2"); err != nil {
		t.Fatal(err)
	}
	if err := ping(ep, "169.254.30.1"); err != nil {
		t.Fatal(err)
	}
	if !d1.intact("a", x1) || !d2.intact("b", x2) {
		t.Fatal("a built routed cross-connect is not reported intact")
	}
	if v, err := d1.readSysctl("net/ipv4/conf/" + in1.Attrs().Name + "/proxy_arp"); err != nil || v != "1" {
		t.Fatalf("proxy_arp on the client's side: %q %v", v, err)
	}
	if v, _ := d1.readSysctl("net/ipv4/conf/all/forwarding"); v != "0" {
		t.Fatalf("forwarding switched on for the whole namespace: %q", v)
	}

	// A restarted forwarder keeps the rules of its links and removes
	// those whose links are gone.
	stray := netlink.NewRule()
	stray.Family, stray.Priority, stray.IifName, stray.Table = netlink.FAMILY_V4, wgRulePriority, linkName(roleIn, "gone"), wgTableBase+100
	if err := d1.nl.RuleAdd(stray); err != nil {
		t.Fatal(err)
	}
	d1b := newDP(t, p1, "", time.Hour)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d1b.Start(sctx); err != nil {
		t.Fatal(err)
	}
	if got := ruleLines(t, n1); strings.Contains(got, linkName(roleIn, "gone")) || strings.Count(got, "\n") != 1 {
		t.Fatalf("rules after reconcile:\n%s", got)
	}
	if err := ping(client, "169.254.30.2"); err != nil {
		t.Fatalf("reconcile broke the vWire: %v", err)
	}

	for _, x := range []struct {
		d      *Dataplane
		id, ns string
		before string
	}{{d1b, "a", n1, before1}, {d2, "b", n2, before2}} {
		if err := x.d.Disconnect(ctx, x.id); err != nil {
			t.Fatal(err)
		}
		x.d.reap.flush()
		if got := linkNames(t, x.ns); got != x.before {
			t.Fatalf("links left in %s:\n%s", x.ns, got)
		}
		if got := ruleLines(t, x.ns); got != "" {
			t.Fatalf("rules left in %s:\n%s", x.ns, got)
		}
		for _, table := range []int{f1, t1, f2, t2} {
			out, err := exec.Command("ip", "-n", x.ns, "route", "show", "table", fmt.Sprint(table)).CombinedOutput()
			if got := string(out); err == nil && got != "" || err != nil && !strings.Contains(got, "does not exist") {
				t.Fatalf("routes left in table %d of %s:\n%s", table, x.ns, got)
			}
		}
	}
}

// dualContext is ipContext with an IPv6 pair beside the IPv4 one.
func dualContext(src4, dst4, src6, dst6 string) *networkservice.ConnectionContext {
	cc := ipContext(src4, dst4)
	ip := cc.IpContext
	ip.SrcIpAddrs = append(ip.SrcIpAddrs, src6+"/128")
	ip.DstIpAddrs = append(ip.DstIpAddrs, dst6+"/128")
	ip.SrcRoutes = append(ip.SrcRoutes, &networkservice.Route{Prefix: dst6 + "/128"})
	ip.DstRoutes = append(ip.DstRoutes, &networkservice.Route{Prefix: src6 + "/128"})
	return cc
}

// TestRemoteKernelWireguardKernel is TestRemoteKernelVxlanKernel over
// WireGuard, with each implementation this host has (the kernel's, and
// wireguard-go in this process), for IPv4 and dual-stack payloads; then
// node1's forwarder restarts and the next refresh rebuilds the vWire.
func TestRemoteKernelWireguardKernel(t *testing.T) {
	needRoot(t)
	modes := wgModes(t)
	if len(modes) == 0 {
		t.Skip("no WireGuard here: the kernel has none and there is no /dev/net/tun")
	}
	for _, mode := range modes {
		for _, stack := range []string{"IPv4", "dual"} {
			t.Run(mode+"/"+stack, func(t *testing.T) { remoteWireguard(t, mode, stack == "dual") })
		}
	}
}

func remoteWireguard(t *testing.T, mode string, dual bool) {
	ctx := context.Background()
	n1, p1, n2, p2 := twoNodes(t)
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	// Strict reverse-path filtering in the nodes: the vWire's packets pass
	// it all the same (see the top of wireguard.go).
	for _, ns := range []string{n1, n2} {
		run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
	}
	before1, before2 := linkNames(t, n1), linkNames(t, n2)
	d1 := newDPWG(t, p1, "10.222.0.1", 0, mode)
	d2 := newDPWG(t, p2, "10.222.0.2", 0, mode)
	if d1.WireGuard() != mode || d2.WireGuard() != mode {
		t.Fatalf("asked for %s WireGuard, got %q and %q", mode, d1.WireGuard(), d2.WireGuard())
	}
	cc := ipContext("169.254.40.1", "169.254.40.2")
	targets := [][2]string{{client, "169.254.40.2"}, {ep, "169.254.40.1"}}
	if dual {
		cc = dualContext("169.254.40.1", "169.254.40.2", "fd00:40::1", "fd00:40::2")
		targets = append(targets, [2]string{client, "fd00:40::2"}, [2]string{ep, "fd00:40::1"})
	}
	pingAll := func() error {
		// A workload's new IPv6 addresses are tentative until duplicate
		// address detection ends (a second): it sends nothing from them.
		for _, ns := range []string{client, ep} {
			deadline := time.Now().Add(10 * time.Second)
			for run(t, "ip", "-n", ns, "-6", "addr", "show", "tentative") != "" {
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: addresses still tentative after 10s", ns)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		for _, x := range targets {
			if err := ping(x[0], x[1]); err != nil {
				return err
			}
		}
		return nil
	}
	conn := &networkservice.Connection{Payload: payload.IP}

	// The protocol's order: node1 offers, node2 accepts and builds, node1
	// builds.
	connect := func(d1 *Dataplane) (offers []*networkservice.Mechanism, accepted *networkservice.Mechanism, in1 *networkservice.Connection) {
		t.Helper()
		offers, err := d1.Offer(ctx, "a", conn, true)
		if err != nil || len(offers) != 2 || offers[0].GetType() != wireguard.Type {
			t.Fatalf("offer: %v %v", types(offers), err)
		}
		accepted, err = d2.Accept(ctx, "b", conn, offers)
		if err != nil || accepted.GetType() != wireguard.Type {
			t.Fatalf("accept: %v %v", accepted, err)
		}
		in2 := &networkservice.Connection{Mechanism: accepted, Context: cc}
		if err := d2.Connect(ctx, "b", in2, &networkservice.Connection{Mechanism: kernelMech(epPath, "nsm-e"), Context: cc}); err != nil {
			t.Fatal(err)
		}
		in1 = &networkservice.Connection{Mechanism: kernelMech(clientPath, "nsm-c"), Context: cc}
		if err := d1.Connect(ctx, "a", in1, &networkservice.Connection{Mechanism: accepted, Context: cc}); err != nil {
			t.Fatal(err)
		}
		return offers, accepted, in1
	}
	offers, accepted, in1 := connect(d1)
	if err := pingAll(); err != nil {
		// What each namespace's links counted, and each device's peer.
		for _, ns := range []string{client, n1, n2, ep} {
			t.Log(ns, run(t, "ip", "-n", ns, "-s", "-o", "link"), run(t, "ip", "-n", ns, "neigh"))
		}
		for d, id := range map[*Dataplane]string{d1: "a", d2: "b"} {
			for _, r := range []string{roleIn, roleOut} {
				if dev, err := d.wg.Device(linkName(r, id)); err == nil {
					t.Logf("%s: port %d, peers %+v", linkName(r, id), dev.ListenPort, dev.Peers)
				}
			}
		}
		t.Fatal(err)
	}
	if want := uint32(1500 - wgOverhead); in1.GetContext().GetMTU() != want {
		t.Fatalf("mtu %d, want %d", in1.GetContext().GetMTU(), want)
	}
	// Nothing but the WireGuard tunnel joins the nodes: no VXLAN device.
	if strings.Contains(links(t, n1), "vxlan") {
		t.Fatalf("a VXLAN device on a WireGuard vWire:\n%s", links(t, n1))
	}
	kind := map[string]string{WireGuardKernel: "wireguard", WireGuardUserspace: "tun"}[mode]
	if l := run(t, "ip", "-n", n1, "-d", "-o", "link", "show", linkName(roleOut, "a")); !strings.Contains(l, kind) {
		t.Fatalf("the tunnel is not a %s device:\n%s", kind, l)
	}
	// A refresh with nothing changed finds the vWire intact.
	if err := d1.Connect(ctx, "a", in1, &networkservice.Connection{Mechanism: accepted, Context: cc}); err != nil {
		t.Fatal(err)
	}

	// node1's forwarder restarts.
	idx := run(t, "ip", "-n", n1, "-o", "link", "show", linkName(roleOut, "a"))
	d1.Close()
	d1b := newDPWG(t, p1, "10.222.0.1", time.Hour, mode)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d1b.Start(sctx); err != nil {
		t.Fatal(err)
	}
	switch mode {
	case WireGuardKernel:
		// It offers the same key and port for the live vWire (read back
		// from the device) and finds it intact.
		again, err := d1b.Offer(ctx, "a", conn, true)
		if err != nil || fmt.Sprint(again[0].GetParameters()) != fmt.Sprint(offers[0].GetParameters()) {
			t.Fatalf("restarted forwarder offers %v, was %v (%v)", again, offers, err)
		}
		if err := d1b.Connect(ctx, "a", in1, &networkservice.Connection{Mechanism: accepted, Context: cc}); err != nil {
			t.Fatal(err)
		}
		if got := run(t, "ip", "-n", n1, "-o", "link", "show", linkName(roleOut, "a")); got != idx {
			t.Fatalf("refresh after restart rebuilt the device:\n%s\n%s", idx, got)
		}
	case WireGuardUserspace:
		// The device went with the process; the old mechanism names a key
		// the new one does not hold, and the next refresh negotiates anew.
		if _, err := d1b.nl.LinkByName(linkName(roleOut, "a")); err == nil {
			t.Fatal("a userspace device outlived its forwarder")
		}
		if err := d1b.Connect(ctx, "a", in1, &networkservice.Connection{Mechanism: accepted, Context: cc}); err == nil || !strings.Contains(err.Error(), "holds no key") {
			t.Fatalf("refresh with the old keys after a restart: %v", err)
		}
		wls := []string{ifindex(t, client, "nsm-c"), ifindex(t, ep, "nsm-e")}
		start := time.Now()
		again, _, _ := connect(d1b)
		if fmt.Sprint(again[0].GetParameters()) == fmt.Sprint(offers[0].GetParameters()) {
			t.Fatal("a restarted forwarder offered the old key")
		}
		t.Logf("vWire rebuilt after the restart in %v", time.Since(start))
		// Only the tunnel was made anew: both workloads kept their
		// interfaces.
		if got := []string{ifindex(t, client, "nsm-c"), ifindex(t, ep, "nsm-e")}; fmt.Sprint(got) != fmt.Sprint(wls) {
			t.Fatalf("the workloads' interfaces were rebuilt: indexes %v, were %v", got, wls)
		}
	}
	if err := pingAll(); err != nil {
		t.Fatal(err)
	}

	for _, x := range []struct {
		d      *Dataplane
		id, ns string
		before string
	}{{d1b, "a", n1, before1}, {d2, "b", n2, before2}} {
		if err := x.d.Disconnect(ctx, x.id); err != nil {
			t.Fatal(err)
		}
		x.d.reap.flush()
		if got := linkNames(t, x.ns); got != x.before {
			t.Fatalf("links left in %s:\n%s\nwere:\n%s", x.ns, got, x.before)
		}
		if got := ruleLines(t, x.ns); got != "" {
			t.Fatalf("rules left in %s:\n%s", x.ns, got)
		}
		if u, ok := x.d.wg.(*wgUser); ok && u.Len() != 0 {
			t.Fatalf("%d userspace devices left", u.Len())
		}
	}
}

// ifindex is the index of the link name in ns.
func ifindex(t *testing.T, ns, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", name).Output() // stdout only: ip may warn on stderr
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v", ns, name, err)
	}
	idx, _, _ := strings.Cut(string(out), ":")
	return idx
}

func TestWireguardMetrics(t *testing.T) {
	for _, mode := range []string{WireGuardOff, WireGuardUserspace} {
		t.Run(mode, func(t *testing.T) {
			if mode == WireGuardUserspace && !hasTUN() {
				t.Skip("needs /dev/net/tun")
			}
			d := newDPWG(t, "", "10.222.0.1", 0, mode)
			want := map[string]string{WireGuardOff: "none", WireGuardUserspace: "userspace"}[mode]
			exp := fmt.Sprintf(`# HELP vwire_forwarder_wireguard_info The WireGuard the kernel dataplane uses for WIREGUARD vWires: kernel, userspace (wireguard-go in the forwarder) or none; always 1.
# TYPE vwire_forwarder_wireguard_info gauge
vwire_forwarder_wireguard_info{implementation=%q} 1
# HELP vwire_forwarder_wireguard_userspace_devices WireGuard devices the forwarder runs in its own process (userspace WireGuard).
# TYPE vwire_forwarder_wireguard_userspace_devices gauge
vwire_forwarder_wireguard_userspace_devices 0
`, want)
			if err := testutil.CollectAndCompare(d.Collector(), strings.NewReader(exp)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
