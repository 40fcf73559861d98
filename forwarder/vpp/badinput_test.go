package vpp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

func mech(typ string, params map[string]string) *networkservice.Mechanism {
	c := cls.REMOTE
	if typ == "KERNEL" || typ == memif.Type {
		c = cls.LOCAL
	}
	return &networkservice.Mechanism{Cls: c, Type: typ, Parameters: params}
}

const (
	keyA = "oAr1O5c6lU8mEM1N2GQmoZ9E43qVMiVGSu5vw0jE4WA="
	keyB = "Ui6WvRmMJ3A/fZxz+Y8JvgTtXbIxZzN0xw5dXX4mS0s="
)

// Bad mechanism parameters or IP context: Connect fails with an error
// wrapping forwarder.ErrNoMechanism before any VPP call.
func TestConnectRefusesBadInput(t *testing.T) {
	good := kernelMech(nsServer, "nsm-e")
	for _, tc := range []struct {
		name    string
		in      *networkservice.Mechanism
		ctx     func(*networkservice.ConnectionContext)
		payload string
		want    string
	}{
		{name: "interface name over 15 bytes", in: mech("KERNEL", map[string]string{"name": "a-name-too-long-for-linux", "inodeURL": "file://" + nsClient}), want: "at most 15"},
		{name: "no netns", in: mech("KERNEL", map[string]string{"name": "nsm-c"}), want: "inodeURL"},
		{name: "inode url", in: mech("KERNEL", map[string]string{"name": "nsm-c", "inodeURL": "inode://4/4026531993"}), want: "without its descriptor"},
		{name: "bad src address", in: kernelMech(nsClient, "nsm-c"), ctx: func(c *networkservice.ConnectionContext) { c.IpContext.SrcIpAddrs = []string{"not-an-ip"} }, want: "src_ip_addrs"},
		{name: "bad route", in: kernelMech(nsClient, "nsm-c"), ctx: func(c *networkservice.ConnectionContext) {
			c.IpContext.DstRoutes = []*networkservice.Route{{Prefix: "10.0.0.0/8", NextHop: "gateway"}}
		}, want: "next hop"},
		{name: "vni out of range", payload: payload.Ethernet, in: mech(vxlan.Type, map[string]string{"src_ip": "192.0.2.2", "dst_ip": "192.0.2.1", "vni": "16777216"}), want: "vni"},
		{name: "vxlan bad ip", payload: payload.Ethernet, in: mech(vxlan.Type, map[string]string{"src_ip": "192.0.2.300", "dst_ip": "192.0.2.1", "vni": "5"}), want: "src_ip"},
		{name: "vxlan not our address", payload: payload.Ethernet, in: mech(vxlan.Type, map[string]string{"src_ip": "192.0.2.2", "dst_ip": "192.0.2.9", "vni": "5"}), want: "not this node's"},
		{name: "wireguard bad key", in: mech(wireguard.Type, map[string]string{"src_ip": "192.0.2.2", "dst_ip": "192.0.2.1", "src_public_key": "not-a-key", "dst_public_key": keyB}), want: "src_public_key"},
		{name: "wireguard key we do not hold", in: mech(wireguard.Type, map[string]string{"src_ip": "192.0.2.2", "dst_ip": "192.0.2.1", "src_public_key": keyA, "dst_public_key": keyB}), want: "holds no key"},
		{name: "ipsec missing key", in: mech(ipsec.Type, map[string]string{"src_ip": "192.0.2.2", "dst_ip": "192.0.2.1", "src_public_key": keyA}), want: "dst_public_key"},
		{name: "wireguard with ethernet payload", payload: payload.Ethernet, in: mech(wireguard.Type, map[string]string{"src_ip": "192.0.2.2", "dst_ip": "192.0.2.1", "src_public_key": keyA, "dst_public_key": keyB}), want: "ETHERNET payload needs VXLAN"},
		{name: "memif socket path too long", in: memifMech(strings.Repeat("s", 100)), want: "socket path"},
		{name: "unknown mechanism", in: mech("SRIOV", nil), want: "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, "192.0.2.1")
			in, out := conn(tc.in, tc.payload), conn(good, tc.payload)
			if tc.ctx != nil {
				tc.ctx(in.Context)
			}
			err := n.dp.Connect(context.Background(), "x", in, out)
			if !errors.Is(err, forwarder.ErrNoMechanism) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrNoMechanism mentioning %q", err, tc.want)
			}
			if got := n.vpp.requests(true); len(got) != 0 {
				t.Fatalf("VPP was called: %v", got)
			}
			if len(n.host.calls) != 0 {
				t.Fatalf("Linux was changed: %v", n.host.calls)
			}
		})
	}
}

func TestAcceptRefusesBadOffers(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	for _, tc := range []struct {
		name string
		m    *networkservice.Mechanism
	}{
		{"vni out of range", mech(vxlan.Type, map[string]string{"src_ip": "192.0.2.2", "vni": "16777216"})},
		{"other family", mech(vxlan.Type, map[string]string{"src_ip": "2001:db8::1", "vni": "7"})},
		{"bad key", mech(wireguard.Type, map[string]string{"src_ip": "192.0.2.2", "src_public_key": "AAAA"})},
		{"kernel without netns", mech("KERNEL", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.dp.Accept(context.Background(), "x", &networkservice.Connection{}, []*networkservice.Mechanism{tc.m})
			if !errors.Is(err, forwarder.ErrNoMechanism) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if got := n.vpp.requests(true); len(got) != 0 {
		t.Fatalf("VPP was called: %v", got)
	}
}

func TestOffers(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t, "192.0.2.1")
	types := func(ms []*networkservice.Mechanism) (out []string) {
		for _, m := range ms {
			out = append(out, m.GetType())
		}
		return out
	}
	ip := &networkservice.Connection{Payload: payload.IP}
	eth := &networkservice.Connection{Payload: payload.Ethernet}
	for _, tc := range []struct {
		name   string
		conn   *networkservice.Connection
		remote bool
		want   string
	}{
		{"ip remote", ip, true, "[WIREGUARD IPSEC VXLAN]"},
		{"ethernet remote", eth, true, "[VXLAN]"},
		{"ip local", ip, false, "[KERNEL MEMIF]"},
	} {
		offers, err := n.dp.Offer(ctx, "id-"+tc.name, tc.conn, tc.remote)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(types(offers), " "); "["+got+"]" != tc.want {
			t.Errorf("%s: offers %s, want %s", tc.name, got, tc.want)
		}
	}
	// A refresh offers the same VNI and keys.
	o1, _ := n.dp.Offer(ctx, "same", ip, true)
	o2, _ := n.dp.Offer(ctx, "same", ip, true)
	for i := range o1 {
		for k, v := range o1[i].GetParameters() {
			if o2[i].GetParameters()[k] != v {
				t.Fatalf("%s %s changed: %s -> %s", o1[i].GetType(), k, v, o2[i].GetParameters()[k])
			}
		}
	}
	// Without an uplink, no REMOTE mechanism.
	local := newTestNode(t, "192.0.2.9", func(c *Config) { c.Uplink = "" })
	if offers, _ := local.dp.Offer(ctx, "x", ip, true); len(offers) != 0 {
		t.Fatalf("offers without an uplink: %v", offers)
	}
}
