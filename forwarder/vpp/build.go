package vpp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.fd.io/govpp/api"

	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// build makes every object of plan p, pushing after each create how to
// remove it; on failure it removes them all (on a context of its own) and
// returns the first error. On success it returns those removals: run, they
// take the vWire down without listing VPP (see teardown). first says
// the vWire is new to both nodes (see passivePeer).
func (d *Dataplane) build(ctx context.Context, cl *Client, p *plan, first bool) (in, out SwIfIndex, undo *undoStack, err error) {
	var u undoStack
	// Run after the rollback: what it could not look for is kept, and
	// the journal's intents of the rest are cleared.
	defer func() { d.keepLeftovers(p.id, u.left); d.settleIntents(&u); d.notePlaced(p.id, u.ifaces) }()
	defer u.rollbackOn(ctx, cl, &err)
	if vppSide(&p.in) && vppSide(&p.out) {
		if in, out, err = d.buildPipelined(ctx, cl, &u, p, first); err != nil {
			return NoInterface, NoInterface, nil, err
		}
		return in, out, &u, nil
	}
	if in, err = d.makeSide(ctx, cl, &u, p, &p.in, passivePeer(&p.in, first)); err != nil {
		return NoInterface, NoInterface, nil, err
	}
	if out, err = d.makeSide(ctx, cl, &u, p, &p.out, false); err != nil {
		return NoInterface, NoInterface, nil, err
	}
	if err = d.crossConnect(ctx, cl, &u, p, in, out); err != nil {
		return NoInterface, NoInterface, nil, err
	}
	return in, out, &u, nil
}

// keptSide names the side (roleIn or roleOut) a changed vWire can keep as it
// stands in VPP while the other is rebuilt, or "" when both must go: the
// side's plan is unchanged but for its far end's addresses on a tunnel
// side, which only the cross-connect uses. A heal that moves a vWire to
// another endpoint so keeps its tunnel, and the tunnel's WireGuard session
// (a new interface on one end only would take a new handshake, which the
// other end starts only after its own keepalive timeout).
func keptSide(old, p *plan) string {
	if old.l3 != p.l3 || old.mtu != p.mtu || old.ip4 != p.ip4 || old.ip6 != p.ip6 {
		return ""
	}
	same := func(a, b side) bool {
		if !a.local() {
			a.peerAddrs, b.peerAddrs = nil, nil
		}
		return reflect.DeepEqual(a, b)
	}
	switch inSame, outSame := same(old.in, p.in), same(old.out, p.out); {
	case inSame && !outSame:
		return roleIn
	case outSame && !inSame:
		return roleOut
	}
	return ""
}

// rebuildSide replaces the side of old that keptSide did not keep with p's,
// and cross-connects it with the kept one. On failure it removes what it
// made; the caller then rebuilds the whole vWire.
func (d *Dataplane) rebuildSide(ctx context.Context, cl *Client, old *vwireState, p *plan, keep string) (in, out SwIfIndex, err error) {
	change, s := roleOut, &p.out
	if keep == roleOut {
		change, s = roleIn, &p.in
	}
	if err := d.sweepKnown(ctx, cl, p.id, old, change); err != nil {
		return NoInterface, NoInterface, err
	}
	// The kept side's l3xc still points at the removed side: VPP 25.10's
	// l3xc_update on it leaves a drop in its path (seen on a moved
	// vWire), so it goes and crossConnect makes it anew.
	kept := old.in
	if keep == roleOut {
		kept = old.out
	}
	for _, ip6 := range families(old.plan) {
		if !old.plan.l3 {
			break
		}
		if err := cl.DeleteL3XC(ctx, kept, ip6); err != nil && !IsNotFound(err) {
			return NoInterface, NoInterface, err
		}
	}
	var u undoStack
	defer func() { d.keepLeftovers(p.id, u.left); d.settleIntents(&u); d.notePlaced(p.id, u.ifaces) }()
	defer u.rollbackOn(ctx, cl, &err)
	idx, err := d.makeSide(ctx, cl, &u, p, s, false)
	if err != nil {
		return NoInterface, NoInterface, err
	}
	in, out = old.in, idx
	if change == roleIn {
		in, out = idx, old.out
	}
	if err := d.crossConnect(ctx, cl, &u, p, in, out); err != nil {
		return NoInterface, NoInterface, err
	}
	return in, out, nil
}

