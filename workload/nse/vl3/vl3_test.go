package vl3

import (
	"context"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/mechanisms/kernel"
)

func TestAddresses(t *testing.T) {
	s, err := New(Config{Prefix: "172.31.0.0/29"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got := map[string]string{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		c := &networkservice.Connection{Id: id}
		if err := s.Request(ctx, c); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		ip := c.GetContext().GetIpContext()
		if ip.GetDstIpAddrs()[0] != "172.31.0.1/32" || ip.GetSrcRoutes()[0].GetPrefix() != "172.31.0.0/29" {
			t.Fatalf("%s: %v", id, ip)
		}
		got[id] = ip.GetSrcIpAddrs()[0]
	}
	if got["a"] != "172.31.0.2/32" || got["f"] != "172.31.0.7/32" {
		t.Fatalf("addresses %v", got)
	}
	if err := s.Request(ctx, &networkservice.Connection{Id: "g"}); err == nil {
		t.Fatal("exhausted prefix gave an address")
	}
	// A refresh keeps the address; a Close frees it.
	c := &networkservice.Connection{Id: "c"}
	s.Request(ctx, c)
	if c.GetContext().GetIpContext().GetSrcIpAddrs()[0] != got["c"] {
		t.Fatal("refresh moved the address")
	}
	s.Close(ctx, c)
	g := &networkservice.Connection{Id: "g"}
	if err := s.Request(ctx, g); err != nil || g.GetContext().GetIpContext().GetSrcIpAddrs()[0] != got["c"] {
		t.Fatalf("freed address not reused: %v %v", g.GetContext(), err)
	}
	if _, err := New(Config{Prefix: "10.0.0.0/31"}); err == nil {
		t.Fatal("a /31 accepted")
	}
}

// A shared vL3: clients get addresses from the endpoint's subnet and a
// route to the whole prefix.
func TestSubnetClients(t *testing.T) {
	s, err := New(Config{Prefix: "172.16.0.0/16", Subnet: "172.16.2.0/24", PeerService: "vl3-peers"})
	if err != nil {
		t.Fatal(err)
	}
	c := &networkservice.Connection{Id: "a", NetworkService: "vl3"}
	if err := s.Request(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	ip := c.GetContext().GetIpContext()
	want := (&networkservice.IPContext{
		SrcIpAddrs: []string{"172.16.2.2/32"},
		DstIpAddrs: []string{"172.16.2.1/32"},
		SrcRoutes:  []*networkservice.Route{{Prefix: "172.16.0.0/16"}},
		DstRoutes:  []*networkservice.Route{{Prefix: "172.16.2.2/32"}},
	})
	if ip.String() != want.String() {
		t.Fatalf("client context %v, want %v", ip, want)
	}
}

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{name: "whole prefix", cfg: Config{Prefix: "172.31.0.0/24"}, ok: true},
		{name: "subnet", cfg: Config{Prefix: "172.16.0.0/16", Subnet: "172.16.1.0/24", PeerService: "p"}, ok: true},
		{name: "subnet masked", cfg: Config{Prefix: "172.16.0.0/16", Subnet: "172.16.1.7/24"}, ok: true},
		{name: "ipv6", cfg: Config{Prefix: "fd00::/48", Subnet: "fd00:0:0:1::/64", PeerService: "p"}, ok: true},
		{name: "subnet outside", cfg: Config{Prefix: "172.16.0.0/16", Subnet: "172.17.1.0/24"}},
		{name: "subnet wider", cfg: Config{Prefix: "172.16.0.0/16", Subnet: "172.16.0.0/12"}},
		{name: "subnet other family", cfg: Config{Prefix: "172.16.0.0/16", Subnet: "fd00::/64"}},
		{name: "subnet too small", cfg: Config{Prefix: "172.16.0.0/16", Subnet: "172.16.1.0/31"}},
		{name: "peers without subnet", cfg: Config{Prefix: "172.16.0.0/16", PeerService: "p"}},
		{name: "bad prefix", cfg: Config{Prefix: "172.16.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%+v): %v, want ok=%v", tc.cfg, err, tc.ok)
			}
		})
	}
}

func TestPeerServiceName(t *testing.T) {
	for in, want := range map[string]string{
		"vl3":                        "vl3-peers",
		"vl3@finance.example.com":    "vl3-peers@finance.example.com",
		"distributed-vl3@example.co": "distributed-vl3-peers@example.co",
	} {
		if got := PeerServiceName(in); got != want {
			t.Errorf("PeerServiceName(%q) = %q, want %q", in, got, want)
		}
	}
}

