package vl3

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

func TestPlanGateway(t *testing.T) {
	for _, tc := range []struct {
		prefix, subnet string
		gateway        string
		shared         bool
	}{
		{prefix: "172.31.0.0/24", gateway: "172.31.0.1"},
		{prefix: "172.16.0.0/16", subnet: "172.16.3.0/24", gateway: "172.16.3.1", shared: true},
		{prefix: "fd00::/48", subnet: "fd00:0:0:2::/64", gateway: "fd00:0:0:2::1", shared: true},
	} {
		p, err := NewPlan(tc.prefix, tc.subnet)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.prefix, tc.subnet, err)
		}
		if p.Gateway().String() != tc.gateway || p.Shared() != tc.shared {
			t.Errorf("%s %s: gateway %s shared %v, want %s %v", tc.prefix, tc.subnet, p.Gateway(), p.Shared(), tc.gateway, tc.shared)
		}
	}
}

func TestPlanPeerContexts(t *testing.T) {
	a, _ := NewPlan("172.16.0.0/16", "172.16.1.0/24")
	b, _ := NewPlan("172.16.0.0/16", "172.16.2.0/24")
	for _, tc := range []struct {
		name  string
		offer *networkservice.IPContext
		err   bool
	}{
		{name: "offer", offer: a.offer()},
		{name: "no route", offer: &networkservice.IPContext{SrcIpAddrs: []string{"172.16.1.1/32"}}, err: true},
		{name: "two routes", offer: &networkservice.IPContext{SrcIpAddrs: []string{"172.16.1.1/32"},
			DstRoutes: []*networkservice.Route{{Prefix: "172.16.1.0/24"}, {Prefix: "172.16.5.0/24"}}}, err: true},
		{name: "address outside its subnet", offer: &networkservice.IPContext{SrcIpAddrs: []string{"172.16.9.1/32"},
			DstRoutes: []*networkservice.Route{{Prefix: "172.16.1.0/24"}}}, err: true},
		{name: "no address", offer: &networkservice.IPContext{DstRoutes: []*networkservice.Route{{Prefix: "172.16.1.0/24"}}}, err: true},
		{name: "bad route", offer: &networkservice.IPContext{SrcIpAddrs: []string{"172.16.1.1/32"},
			DstRoutes: []*networkservice.Route{{Prefix: "nonsense"}}}, err: true},
		{name: "overlaps the answering side", offer: &networkservice.IPContext{SrcIpAddrs: []string{"172.16.2.1/32"},
			DstRoutes: []*networkservice.Route{{Prefix: "172.16.2.0/23"}}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ipc, subnet, err := b.answer(tc.offer)
			if (err != nil) != tc.err {
				t.Fatalf("answer: %v, want error %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if subnet != a.Subnet {
				t.Errorf("subnet %s, want %s", subnet, a.Subnet)
			}
			got, err := a.accepted(ipc)
			if err != nil || got != b.Subnet {
				t.Errorf("accepted: %s, %v, want %s", got, err, b.Subnet)
			}
			// The answer answers the same again (a refresh).
			again, _, err := b.answer(ipc)
			if err != nil || again.String() != ipc.String() {
				t.Errorf("refresh answer %v, %v, want %v", again, err, ipc)
			}
		})
	}
	// The asking side refuses an answer that claims its own subnet.
	if _, err := a.accepted(&networkservice.IPContext{SrcRoutes: []*networkservice.Route{{Prefix: "172.16.1.0/24"}}}); err == nil {
		t.Error("accepted a peer claiming our own subnet")
	}
}

func TestRouteTable(t *testing.T) {
	pfx := netip.MustParsePrefix
	type step struct {
		add    *PeerRoute
		remove string
		new    bool
		err    bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // conns left, by subnet
	}{
		{name: "two peers", steps: []step{
			{add: &PeerRoute{Conn: "1", Peer: "b", Subnet: pfx("10.0.2.0/24")}, new: true},
			{add: &PeerRoute{Conn: "2", Peer: "c", Subnet: pfx("10.0.3.0/24")}, new: true},
		}, want: []string{"1", "2"}},
		{name: "refresh", steps: []step{
			{add: &PeerRoute{Conn: "1", Peer: "b", Subnet: pfx("10.0.2.0/24")}, new: true},
			{add: &PeerRoute{Conn: "1", Peer: "b", Subnet: pfx("10.0.2.0/24")}},
		}, want: []string{"1"}},
		{name: "overlap refused", steps: []step{
			{add: &PeerRoute{Conn: "1", Peer: "b", Subnet: pfx("10.0.2.0/24")}, new: true},
			{add: &PeerRoute{Conn: "2", Peer: "c", Subnet: pfx("10.0.2.128/25")}, err: true},
			{add: &PeerRoute{Conn: "3", Peer: "d", Subnet: pfx("10.0.0.0/16")}, err: true},
		}, want: []string{"1"}},
		{name: "restarted peer on a new vWire", steps: []step{
			{add: &PeerRoute{Conn: "1", Peer: "b", Subnet: pfx("10.0.2.0/24")}, new: true},
			{add: &PeerRoute{Conn: "2", Peer: "b", Subnet: pfx("10.0.2.0/24")}, new: true},
			{remove: "1"},
		}, want: []string{"2"}},
		{name: "freed subnet taken by another peer", steps: []step{
			{add: &PeerRoute{Conn: "1", Peer: "b", Subnet: pfx("10.0.2.0/24")}, new: true},
			{remove: "1"},
			{add: &PeerRoute{Conn: "2", Peer: "c", Subnet: pfx("10.0.2.0/24")}, new: true},
		}, want: []string{"2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := routeTable{}
			for i, s := range tc.steps {
				if s.add == nil {
					if _, ok := rt.remove(s.remove); !ok {
						t.Fatalf("step %d: remove %s: not there", i, s.remove)
					}
					continue
				}
				added, err := rt.add(*s.add)
				if (err != nil) != s.err || (err != nil && !errors.Is(err, errOverlap)) {
					t.Fatalf("step %d: add %+v: %v, want error %v", i, *s.add, err, s.err)
				}
				if added != s.new {
					t.Fatalf("step %d: add %+v: new %v, want %v", i, *s.add, added, s.new)
				}
			}
			var got []string
			for _, r := range rt.list() {
				got = append(got, r.Conn)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("routes %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("routes %v, want %v", got, tc.want)
				}
			}
		})
	}
}