// passivePeer reports whether side s's WireGuard peer is added passive
// (WireguardPeerSpec.Passive): when s is the tunnel this node accepted
// (roleIn) on the vWire's first build. The previous hop builds its side
// only after this Connect returns (it needs our reply), and then starts
// the handshake itself as its peer comes up; one this side started first
// would find no interface there. Any other build (a refresh that changed
// the vWire, a rollback, a restore after VPP restarted) starts its own:
// the far end may hold a session this side no longer has, and would not
// start a new one before its own timeout.
func passivePeer(s *side, first bool) bool {
	return first && s.role == roleIn && s.typ == wireguard.Type
}

// makeSide makes one side's interface, configured and up; a WireGuard
// side's peer passive if passive.
func (d *Dataplane) makeSide(ctx context.Context, cl *Client, u *undoStack, p *plan, s *side, passive bool) (SwIfIndex, error) {
	tag := tagOf(s.role, p.id).String()
	table, err := d.placeTable(ctx, cl, u, p, s)
	if err != nil {
		return NoInterface, err
	}
	// A memif, VXLAN or WireGuard side has nothing to set between its
	// creation and its tag: the tag and everything after it (table,
	// addresses, routes, the WireGuard peer, MTU, up) go in one round
	// trip (Client.SetupInterface).
	pipelineTag := vppSide(s)
	idx, err := d.makeInterface(ctx, cl, u, p, s, tag, !pipelineTag)
	if err != nil {
		return NoInterface, err
	}
	setup := d.sideSetup(p, s, idx, table, passive)
	if !pipelineTag {
		setup.Tag = ""
	}
	made, err := cl.SetupInterface(ctx, idx, setup)
	pushMade(u, cl, made)
	if err != nil {
		return NoInterface, err
	}
	logWireguardSide(cl, s, idx, made, passive)
	return idx, nil
}

// logWireguardSide logs the keys a WireGuard side was built with: both
// nodes' lines for one connection id say which keys each end holds and
// expects (the soak's report of a silent vWire compares them with VPP's).
func logWireguardSide(cl *Client, s *side, idx SwIfIndex, made SetupMade, passive bool) {
	if s.typ != wireguard.Type {
		return
	}
	pub, err := wireguard.PublicKey(s.wgIface.PrivateKey)
	if err != nil {
		return
	}
	cl.log.Info("WireGuard side built", "role", s.role, "sw_if_index", idx, "key", wireguard.EncodeKey(pub),
		"peer_key", wireguard.EncodeKey(s.wgPeer.PublicKey), "peer", made.Peer, "endpoint", s.wgPeer.Endpoint, "passive", passive)
}

// placeTable gives an IP-payload local side its place in an IP table
// shared with sides whose addresses differ from its own (see ipTables),
// given back (on u) after its interface is removed. It returns the
// table, 0 (the default table) for a side that needs none.
func (d *Dataplane) placeTable(ctx context.Context, cl *Client, u *undoStack, p *plan, s *side) (uint32, error) {
	if !p.l3 || !s.local() || len(s.vppAddrs) == 0 {
		return 0, nil
	}
	owner := tagOf(s.role, p.id).String()
	id, err := d.vrfs.place(ctx, cl, owner, append(slices.Clone(s.vppAddrs), s.peerAddrs...))
	if err != nil {
		return 0, err
	}
	u.push("ip table", func(ctx context.Context, cl *Client) error { return d.vrfs.release(ctx, cl, owner, id) })
	return id, nil
}

// sideSetup is what side s's interface idx is set up with after its
// creation: tagged, in table, its addresses and routes, its WireGuard peer
// (passive if passive), MTU, up.
func (d *Dataplane) sideSetup(p *plan, s *side, idx SwIfIndex, table uint32, passive bool) InterfaceSetup {
	// A VXLAN tunnel segments GSO packets itself (VPP's gso feature):
	// af_packet takes a KERNEL side's TSO packets as GSO buffers, and
	// VPP would hand them, encapsulated, to the uplink's af_packet as TCP
	// GSO, which the kernel refuses, and that frame then blocks the
	// uplink's TX ring for good.
	setup := InterfaceSetup{Tag: tagOf(s.role, p.id).String(), MTU: p.mtu, Up: true, GSO: s.typ == vxlan.Type}
	if s.typ == wireguard.Type {
		peer := s.wgPeer
		peer.Passive = passive
		setup.Peer = &peer
	}
	if p.l3 {
		if s.local() {
			if table != 0 {
				for _, ip6 := range families(p) {
					setup.Tables = append(setup.Tables, TableBinding{ID: table, IP6: ip6})
				}
			}
			setup.Addrs = s.vppAddrs
			for _, a := range s.peerAddrs {
				setup.Routes = append(setup.Routes, Route{Table: table, Prefix: a, Via: idx})
			}
		} else {
			setup.Unnumbered, setup.UnnumberedTo = true, d.uplinkIndex()
		}
	}
	return setup
}

