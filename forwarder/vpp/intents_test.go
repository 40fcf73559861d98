package vpp

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus/testutil"

	mipsec "github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// openIntents returns the vWire ids n's journal has open intents of.
func openIntents(n *testNode) []string { return n.dp.intents.ids() }

// TestUnansweredCreatesRemovedAfterRestart: a create that VPP carries out
// but never answers, whose rollback cannot look for what it made (the
// lookup refused, as by a connection that broke), leaves an untagged
// object; the forwarder then restarts (its memory gone: a new Dataplane on
// the same state directory and VPP). The new one finds the object by the
// keys the intent journal kept and deletes it: VPP is back as it was, and
// the journal empty. Before, the restarted forwarder never found it (no
// tag), and it stayed.
func TestUnansweredCreatesRemovedAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name, typ, payload string
		withhold           []string // creates carried out, never answered
		withholdAfter      int      // answer that many of withhold[0] first
		refuse             string   // the rollback's lookup, refused
		failNth            int      // or: fail the n-th request named refuse
		local              bool     // KERNEL to memif, step by step
	}{
		{name: "pipelined wireguard", typ: wireguard.Type, payload: payload.IP,
			withhold: []string{"wireguard_interface_create", "memif_socket_filename_add_del_v2", "memif_create_v2"}, refuse: "wireguard_interface_dump"},
		{name: "pipelined vxlan", typ: vxlan.Type, payload: payload.Ethernet,
			withhold: []string{"vxlan_add_del_tunnel_v3", "memif_socket_filename_add_del_v2", "memif_create_v2"}, refuse: "vxlan_add_del_tunnel_v3", failNth: 2},
		{name: "pipelined memif", typ: vxlan.Type, payload: payload.Ethernet,
			withhold: []string{"memif_create_v2"}, refuse: "sw_interface_dump:memif"},
		{name: "step-by-step memif", typ: "memif", payload: payload.Ethernet, local: true,
			withhold: []string{"memif_create_v2"}, refuse: "sw_interface_dump:memif"},
		{name: "step-by-step memif socket", typ: "memif", payload: payload.Ethernet, local: true,
			withhold: []string{"memif_socket_filename_add_del_v2"}, refuse: "memif_socket_filename_dump"},
		{name: "step-by-step ipsec sa", typ: mipsec.Type, payload: payload.IP,
			withhold: []string{"ipsec_sad_entry_add_v2"}, withholdAfter: 1, refuse: "ipsec_sad_entry_del"},
		{name: "step-by-step ipip", typ: mipsec.Type, payload: payload.IP,
			withhold: []string{"ipip_add_tunnel"}, refuse: "ipip_tunnel_dump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
			before := b.vpp.snapshot()
			b.vpp.withholdAfter(tc.withhold[0], tc.withholdAfter, 1)
			for _, c := range tc.withhold[1:] {
				b.vpp.withhold(c, 1)
			}
			if tc.failNth > 0 {
				b.vpp.failNth(tc.refuse, tc.failNth, -1)
			} else {
				b.vpp.refuseSend(tc.refuse, errors.New("connection broken"))
			}
			ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
			defer cancel()
			var err error
			if tc.local {
				p, perr := b.dp.plan("b", conn(kernelMech(nsClient, "nsm-c"), tc.payload), conn(memifMech("e.sock"), tc.payload))
				must(t, perr)
				_, _, _, err = b.dp.build(ctx, b.dp.vpp, p, true)
			} else {
				out := memifMech("e.sock")
				if tc.typ == mipsec.Type {
					out = kernelMech(nsServer, "nsm-e")
				}
				_, err = buildAccepted(ctx, t, a, b, tc.typ, tc.payload, out)
			}
			check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
			check(t, b.vpp.snapshot() != before, "nothing left in VPP: the test does not test")
			check(t, len(openIntents(b)) == 1, "open intents of %v, want b's", openIntents(b))

			b.vpp.refuseSend(tc.refuse, nil)
			b = restart(t, b, time.Minute)
			check(t, trunkless(b.vpp.snapshot()) == trunkless(before), "VPP after the restart:\n%s\nbefore:\n%s", b.vpp.snapshot(), before)
			check(t, len(openIntents(b)) == 0, "intents still open: %v", openIntents(b))
		})
	}
}