// peerConn is a peer's Request as the answering endpoint sees it.
func peerConn(id, peer string, offer *networkservice.IPContext) *networkservice.Connection {
	return &networkservice.Connection{
		Id:             id,
		NetworkService: "vl3-peers",
		Mechanism:      kernel.New(kernel.Params{Name: "nsm1", NetNSURL: "file:///proc/1/ns/net"}),
		Context:        &networkservice.ConnectionContext{IpContext: offer},
		Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{
			{Name: peer, Id: id + "-0"}, {Name: "manager", Id: id + "-1"}, {Name: "me", Id: id},
		}},
	}
}

// The answering side of a peer vWire: the route to the asking peer's
// subnet is recorded, refreshes keep it, overlapping claims are refused,
// Close forgets it.
func TestServicePeerRequests(t *testing.T) {
	ctx := context.Background()
	b, _ := New(Config{Prefix: "172.16.0.0/16", Subnet: "172.16.2.0/24", PeerService: "vl3-peers"})
	a, _ := NewPlan("172.16.0.0/16", "172.16.1.0/24")

	c := peerConn("p1", "vl3-a", a.offer())
	if err := b.Request(ctx, c); err != nil {
		t.Fatal(err)
	}
	got := c.GetContext().GetIpContext()
	want := &networkservice.IPContext{
		SrcIpAddrs: []string{"172.16.1.1/32"},
		DstIpAddrs: []string{"172.16.2.1/32"},
		SrcRoutes:  []*networkservice.Route{{Prefix: "172.16.2.0/24"}},
		DstRoutes:  []*networkservice.Route{{Prefix: "172.16.1.0/24"}},
	}
	if got.String() != want.String() {
		t.Fatalf("peer context %v, want %v", got, want)
	}
	if s, err := a.accepted(got); err != nil || s.String() != "172.16.2.0/24" {
		t.Fatalf("the asking side reads %v, %v", s, err)
	}
	// A refresh carries the full context back.
	if err := b.Request(ctx, c); err != nil || c.GetContext().GetIpContext().String() != want.String() {
		t.Fatalf("refresh: %v, %v", c.GetContext().GetIpContext(), err)
	}
	// The same peer again on a new vWire (it restarted): accepted.
	if err := b.Request(ctx, peerConn("p2", "vl3-a", a.offer())); err != nil {
		t.Fatalf("restarted peer refused: %v", err)
	}
	// Another peer claiming an overlapping subnet: refused.
	other, _ := NewPlan("172.16.0.0/16", "172.16.1.128/25")
	if err := b.Request(ctx, peerConn("p3", "vl3-c", other.offer())); err == nil {
		t.Fatal("an overlapping subnet accepted")
	}
	// A peer whose subnet overlaps ours, or lies outside the prefix: refused.
	for _, subnet := range []string{"172.16.2.0/25", "172.16.0.0/16"} {
		bad := peerConn("p4", "vl3-d", &networkservice.IPContext{
			SrcIpAddrs: []string{"172.16.2.1/32"}, DstRoutes: []*networkservice.Route{{Prefix: subnet}},
		})
		if err := b.Request(ctx, bad); err == nil {
			t.Errorf("peer subnet %s accepted", subnet)
		}
	}
	outside := peerConn("p5", "vl3-e", &networkservice.IPContext{
		SrcIpAddrs: []string{"10.0.0.1/32"}, DstRoutes: []*networkservice.Route{{Prefix: "10.0.0.0/24"}},
	})
	if err := b.Request(ctx, outside); err == nil {
		t.Error("a subnet outside the prefix accepted")
	}
	// Not KERNEL: refused.
	m := peerConn("p6", "vl3-f", a.offer())
	m.Mechanism = &networkservice.Mechanism{Cls: "LOCAL", Type: "MEMIF"}
	if err := b.Request(ctx, m); err == nil {
		t.Error("a MEMIF peer vWire accepted")
	}
	if n := len(b.Routes()); n != 2 {
		t.Fatalf("routes %v, want p1 and p2", b.Routes())
	}
	b.Close(ctx, c)
	b.Close(ctx, &networkservice.Connection{Id: "p2"})
	if r := b.Routes(); len(r) != 0 {
		t.Fatalf("routes after Close: %v", r)
	}
}