// pushMade records on u the removal of what an interface's setup made
// that outlives the interface.
func pushMade(u *undoStack, cl *Client, made SetupMade) {
	for _, r := range made.Routes {
		// VPP leaves API routes behind when their interface or table goes.
		u.pushCall("route", cl.routeCall(r, false))
	}
	if made.PeerMade {
		u.pushCall("wireguard peer", deleteWireguardPeerCall(made.Peer))
	}
}

// vppSide reports whether side s is VPP's alone (memif, VXLAN,
// WireGuard): made by requests to VPP with nothing else to do between
// them, so that they can be pipelined.
func vppSide(s *side) bool {
	return s.typ == memif.Type || s.typ == vxlan.Type || s.typ == wireguard.Type
}

// buildPipelined is build for a vWire whose two sides are VPP's alone
// (vppSide), in two round trips to VPP instead of one or two a step:
// every create (memif sockets with ids chosen here and their memifs,
// VXLAN tunnels, WireGuard interfaces), then both sides' setups and the
// cross-connect, each round's requests pipelined.
// On a loaded host each round trip waits for VPP and the caller to be
// scheduled, besides VPP's queue. The undo stack gets what each request
// made as its reply comes, in the order of the step-by-step build, so
// that a failure anywhere is rolled back as there.
func (d *Dataplane) buildPipelined(ctx context.Context, cl *Client, u *undoStack, p *plan, first bool) (in, out SwIfIndex, err error) {
	sides := [2]*side{&p.in, &p.out}
	var tables [2]uint32
	idx := [2]SwIfIndex{NoInterface, NoInterface}
	for i, s := range sides {
		if tables[i], err = d.placeTable(ctx, cl, u, p, s); err != nil {
			return NoInterface, NoInterface, err
		}
	}
	// Each create's undo is pushed as its reply comes; one whose outcome
	// is unknown (no reply: the context ended or the connection failed
	// first, so VPP may have made it all the same) gets, from ifUnknown,
	// an undo that looks for what VPP made by what was chosen here.
	// Each create is recorded first in the intent journal (intents.go).
	var creates []pipelined
	var ifUnknown []func()
	var its []intent
	add := func(c pipelined, it intent, unknown func()) {
		creates, ifUnknown, its = append(creates, c), append(ifUnknown, unknown), append(its, it)
	}
	for i, s := range sides {
		switch s.typ {
		case memif.Type:
			if !strings.HasPrefix(s.memifSocket, "abstract:") && !s.memifSlave {
				if err := os.MkdirAll(filepath.Dir(s.memifSocket), 0o755); err != nil {
					return NoInterface, NoInterface, fmt.Errorf("memif socket directory: %w", err)
				}
			}
			// The socket's id chosen here, its memif goes on the same
			// stream. Should the socket fail (an id VPP had after all),
			// the memif fails or is removed with the rest.
			id, err := d.memifSockIDs.take(ctx, cl)
			if err != nil {
				return NoInterface, NoInterface, err
			}
			spec := MemifSpec{SocketID: id, IP: p.l3, Slave: s.memifSlave}
			// Its undo may run again (a memif left on it, should the
			// memif's lookup fail, holds it): no other socket gets the id.
			add(createMemifSocketCall(s.memifSocket, id, func(id uint32) {
				u.pushCallAgain("memif socket", deleteChosenMemifSocketCall(id))
			}), intent{ID: p.id, Kind: intentMemifSocket, Sock: id, File: s.memifSocket}, func() {
				// No other socket has the id (socketIDs): VPP's
				// refusal means the create made none.
				u.pushCallAgain("memif socket", deleteChosenMemifSocketCall(id))
			})
			add(createMemifCall(spec, func(x SwIfIndex) {
				idx[i] = x
				u.made(x)
				u.pushCall("memif", deleteMemifCall(x))
			}), intent{ID: p.id, Kind: intentMemif, Sock: id, Memif: spec.ID, File: s.memifSocket}, func() {
				u.pushAgain("memif", func(ctx context.Context, cl *Client) error { return removeMemifOn(ctx, cl, spec.SocketID, spec.ID) })
			})
		case vxlan.Type:
			t := s.vxlan
			add(createVxlanTunnelCall(t, func(x SwIfIndex) {
				idx[i] = x
				u.made(x)
				u.pushCall("vxlan tunnel", deleteVxlanTunnelCall(t))
			}), vxlanIntent(p.id, t), func() {
				u.pushCallAgain("vxlan tunnel", deleteUnansweredVxlanCall(t))
			})
		case wireguard.Type:
			w := s.wgIface
			add(createWireguardInterfaceCall(w, func(x SwIfIndex) {
				idx[i] = x
				u.made(x)
				u.pushCall("wireguard interface", deleteWireguardInterfaceCall(x))
			}), wireguardIntent(p.id, w), func() {
				u.pushAgain("wireguard interface", func(ctx context.Context, cl *Client) error { return removeWireguardInterfaceOf(ctx, cl, w) })
			})
		}
	}
	keys, err := d.intents.record(its...)
	if err != nil {
		return NoInterface, NoInterface, err
	}
	u.intents = append(u.intents, keys...)
	if err := pipelineCreates(ctx, cl, u, keys, creates, ifUnknown); err != nil {
		return NoInterface, NoInterface, err
	}

	var made [2]SetupMade
	var setups []pipelined
	for i, s := range sides {
		calls, err := cl.setupCalls(idx[i], d.sideSetup(p, s, idx[i], tables[i], passivePeer(s, first)), &made[i])
		if err != nil {
			return NoInterface, NoInterface, err
		}
		setups = append(setups, calls...)
	}
	in, out = idx[0], idx[1]
	var xcs []pipelined
	var l3xcs []L3XC
	if p.l3 {
		xcs = createL3XCCalls(func(x L3XC) { l3xcs = append(l3xcs, x) }, d.l3xcs(p, in, out)...)
	} else {
		xcs = createL2XCCalls(l2xcs(in, out)...)
	}
	err = cl.pipeline(ctx, append(setups, xcs...)...)
	// What the setups and the cross-connect made, removed (last first) as
	// makeSide's and crossConnect's would be.
	pushMade(u, cl, made[0])
	pushMade(u, cl, made[1])
	if p.l3 {
		for _, x := range l3xcs {
			u.pushCall("l3xc", undoL3XCCall(x))
		}
	} else {
		for _, x := range l2xcs(in, out) {
			u.pushCall("l2xc", deleteL2XCCall(x.Rx))
		}
	}
	if err != nil {
		return NoInterface, NoInterface, err
	}
	for i, s := range sides {
		logWireguardSide(cl, s, idx[i], made[i], passivePeer(s, first))
	}
	return in, out, nil
}

