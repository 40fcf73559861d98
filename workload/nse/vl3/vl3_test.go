package vl3

import (
	"context"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

func TestAddresses(t *testing.T) {
	s, err := New("172.31.0.0/29")
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
	if _, err := New("10.0.0.0/31"); err == nil {
		t.Fatal("a /31 accepted")
	}
}
