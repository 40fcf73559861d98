package forwarder

import (
	"net/netip"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/mechanisms/vxlan"
)

// tunnelDP is a Dataplane whose only behaviour under test is its tunnel
// address.
type tunnelDP struct {
	Dataplane
	addr netip.Addr
}

func (d tunnelDP) TunnelAddr() netip.Addr { return d.addr }

func TestPublicAddressTranslation(t *testing.T) {
	tunnel := netip.MustParseAddr("10.0.0.2")
	public := netip.MustParseAddr("203.0.113.7") // not on this host: behind a NAT
	offer := vxlan.New(vxlan.Offer(tunnel, 42))
	if offer.GetParameters()[paramSrcIP] != tunnel.String() {
		t.Fatalf("vxlan offer params %v: the test assumes src_ip", offer.GetParameters())
	}
	local := &networkservice.Mechanism{Cls: "LOCAL", Type: "KERNEL", Parameters: map[string]string{paramSrcIP: "x"}}

	for _, tc := range []struct {
		name          string
		public        netip.Addr
		publicIsLocal bool
		advertised    string // src_ip offered to the other domain
		bound         string // src_ip the dataplane builds with
	}{
		{"no public address", netip.Addr{}, false, "10.0.0.2", "10.0.0.2"},
		{"behind a NAT", public, false, "203.0.113.7", "10.0.0.2"},
		{"public address on this host", public, true, "203.0.113.7", "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &Forwarder{dp: tunnelDP{addr: tunnel}, publicIP: tc.public, publicIsLocal: tc.publicIsLocal}
			adv := f.advertise(offer, paramSrcIP)
			if got := adv.GetParameters()[paramSrcIP]; got != tc.advertised {
				t.Errorf("advertised src_ip %s, want %s", got, tc.advertised)
			}
			if offer.GetParameters()[paramSrcIP] != tunnel.String() {
				t.Fatal("advertise changed the dataplane's own offer")
			}
			if got := f.bindable(adv, paramSrcIP).GetParameters()[paramSrcIP]; got != tc.bound {
				t.Errorf("bound src_ip %s, want %s", got, tc.bound)
			}
			if got := f.advertise(local, paramSrcIP); got.GetParameters()[paramSrcIP] != "x" {
				t.Errorf("a LOCAL mechanism was rewritten: %v", got)
			}
		})
	}
}

func TestHostHas(t *testing.T) {
	if !HostHas(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("HostHas(127.0.0.1) = false")
	}
	if HostHas(netip.MustParseAddr("192.0.2.254")) {
		t.Fatal("HostHas(192.0.2.254) = true")
	}
}
