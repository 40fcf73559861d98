package vpp

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/binapi/vlib"

	"github.com/vwire/vwire/mechanisms/wireguard"
)

// wgTry is one try of a remote KERNEL-WireGuard-KERNEL vWire, in the
// forwarder protocol's order up to node 2's build: node 1 accepts the
// client and offers WireGuard (its key pair for the id), node 2 accepts
// (its own) and builds. Node 1's Connect is the caller's.
type wgTry struct {
	in, out, ep *networkservice.Mechanism
	cc          *networkservice.ConnectionContext
}

func tryWireguard(t *testing.T, n1, n2 *Dataplane, idA, idB string, client, ep *workload) wgTry {
	t.Helper()
	ctx := context.Background()
	cc := ipCtx(client.addr, ep.addr)
	c := &networkservice.Connection{Payload: payload.IP, Context: cc}
	in, err := n1.Accept(ctx, idA, c, []*networkservice.Mechanism{client.clientMech()})
	if err != nil {
		t.Fatal(err)
	}
	offers, err := n1.Offer(ctx, idA, c, true)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == wireguard.Type })
	if i < 0 {
		t.Fatalf("wireguard not offered: %v", offers)
	}
	out, err := n2.Accept(ctx, idB, c, offers[i:i+1])
	if err != nil {
		t.Fatal(err)
	}
	local, err := n2.Offer(ctx, idB, c, false)
	if err != nil {
		t.Fatal(err)
	}
	epMech := ep.endpointChoice(t, local)
	if err := n2.Connect(ctx, idB, &networkservice.Connection{Mechanism: out, Context: cc, Payload: payload.IP},
		&networkservice.Connection{Mechanism: epMech, Context: cc, Payload: payload.IP}); err != nil {
		t.Fatal(err)
	}
	return wgTry{in: in, out: out, ep: epMech, cc: cc}
}

func (w wgTry) connectA(ctx context.Context, n1 *Dataplane, idA string) error {
	return n1.Connect(ctx, idA, &networkservice.Connection{Mechanism: w.in, Context: w.cc, Payload: payload.IP},
		&networkservice.Connection{Mechanism: w.out, Context: w.cc, Payload: payload.IP})
}

// giveUpQueued runs node 1's Connect of try w behind an admission slot
// the test holds (bound 1) and ends its caller's context once it waits:
// the Connect must give up having sent VPP nothing.
func giveUpQueued(t *testing.T, n1 *Dataplane, idA string, w wgTry) {
	t.Helper()
	release, err := n1.admission.admit(context.Background(), opBuild)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.connectA(ctx, n1, idA) }()
	waitUntil(t, "node 1's Connect waits for admission", func() bool { _, waiting := n1.admission.busy(); return waiting == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("node 1's Connect did not give up")
	}
	if wgs := wireguardCount(t, n1); wgs != 0 {
		t.Fatalf("node 1's Connect gave up queued and still made %d WireGuard interfaces", wgs)
	}
}

func wireguardCount(t testing.TB, d *Dataplane) int {
	t.Helper()
	wgs, err := d.vpp.ListWireguardInterfaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(wgs)
}

func wireguardPeerKeys(t testing.TB, d *Dataplane) []string {
	t.Helper()
	ps, err := d.vpp.ListWireguardPeers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, wireguard.EncodeKey(p.PublicKey))
	}
	return out
}

var keypairErrors = regexp.MustCompile(`(?m)^\s*(\d+)\s+wg4-output-tun\s+Keypair error`)