// pipelineCreates pipelines creates and calls, for each whose outcome is
// unknown (no reply came: answered), its ifUnknown, after the replies
// that came (their got pushed their undos). Those are a suffix of creates
// (the first one without a reply ends the stream), so the undo stack
// keeps the creates' order. Each got and ifUnknown pushes one step on u,
// given the create's journal key from keys. It returns the first failure.
func pipelineCreates(ctx context.Context, cl *Client, u *undoStack, keys []uint64, creates []pipelined, ifUnknown []func()) error {
	replied := make([]bool, len(creates))
	for k := range creates {
		got := creates[k].got
		creates[k].got = func(m api.Message) {
			replied[k] = true
			if got != nil {
				got(m)
				u.markLast(keys[k])
			}
		}
	}
	var first error
	for k, err := range cl.pipelineEach(ctx, creates...) {
		if !replied[k] && !answered(err) {
			ifUnknown[k]()
			u.markLast(keys[k])
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// makeInterface makes the VPP interface of one side, tagged unless
// tagHere is false (the caller then tags it first thing).
func (d *Dataplane) makeInterface(ctx context.Context, cl *Client, u *undoStack, p *plan, s *side, tag string, tagHere bool) (SwIfIndex, error) {
	var idx SwIfIndex
	var err error
	tagged := false
	switch s.typ {
	case kernel.Type:
		if s.tap {
			idx, err = cl.CreateTap(ctx, TapSpec{HostIfName: s.workload.name, HostNamespace: s.workload.netns, TUN: p.l3, HostMTU: p.mtu, Tag: tag})
			if err != nil {
				return NoInterface, err
			}
			tagged = true
			u.made(idx)
			u.pushCall("tap", deleteTapCall(idx))
			if err := d.host.configureWorkload(s.workload); err != nil {
				return NoInterface, fmt.Errorf("tap %s: %w", s.workload.name, err)
			}
		} else {
			if idx, err = d.makeTrunkSide(ctx, cl, u, linkName(s.role, tagKey(p.id)), tag, s.workload, p.l3); err != nil {
				return NoInterface, err
			}
		}
	case memif.Type:
		if !strings.HasPrefix(s.memifSocket, "abstract:") && !s.memifSlave {
			if err := os.MkdirAll(filepath.Dir(s.memifSocket), 0o755); err != nil {
				return NoInterface, fmt.Errorf("memif socket directory: %w", err)
			}
		}
		// A create with no answer (answered) may have been carried out:
		// its undo looks for what VPP made by what was asked for.
		filename := s.memifSocket
		sockKey, err := d.intend(u, intent{ID: p.id, Kind: intentMemifSocket, File: filename})
		if err != nil {
			return NoInterface, err
		}
		sock, err := cl.CreateMemifSocket(ctx, filename)
		if err != nil {
			if !answered(err) {
				u.pushAgain("memif socket", func(ctx context.Context, cl *Client) error { return removeSocketNamed(ctx, cl, filename) })
				u.markLast(sockKey)
			}
			return NoInterface, err
		}
		u.pushCall("memif socket", deleteMemifSocketCall(sock))
		u.markLast(sockKey)
		spec := MemifSpec{SocketID: sock, IP: p.l3, Slave: s.memifSlave}
		key, err := d.intend(u, intent{ID: p.id, Kind: intentMemif, Sock: sock, Memif: spec.ID, File: filename})
		if err != nil {
			return NoInterface, err
		}
		if idx, err = cl.CreateMemif(ctx, spec); err != nil {
			if !answered(err) {
				// The socket's undo, should it run again (a memif left
				// on it holds it, and VPP refuses the delete until
				// the memif's undo succeeds): by its id and filename,
				// an id VPP may give again after it restarts.
				u.steps = u.steps[:len(u.steps)-1]
				u.pushAgain("memif socket", func(ctx context.Context, cl *Client) error {
					return deleteSocketOf(ctx, cl, filename, sock, deleteChosenMemifSocketCall(sock))
				})
				u.markLast(sockKey)
				u.pushAgain("memif", func(ctx context.Context, cl *Client) error { return removeMemifOn(ctx, cl, spec.SocketID, spec.ID) })
				u.markLast(key)
			}
			return NoInterface, err
		}
		u.made(idx)
		u.pushCall("memif", deleteMemifCall(idx))
		u.markLast(key)
	case vxlan.Type:
		t := s.vxlan
		key, err := d.intend(u, vxlanIntent(p.id, t))
		if err != nil {
			return NoInterface, err
		}
		if idx, err = cl.CreateVxlanTunnel(ctx, t); err != nil {
			if !answered(err) {
				u.pushCallAgain("vxlan tunnel", deleteUnansweredVxlanCall(t))
				u.markLast(key)
			}
			return NoInterface, err
		}
		u.made(idx)
		u.pushCall("vxlan tunnel", deleteVxlanTunnelCall(t))
		u.markLast(key)
	case wireguard.Type:
		w := s.wgIface
		key, err := d.intend(u, wireguardIntent(p.id, w))
		if err != nil {
			return NoInterface, err
		}
		if idx, err = cl.CreateWireguardInterface(ctx, w); err != nil {
			if !answered(err) {
				u.pushAgain("wireguard interface", func(ctx context.Context, cl *Client) error { return removeWireguardInterfaceOf(ctx, cl, w) })
				u.markLast(key)
			}
			return NoInterface, err
		}
		u.made(idx)
		u.pushCall("wireguard interface", deleteWireguardInterfaceCall(idx))
		u.markLast(key)
	case ipsec.Type:
		// The SAs' ids are chosen by vwire: an SA whose create got no
		// answer is deleted by its id (VPP's "no such entry": none made).
		out, in := s.saOut, s.saIn
		for _, sa := range []struct {
			what string
			sa   SA
		}{{"outbound sa", out}, {"inbound sa", in}} {
			key, err := d.intend(u, intent{ID: p.id, Kind: intentSA, SA: sa.sa.ID})
			if err != nil {
				return NoInterface, err
			}
			if err := cl.CreateSA(ctx, sa.sa); err != nil {
				if !answered(err) {
					u.pushCallAgain(sa.what, deleteSACall(sa.sa.ID))
					u.markLast(key)
				}
				return NoInterface, err
			}
			u.pushCall(sa.what, deleteSACall(sa.sa.ID))
			u.markLast(key)
		}
		t := s.ipip
		key, err := d.intend(u, intent{ID: p.id, Kind: intentIpip, Src: t.Src, Dst: t.Dst})
		if err != nil {
			return NoInterface, err
		}
		if idx, err = cl.CreateIpipTunnel(ctx, t); err != nil {
			if !answered(err) {
				u.pushAgain("ipip tunnel", func(ctx context.Context, cl *Client) error { return removeIpipTunnelOf(ctx, cl, t) })
				u.markLast(key)
			}
			return NoInterface, err
		}
		u.made(idx)
		u.pushCall("ipip tunnel", deleteIpipTunnelCall(idx))
		u.markLast(key)
	default:
		return NoInterface, fmt.Errorf("%s side: mechanism %q is not supported", s.role, s.typ)
	}
	if !tagged && tagHere {
		// The create request has no tag: tag right after. Should that
		// fail, the undo above removes the untagged interface.
		if err := cl.SetInterfaceTag(ctx, idx, tag); err != nil {
			return NoInterface, err
		}
	}
	switch s.typ {
	case ipsec.Type:
		if err := cl.CreateTunnelProtection(ctx, TunnelProtection{Interface: idx, Out: s.saOut.ID, In: []uint32{s.saIn.ID}}); err != nil {
			return NoInterface, err
		}
		u.pushCall("tunnel protection", deleteTunnelProtectionCall(idx))
	}
	return idx, nil
}

// crossConnect joins in and out both ways: l2xc for Ethernet, l3xc (per
// address family) for IP.
func (d *Dataplane) crossConnect(ctx context.Context, cl *Client, u *undoStack, p *plan, in, out SwIfIndex) error {
	if !p.l3 {
		// Both directions in one round trip; their undo goes first, as
		// either may have been made when the other failed.
		xs := l2xcs(in, out)
		for _, x := range xs {
			u.pushCall("l2xc", deleteL2XCCall(x.Rx))
		}
		return cl.CreateL2XCs(ctx, xs...)
	}
	// Every direction and family in one round trip.
	return cl.CreateL3XCs(ctx, func(x L3XC) {
		u.pushCall("l3xc", undoL3XCCall(x))
	}, d.l3xcs(p, in, out)...)
}

// l2xcs are the two directions of an Ethernet vWire's cross-connect.
func l2xcs(in, out SwIfIndex) []L2XC { return []L2XC{{Rx: in, Tx: out}, {Rx: out, Tx: in}} }

// l3xcs are an IP vWire's cross-connects: both directions, every family.
func (d *Dataplane) l3xcs(p *plan, in, out SwIfIndex) []L3XC {
	var xs []L3XC
	for _, ip6 := range families(p) {
		xs = append(xs,
			L3XC{Rx: in, Tx: out, IP6: ip6, NextHop: p.out.nextHop(ip6)},
			L3XC{Rx: out, Tx: in, IP6: ip6, NextHop: p.in.nextHop(ip6)})
	}
	return xs
}

// families lists the address families a vWire carries: false for IPv4,
// true for IPv6.
func families(p *plan) []bool {
	var f []bool
	if p.ip4 {
		f = append(f, false)
	}
	if p.ip6 {
		f = append(f, true)
	}
	return f
}

func (d *Dataplane) uplinkIndex() SwIfIndex {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.uplink
}

// keepLeftovers keeps, for vWire id's next Connect or its Disconnect (see
// removeLeftovers), the undo steps of creates that got no answer whose
// lookup failed (VPP still not answering): VPP may hold an untagged
// object of the vWire that no sweep finds (sweeps go by tag).
func (d *Dataplane) keepLeftovers(id string, steps []undoStep) {
	if len(steps) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leftovers[id] = append(d.leftovers[id], steps...)
}

// removeLeftovers runs again the steps keepLeftovers kept for id, and
// keeps those that fail again; then it looks up id's other open intents
// (resolveIntents: what a failed rollback or a previous run left).
func (d *Dataplane) removeLeftovers(ctx context.Context, cl *Client, id string) error {
	d.mu.Lock()
	steps := d.leftovers[id]
	delete(d.leftovers, id)
	d.mu.Unlock()
	var err error
	if len(steps) > 0 {
		u := undoStack{steps: steps}
		err = u.run(ctx, cl)
		d.keepLeftovers(id, u.left)
		for _, s := range steps {
			if s.intent != 0 {
				u.intents = append(u.intents, s.intent)
			}
		}
		d.settleIntents(&u)
	}
	return errors.Join(err, d.resolveIntents(ctx, cl, id))
}
