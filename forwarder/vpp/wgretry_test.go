package vpp

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// TestWireguardRetryAfterGiveUpFake is TestWireguardRetryAfterGiveUp's
// second case on the fake VPP: node A's Connect gives up queued (bound 1,
// held busy) after node B built its side, A's undo drops its key pair, and
// the retry (a new key pair) reaches B before any Close of the failed try:
// B rebuilds its WireGuard side for the new peer key, and each node ends
// with one interface whose one peer is the other's current key.
func TestWireguardRetryAfterGiveUpFake(t *testing.T) {
	ctx := context.Background()
	a := newTestNode(t, "192.0.2.1", func(c *Config) { c.MaxInFlight = 1 })
	b := newTestNode(t, "192.0.2.2")
	beforeA, beforeB := a.vpp.snapshot(), b.vpp.snapshot()
	try := func() wgTry {
		t.Helper()
		c := &networkservice.Connection{Payload: payload.IP}
		offers, err := a.dp.Offer(ctx, "a", c, true)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == wireguard.Type })
		accepted, err := b.dp.Accept(ctx, "b", c, offers[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if err := b.dp.Connect(ctx, "b", conn(accepted, payload.IP), conn(kernelMech(nsServer, "nsm-e"), payload.IP)); err != nil {
			t.Fatal(err)
		}
		return wgTry{in: kernelMech(nsClient, "nsm-c"), out: accepted, cc: ipContext()}
	}
	first := try()
	a.vpp.requests(true)
	giveUpQueued(t, a.dp, "a", first)
	for _, r := range a.vpp.requests(false) {
		if strings.HasPrefix(r, "wireguard_") || strings.HasPrefix(r, "create_") {
			t.Fatalf("node A's Connect gave up queued and sent %s", r)
		}
	}
	if err := a.dp.Disconnect(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	retry := try()
	if err := retry.connectA(ctx, a.dp, "a"); err != nil {
		t.Fatal(err)
	}
	k1, _ := wireguard.FromOffer(first.out)
	k2, _ := wireguard.FromOffer(retry.out)
	if k1.SrcPublicKey == k2.SrcPublicKey {
		t.Fatal("the retry offered the failed try's key pair")
	}
	for _, c := range []struct {
		n    *testNode
		name string
		want string
	}{{a, "node A", k2.DstPublicKey}, {b, "node B", k2.SrcPublicKey}} {
		if got := wireguardCount(t, c.n.dp); got != 1 {
			t.Errorf("%s has %d WireGuard interfaces, want the retry's one", c.name, got)
		}
		if got := wireguardPeerKeys(t, c.n.dp); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s's WireGuard peers %v, want the other's current key %s", c.name, got, c.want)
		}
	}
	for _, n := range []*testNode{a, b} {
		id := map[*testNode]string{a: "a", b: "b"}[n]
		if err := n.dp.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.vpp.snapshot(); got != beforeA {
		t.Fatalf("node A not clean:\n%s\nwas\n%s", got, beforeA)
	}
	if got := b.vpp.snapshot(); got != beforeB {
		t.Fatalf("node B not clean:\n%s\nwas\n%s", got, beforeB)
	}
}