// trunkless drops the lines of the KERNEL trunk's sub-interfaces, which a
// build's veth (the fake host's, not restarted) may hold: a restart keeps
// a vWire's KERNEL side for its refresh.
func trunkless(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "vwire-trunk.") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// handMade makes, on n's VPP, what creates of vWire id with no answer
// would have left, recording their intents as a build does: an untagged
// VXLAN tunnel (tagged with tag when not ""), an untagged WireGuard
// interface, an IPsec SA, a memif socket and its memif.
type handMade struct {
	vxlan VxlanTunnel
	wg    WireguardInterfaceSpec
	sa    SA
	file  string
	sock  uint32
}

func makeByHand(t *testing.T, n *testNode, id, vxlanTag string) handMade {
	t.Helper()
	ctx := context.Background()
	cl := n.dp.vpp
	priv, _, err := wireguard.GenerateKey()
	must(t, err)
	h := handMade{
		vxlan: VxlanTunnel{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.9"), VNI: 4242},
		wg:    WireguardInterfaceSpec{PrivateKey: priv, Src: netip.MustParseAddr("192.0.2.1"), Port: 51999},
		sa:    SA{ID: 0x7ffe0001, SPI: 0x7ffe0001},
		file:  filepath.Join(n.memifDir, id+".sock"),
	}
	sock, err := n.dp.memifSockIDs.take(ctx, cl)
	must(t, err)
	h.sock = sock
	_, err = n.dp.intents.record(vxlanIntent(id, h.vxlan), wireguardIntent(id, h.wg), intent{ID: id, Kind: intentSA, SA: h.sa.ID},
		intent{ID: id, Kind: intentMemifSocket, Sock: sock, File: h.file}, intent{ID: id, Kind: intentMemif, Sock: sock, File: h.file})
	must(t, err)
	idx, err := cl.CreateVxlanTunnel(ctx, h.vxlan)
	must(t, err)
	if vxlanTag != "" {
		must(t, cl.SetInterfaceTag(ctx, idx, vxlanTag))
	}
	_, err = cl.CreateWireguardInterface(ctx, h.wg)
	must(t, err)
	must(t, cl.CreateSA(ctx, h.sa))
	must(t, cl.pipeline(ctx, createMemifSocketCall(h.file, sock, func(uint32) {}), createMemifCall(MemifSpec{SocketID: sock}, func(SwIfIndex) {})))
	return h
}

// TestIntentsAtStart: objects a previous run's creates left untagged, with
// their intents open in the journal, are deleted by the next run at start;
// one with another owner's tag is left alone (and its intent cleared: it
// was looked up), and so is an untagged object no intent names (an
// attached VPP's untagged objects need not be vwire's).
func TestIntentsAtStart(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	ctx := context.Background()
	before := n.vpp.snapshot()
	// Not vwire's: untagged, but named by no intent.
	foreign := VxlanTunnel{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.77"), VNI: 99}
	_, err := n.dp.vpp.CreateVxlanTunnel(ctx, foreign)
	must(t, err)
	withForeign := n.vpp.snapshot()
	h := makeByHand(t, n, "gone", "other/owner")
	check(t, n.vpp.snapshot() != withForeign, "nothing made")

	n = restart(t, n, time.Minute)
	check(t, len(openIntents(n)) == 0, "intents still open: %v", openIntents(n))
	tunnels, err := n.dp.vpp.ListVxlanTunnels(ctx)
	must(t, err)
	var kept []VxlanTunnel
	for _, x := range tunnels {
		kept = append(kept, x.VxlanTunnel)
	}
	check(t, len(kept) == 2, "vxlan tunnels %v, want the tagged one and the foreign one", kept)
	wgs, err := n.dp.vpp.ListWireguardInterfaces(ctx)
	must(t, err)
	check(t, len(wgs) == 0, "wireguard interfaces left: %v", wgs)
	socks, err := n.dp.vpp.ListMemifSockets(ctx)
	must(t, err)
	for _, s := range socks {
		check(t, s.Filename != h.file, "memif socket left: %v", s)
	}
	n.vpp.mu.Lock()
	_, saLeft := n.vpp.sas[h.sa.ID]
	n.vpp.mu.Unlock()
	check(t, !saLeft, "SA %d left", h.sa.ID)
	// Take the tagged tunnel away by hand: the rest is as before.
	must(t, n.dp.vpp.DeleteVxlanTunnel(ctx, h.vxlan))
	check(t, n.vpp.snapshot() == withForeign, "VPP now:\n%s\nwant:\n%s", n.vpp.snapshot(), withForeign)
	must(t, n.dp.vpp.DeleteVxlanTunnel(ctx, foreign))
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
}

// TestIntentJournalTorn: a journal whose last record was cut mid-line (a
// host crash in its write) is read up to it: the whole records before are
// looked up and their objects removed, the torn one skipped, and the start
// succeeds.
func TestIntentJournalTorn(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	before := n.vpp.snapshot()
	makeByHand(t, n, "gone", "")
	n.dp.Close()
	path := filepath.Join(n.stateDir, "intents", "adapter.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(`+100 {"id":"torn","kind":"vxlan","src":"192.0.2.1","dst":"192.0`)
	must(t, err)
	must(t, f.Close())

	n = restart(t, n, time.Minute)
	check(t, len(openIntents(n)) == 0, "intents open: %v", openIntents(n))
	check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
	b, err := os.ReadFile(path)
	must(t, err)
	check(t, !strings.Contains(string(b), "torn"), "the torn line is still in the journal: %q", b)
}

// TestIntentLookupFailsThenSucceeds: at start the lookups fail (VPP
// refuses the dump, as a connection that broke): the objects stay, the
// start succeeds, and the intents stay open; a later lookup (the vWire's
// Disconnect, the VPP connection's return, the next start) removes them.
// Before, such objects were dropped from memory at the vWire's Disconnect
// or the connection's return, and never looked for again.
func TestIntentLookupFailsThenSucceeds(t *testing.T) {
	for _, then := range []string{"disconnect", "connect", "reconnect", "restart"} {
		t.Run(then, func(t *testing.T) {
			n := newTestNode(t, "192.0.2.1")
			before := n.vpp.snapshot()
			makeByHand(t, n, "gone", "")
			made := n.vpp.snapshot()
			n.vpp.refuseSend("wireguard_interface_dump", errors.New("connection broken"))
			n = restart(t, n, time.Minute)
			check(t, len(openIntents(n)) == 1, "open intents of %v, want gone's", openIntents(n))
			check(t, n.vpp.snapshot() != before, "VPP back as it was: the test does not test")
			check(t, n.vpp.snapshot() != made, "the other lookups did not run")
			// A failed lookup stays open when it fails again.
			must(t, n.dp.Disconnect(context.Background(), "other"))
			err := n.dp.Disconnect(context.Background(), "gone")
			check(t, err != nil && strings.Contains(err.Error(), "connection broken"), "Disconnect: %v, want the failed lookup", err)
			check(t, len(openIntents(n)) == 1, "open intents of %v, want gone's", openIntents(n))

			n.vpp.refuseSend("wireguard_interface_dump", nil)
			switch then {
			case "disconnect":
				must(t, n.dp.Disconnect(context.Background(), "gone"))
			case "connect":
				in, out := conn(kernelMech(nsClient, "nsm-c"), payload.Ethernet), conn(memifMech("e.sock"), payload.Ethernet)
				must(t, n.dp.Connect(context.Background(), "gone", in, out))
				check(t, len(openIntents(n)) == 0, "intents still open after the Connect: %v", openIntents(n))
				must(t, n.dp.Disconnect(context.Background(), "gone"))
			case "reconnect":
				lost := func() float64 { return testutil.ToFloat64(n.dp.metrics.connEvents.WithLabelValues("not_responding")) }
				lost0 := lost()
				n.vpp.stall()
				waitUntilWithin(t, lossNoticedWithin(), "the dataplane notices VPP stalled", func() bool { return lost() > lost0 })
				n.vpp.revive()
				waitUntilWithin(t, lossNoticedWithin(), "the intents resolved on the connection's return", func() bool { return len(openIntents(n)) == 0 })
			case "restart":
				n = restart(t, n, time.Minute)
			}
			check(t, len(openIntents(n)) == 0, "intents still open: %v", openIntents(n))
			check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
		})
	}
}

// TestDisconnectKeepsVNIOfOpenIntent: a VXLAN tunnel whose lookup failed
// at its vWire's Disconnect keeps its VNI taken (no other vWire gets it,
// whose tunnel a later lookup would take for this one) until its intent
// is resolved.
func TestDisconnectKeepsVNIOfOpenIntent(t *testing.T) {
	a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
	before := b.vpp.snapshot()
	b.vpp.withhold("vxlan_add_del_tunnel_v3", 1)
	b.vpp.failNth("vxlan_add_del_tunnel_v3", 2, -1)
	ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
	defer cancel()
	accepted, err := buildAccepted(ctx, t, a, b, vxlan.Type, payload.Ethernet, kernelMech(nsServer, "nsm-e"))
	check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
	params, err := vxlan.FromMechanism(accepted)
	must(t, err)
	b.dp.mu.Lock()
	b.dp.unclean[tagKey("b")] = true // as the failed Connect leaves it
	b.dp.mu.Unlock()

	b.vpp.failNth("vxlan_add_del_tunnel_v3", 1, -1) // the Disconnect's lookup fails again
	check(t, b.dp.Disconnect(context.Background(), "b") != nil, "Disconnect did not fail")
	check(t, b.dp.vnis.InUse(params.VNI), "VNI %d released with its intent open", params.VNI)
	check(t, len(openIntents(b)) == 1, "open intents of %v, want b's", openIntents(b))

	must(t, b.dp.Disconnect(context.Background(), "b"))
	check(t, !b.dp.vnis.InUse(params.VNI), "VNI %d still taken", params.VNI)
	check(t, trunkless(b.vpp.snapshot()) == trunkless(before), "VPP now:\n%s\nbefore:\n%s", b.vpp.snapshot(), before)
}

// TestIntentJournalOnePerVPP: a second forwarder on the same VPP and
// state directory is refused, naming the cause; one on another VPP (its
// own API socket) keeps its own journal there.
func TestIntentJournalOnePerVPP(t *testing.T) {
	state := t.TempDir()
	dir, name := journalDir(state, "/run/vpp1/api.sock")
	j, err := openJournal(dir, name)
	must(t, err)
	defer j.close()
	if _, err := openJournal(journalDir(state, "/run/vpp1/api.sock")); err == nil || !strings.Contains(err.Error(), "another forwarder") {
		t.Fatalf("second journal on one VPP: %v, want refused", err)
	}
	j2, err := openJournal(journalDir(state, "/run/vpp2/api.sock"))
	must(t, err)
	j2.close()

	// Through New: a second dataplane on a node's VPP and state directory.
	n := newTestNode(t, "192.0.2.1")
	_, err = New(context.Background(), Config{Adapter: n.vpp, StatsAdapter: n.stats, Uplink: "eth0", host: n.host, Kernel: KernelVeth,
		MemifDir: n.memifDir, StateDir: n.stateDir, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "another forwarder is attached to this VPP") {
		t.Fatalf("second dataplane: %v, want refused", err)
	}
}

// BenchmarkIntentJournal is what the journal adds to a local memif
// vWire's Connect (pipelined: two sockets and two memifs): their intents
// recorded in one write, then cleared in another, on the state
// directory's file system.
func BenchmarkIntentJournal(b *testing.B) {
	j, err := openJournal(journalDir(b.TempDir(), "/run/vpp/api.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()
	file := "/var/lib/vwire/vpp/memif/0123456789abcdef0123456789abcdef/out.sock"
	for b.Loop() {
		keys, err := j.record(
			intent{ID: "0123456789abcdef0123456789abcdef", Kind: intentMemifSocket, Sock: 12, File: file},
			intent{ID: "0123456789abcdef0123456789abcdef", Kind: intentMemif, Sock: 12, File: file},
			intent{ID: "0123456789abcdef0123456789abcdef", Kind: intentMemifSocket, Sock: 13, File: file},
			intent{ID: "0123456789abcdef0123456789abcdef", Kind: intentMemif, Sock: 13, File: file})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := j.clear(keys...); err != nil {
			b.Fatal(err)
		}
	}
}