// keypairErrorCount is the count of VPP's "wg4-output-tun: Keypair error"
// (a packet to a peer with no session: no handshake completed).
func keypairErrorCount(t testing.TB, d *Dataplane) int {
	t.Helper()
	r, err := vlib.NewServiceClient(d.conn).CliInband(context.Background(), &vlib.CliInband{Cmd: "show errors"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range keypairErrors.FindAllStringSubmatch(r.Reply, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// TestWireguardRetryAfterGiveUp: node 1's Connect of a remote WireGuard
// vWire gives up in its admission queue (bound 1, held busy) after node 2
// built its side; the forwarder's undo disconnects node 1's id (its key
// pair goes), and the retry, with the same ids, offers a new key pair.
// Whether node 2's side of the failed try was closed before the retry
// reached it (a fresh build there) or not yet (a refresh there, which
// rebuilds its WireGuard side for the new peer key), the retry carries
// pings both ways, each node has one WireGuard interface whose one peer
// is the other's current key, and nothing is left after the Close. The
// last case shows the fault the forwarder's order prevents (see
// forwarder.waitCloses): the failed try's Close reaching node 2 after the
// retry's build there leaves node 1 a peer with no far side, and VPP
// counts "Keypair error" for what the client sends.
func TestWireguardRetryAfterGiveUp(t *testing.T) {
	needVPP(t)
	n1, n2 := twoNodes(t, func(c *Config) { c.MaxInFlight = 1 })
	before1, before2 := interfacesOf(t, n1), interfacesOf(t, n2)
	for i, tc := range []struct {
		name string
		// farClosedFirst: node 2's side of the failed try is closed
		// before the retry reaches node 2.
		farClosedFirst bool
		// lateClose: the failed try's Close reaches node 2 after the
		// retry's build there (the fault).
		lateClose bool
	}{
		{name: "far side closed first", farClosedFirst: true},
		{name: "retry reaches the far side first"},
		{name: "late close of the failed try", lateClose: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client := newWorkload(t, "kernel", "nsc", fmt.Sprintf("172.16.%d.1", 90+i))
			ep := newWorkload(t, "kernel", "nse", fmt.Sprintf("172.16.%d.2", 90+i))
			idA, idB := fmt.Sprintf("wgretry%d-a", i), fmt.Sprintf("wgretry%d-b", i)
			t.Cleanup(func() {
				_ = n1.Disconnect(ctx, idA)
				_ = n2.Disconnect(ctx, idB)
			})

			first := tryWireguard(t, n1, n2, idA, idB, client, ep)
			giveUpQueued(t, n1, idA, first)
			// The forwarder's undo of the failed Request.
			if err := n1.Disconnect(ctx, idA); err != nil {
				t.Fatal(err)
			}
			if tc.farClosedFirst {
				if err := n2.Disconnect(ctx, idB); err != nil {
					t.Fatal(err)
				}
			}

			retry := tryWireguard(t, n1, n2, idA, idB, client, ep)
			k1, _ := wireguard.FromOffer(first.out)
			k2, _ := wireguard.FromOffer(retry.out)
			if k1.SrcPublicKey == k2.SrcPublicKey {
				t.Fatal("the retry offered the failed try's key pair; its undo should have dropped it")
			}
			if tc.lateClose {
				if err := n2.Disconnect(ctx, idB); err != nil {
					t.Fatal(err)
				}
			}
			if err := retry.connectA(ctx, n1, idA); err != nil {
				t.Fatal(err)
			}
			if tc.lateClose {
				errsBefore := keypairErrorCount(t, n1)
				if err := client.ping(t, ep.addr); err == nil {
					t.Fatal("a ping crossed a vWire whose far side was closed")
				}
				if got := keypairErrorCount(t, n1); got <= errsBefore {
					t.Errorf("node 1 counted no Keypair error (%d, %d before) for pings to a peer with no far side", got, errsBefore)
				}
				return
			}
			eventually(t, 20*time.Second, func() error { return client.ping(t, ep.addr) })
			eventually(t, 10*time.Second, func() error { return ep.ping(t, client.addr) })
			for _, c := range []struct {
				n    *Dataplane
				name string
				want string // the other's public key for this vWire
			}{{n1, "node 1", k2.DstPublicKey}, {n2, "node 2", k2.SrcPublicKey}} {
				if got := wireguardCount(t, c.n); got != 1 {
					t.Errorf("%s has %d WireGuard interfaces, want the retry's one", c.name, got)
				}
				if got := wireguardPeerKeys(t, c.n); !slices.Equal(got, []string{c.want}) {
					t.Errorf("%s's WireGuard peers %v, want the other's current key %s", c.name, got, c.want)
				}
			}
			if err := n1.Disconnect(ctx, idA); err != nil {
				t.Fatal(err)
			}
			if err := n2.Disconnect(ctx, idB); err != nil {
				t.Fatal(err)
			}
			if wireguardCount(t, n1)+wireguardCount(t, n2) != 0 || len(wireguardPeerKeys(t, n1))+len(wireguardPeerKeys(t, n2)) != 0 {
				t.Error("WireGuard interfaces or peers left after the Close")
			}
		})
	}
	if got := interfacesOf(t, n1); got != before1 {
		t.Errorf("node 1 after the test:\n%s\nbefore:\n%s", got, before1)
	}
	if got := interfacesOf(t, n2); got != before2 {
		t.Errorf("node 2 after the test:\n%s\nbefore:\n%s", got, before2)
	}
}

// TestWireguardRetryAfterFarPeerActivated: as TestWireguardRetryAfterGiveUp's
// second case, but node 2's passive peer of the failed try has been made
// active (no handshake came: node 1 gave up) before the retry reaches node
// 2, which rebuilds its WireGuard side for the new key in place; both ends
// then start handshakes. The retry must carry pings both ways.
func TestWireguardRetryAfterFarPeerActivated(t *testing.T) {
	needVPP(t)
	n1, n2 := twoNodes(t, func(c *Config) { c.MaxInFlight = 1; c.passiveFallback = 300 * time.Millisecond })
	ctx := context.Background()
	client := newWorkload(t, "kernel", "nsc", "172.16.95.1")
	ep := newWorkload(t, "kernel", "nse", "172.16.95.2")
	idA, idB := "wgact-a", "wgact-b"
	t.Cleanup(func() {
		_ = n1.Disconnect(ctx, idA)
		_ = n2.Disconnect(ctx, idB)
	})
	first := tryWireguard(t, n1, n2, idA, idB, client, ep)
	giveUpQueued(t, n1, idA, first)
	if err := n1.Disconnect(ctx, idA); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node 2's passive peer is made active", func() bool {
		ps, err := n2.vpp.ListWireguardPeers(ctx)
		return err == nil && len(ps) == 1 && ps[0].Port != 0
	})
	retry := tryWireguard(t, n1, n2, idA, idB, client, ep)
	if err := retry.connectA(ctx, n1, idA); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error { return client.ping(t, ep.addr) })
	eventually(t, 10*time.Second, func() error { return ep.ping(t, client.addr) })
}
