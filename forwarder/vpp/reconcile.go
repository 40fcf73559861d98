package vpp

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.fd.io/govpp/api"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// tableBase is the first IP table id the dataplane gives vWires; ids are
// unique per node and VRF ids below it are left to others.
const tableBase = 0x76770000

// tableAllocator hands out IP table ids.
type tableAllocator struct {
	mu   sync.Mutex
	used map[uint32]bool // guarded by mu
	next uint32          // guarded by mu
}

func newTableAllocator() *tableAllocator {
	return &tableAllocator{used: map[uint32]bool{}, next: tableBase}
}

func (a *tableAllocator) allocate() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.used[a.next] || a.next < tableBase {
		a.next++
	}
	id := a.next
	a.used[id] = true
	a.next++
	return id
}

func (a *tableAllocator) reserve(id uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.used[id] = true
}

func (a *tableAllocator) release(id uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, id)
}

// samePlan reports whether two plans build the same objects.
func samePlan(a, b *plan) bool { return reflect.DeepEqual(a, b) }

// intact reports whether the vWire st still stands in VPP: both interfaces
// there, ours, up. It asks VPP for those two interfaces only, in one round
// trip.
func (d *Dataplane) intact(ctx context.Context, cl *Client, id string, st *vwireState) (bool, error) {
	got, ok, err := cl.GetInterfaces(ctx, st.in, st.out)
	if err != nil {
		return false, err
	}
	for i, role := range []string{roleIn, roleOut} {
		if !ok[i] || got[i].Tag != tagOf(role, id).String() || !got[i].AdminUp {
			return false, nil
		}
	}
	return true, nil
}

// ErrWorkloadNameTaken is returned (wrapped) by a refresh whose KERNEL side
// lost its workload interface name to another vWire; the kernel dataplane
// returns the same.
var ErrWorkloadNameTaken = forwarder.ErrWorkloadNameTaken

// vethsStand reports whether the veths of st's KERNEL sides on the trunk
// still stand: the host end there and ours, the workload end under its
// name ours. VPP cannot tell: the side's sub-interface stays when its veth
// goes. A side whose name another vWire's workload end holds now lost it to
// a newer Request for that interface (createVeth replaces the stale one):
// that is an error wrapping ErrWorkloadNameTaken, for a refresh must not
// take the name back (the two would take it from each other at every
// refresh). Any other loss is damage that a rebuild repairs.
func (d *Dataplane) vethsStand(st *vwireState) (bool, error) {
	key := tagKey(st.plan.id)
	for _, s := range []*side{&st.plan.in, &st.plan.out} {
		if s.typ != kernel.Type || s.tap {
			continue
		}
		hostOK, heldBy, err := d.host.vethState(linkName(s.role, key), tagOfKey(s.role, key), s.workload)
		if err != nil {
			return false, fmt.Errorf("%s side: %w", s.role, err)
		}
		if heldBy != s.workload.alias {
			if t, ok := ParseTag(heldBy); ok && t.Role == roleWL {
				return false, fmt.Errorf("%s side: %w: %s in %s belongs to vWire %s (a newer Request for that interface took it); this vWire's side is gone",
					s.role, ErrWorkloadNameTaken, s.workload.name, s.workload.netns, t.Key)
			}
			return false, nil
		}
		if !hostOK {
			return false, nil
		}
	}
	return true, nil
}

// teardown removes vWire id. One this process built, whose interfaces still
// stand as built, is taken down by the removals build recorded: no listing
// of VPP, so a Disconnect costs the same next to ten vWires as next to a
// thousand, and two round trips to VPP (the check of its two interfaces,
// then every removal pipelined; see undoStack.run). Any other (adopted, one side rebuilt, damaged, left by a VPP
// that restarted), and whatever those removals could not remove, is swept.
//
// An id with no objects in VPP (its Connect never ran, as when the next hop
// refused, or it rolled back cleanly) costs no VPP call at all: a sweep
// lists every interface and IP table, and a burst of such Closes (a
// thousand Requests failing at once, each retried) queued so many
// megabyte-sized dumps in VPP that its main heap ran out
// (vl_socket_api_send) and VPP aborted.
// mayHave reports whether VPP may hold anything of vWire id: what a
// Disconnect has to remove (teardown, removeLeftovers). The caller holds
// id's lock.
func (d *Dataplane) mayHave(id string) bool {
	d.mu.Lock()
	has := d.conns[id] != nil || d.orphans[tagKey(id)] || d.unclean[tagKey(id)] || len(d.leftovers[id]) > 0
	d.mu.Unlock()
	return has || d.intents.has(id)
}

func (d *Dataplane) teardown(ctx context.Context, cl *Client, id string) error {
	d.mu.Lock()
	st := d.conns[id]
	orphan, unclean := d.orphans[tagKey(id)], d.unclean[tagKey(id)]
	d.mu.Unlock()
	if st == nil && !orphan && !unclean {
		return nil
	}
	if st != nil && st.undo != nil && !unclean {
		if ok, err := d.intact(ctx, cl, id, st); err == nil && ok {
			if err := st.undo.run(ctx, cl); err == nil {
				d.forgetPlaced(tagKey(id), nil)
				return nil
			}
		}
	}
	return d.sweepKnown(ctx, cl, id, st, roleIn, roleOut)
}

// adopt takes back a vWire a previous run of the forwarder built, when VPP
// still has exactly what p would build: both interfaces, of the planned
// kinds and parameters, cross-connected. WireGuard vWires are adopted with
// the private keys Start read back from VPP; IPsec vWires are rebuilt (the
// X25519 keys their SAs were derived from lived in the previous process).
// adopt returns nil when it cannot take the vWire back.
func (d *Dataplane) adopt(ctx context.Context, cl *Client, p *plan) (*vwireState, error) {
	ifaces, err := cl.ListInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	find := func(role string) *Interface {
		i := slices.IndexFunc(ifaces, func(i Interface) bool { return i.Tag == tagOf(role, p.id).String() })
		if i < 0 {
			return nil
		}
		return &ifaces[i]
	}
	in, out := find(roleIn), find(roleOut)
	if in == nil || out == nil || !in.AdminUp || !out.AdminUp {
		return nil, nil
	}
	for _, c := range []struct {
		s *side
		i *Interface
	}{{&p.in, in}, {&p.out, out}} {
		if ok, err := d.matches(ctx, cl, p, c.s, c.i); err != nil || !ok {
			return nil, err
		}
	}
	if p.l3 {
		xcs, err := cl.ListL3XCs(ctx)
		if err != nil {
			return nil, err
		}
		for _, ip6 := range families(p) {
			if !slices.ContainsFunc(xcs, func(x L3XC) bool { return x.Rx == in.Index && x.Tx == out.Index && x.IP6 == ip6 }) ||
				!slices.ContainsFunc(xcs, func(x L3XC) bool { return x.Rx == out.Index && x.Tx == in.Index && x.IP6 == ip6 }) {
				return nil, nil
			}
		}
	} else {
		xcs, err := cl.ListL2XCs(ctx)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(xcs, L2XC{Rx: in.Index, Tx: out.Index}) || !slices.Contains(xcs, L2XC{Rx: out.Index, Tx: in.Index}) {
			return nil, nil
		}
	}
	return &vwireState{plan: p, in: in.Index, out: out.Index}, nil
}

// matches reports whether interface i is what side s plans.
func (d *Dataplane) matches(ctx context.Context, cl *Client, p *plan, s *side, i *Interface) (bool, error) {
	switch s.typ {
	case kernel.Type:
		if s.tap {
			return i.kind() == "tap", nil
		}
		v, ok := d.trunk.vlanOf(linkName(s.role, tagKey(p.id)))
		return ok && i.Sub && i.Sup == d.trunk.ifIndex() && i.SubID == uint32(v), nil
	case memif.Type:
		if i.kind() != "memif" {
			return false, nil
		}
		memifs, err := cl.ListMemifs(ctx)
		if err != nil {
			return false, err
		}
		socks, err := cl.ListMemifSockets(ctx)
		if err != nil {
			return false, err
		}
		m := slices.IndexFunc(memifs, func(m Memif) bool { return m.Index == i.Index })
		return m >= 0 && memifs[m].IP == p.l3 && slices.Contains(socks, MemifSocket{ID: memifs[m].SocketID, Filename: s.memifSocket}), nil
	case vxlan.Type:
		tunnels, err := cl.ListVxlanTunnels(ctx)
		if err != nil {
			return false, err
		}
		return slices.Contains(tunnels, VxlanTunnelInfo{Index: i.Index, VxlanTunnel: s.vxlan}), nil
	case wireguard.Type:
		wgs, err := cl.ListWireguardInterfaces(ctx)
		if err != nil {
			return false, err
		}
		w := slices.IndexFunc(wgs, func(w WireguardInterface) bool { return w.Index == i.Index })
		if w < 0 || wgs[w].PrivateKey != s.wgIface.PrivateKey || wgs[w].Src != s.wgIface.Src || wgs[w].Port != s.wgIface.Port {
			return false, nil
		}
		peers, err := cl.ListWireguardPeers(ctx)
		if err != nil {
			return false, err
		}
		var mine []WireguardPeer
		for _, p := range peers {
			if p.Interface == i.Index {
				mine = append(mine, p)
			}
		}
		// A passive peer (passivePeer) shows port 0 until the far end's
		// first handshake gives VPP its endpoint.
		port := len(mine) == 1 && (mine[0].Port == s.wgPeer.Port || mine[0].Port == 0 && s.role == roleIn)
		return port && mine[0].PublicKey == s.wgPeer.PublicKey && mine[0].Endpoint == s.wgPeer.Endpoint, nil
	}
	return false, nil
}

// sweep removes every object tagged with key: cross-connects, interfaces
// (by kind, with what hangs off them: memif sockets, tunnel protections and
// SAs, veths), then IP tables. It reads VPP, not memory, so it also
// removes what a previous run left.
func (d *Dataplane) sweep(ctx context.Context, cl *Client, key string) error {
	return d.sweepRoles(ctx, cl, key, roleIn, roleOut)
}

// sweepBuilt is sweep for a vWire this process built whole (st.undo set)
// in its last Connect, which succeeded (the id is not unclean): its tagged
// interfaces can only be st.in and st.out. See sweepKnown, which covers
// this case and more.
func (d *Dataplane) sweepBuilt(ctx context.Context, cl *Client, st *vwireState) error {
	return d.sweepOnly(ctx, cl, tagKey(st.plan.id), []SwIfIndex{st.in, st.out}, roleIn, roleOut)
}

// sweepKnown sweeps the sides of vWire id in roles. What this process
// may have left of the vWire in VPP is known: the interfaces whose create
// VPP answered it (placed, and those of st, the vWire as it stands, nil if
// none), the creates with no answer (leftovers and the intent journal,
// looked up by removeLeftovers), and no IP table of its own (this process
// makes shared ones only, iptables.go). So VPP is asked for those
// interfaces only, by index, and an index VPP gave to another interface
// since shows that one's tag and is left alone: no listing of every
// interface (about 2,000 on a loaded node), IP table or cross-connect.
// Under load each such listing took VPP's main thread longer than its
// caller waited; the caller failed, was marked unclean, and its retry
// listed all of VPP again (the concurrent soak beside 12 CPU spinners:
// thousands of listings nobody waited for, and 634 of 1,000 memif vWires
// up after 10 minutes).
//
// The narrow sweep holds across a lost and regained VPP connection: VPP
// keeps its indexes while it runs, a restarted VPP has none of the old
// objects, and a create whose answer the loss cut off is in the journal.
//
// All of VPP is listed (sweepRoles) only for a key in blind: a previous
// run's vWire (Start), whose objects this process knows only by their
// tag, until such a sweep succeeds. A sweep of both roles that succeeds
// forgets the indexes it looked at.
func (d *Dataplane) sweepKnown(ctx context.Context, cl *Client, id string, st *vwireState, roles ...string) error {
	key := tagKey(id)
	d.mu.Lock()
	blind := d.blind[key]
	known := slices.Clone(d.placed[key])
	d.mu.Unlock()
	whole := slices.Contains(roles, roleIn) && slices.Contains(roles, roleOut)
	if blind {
		err := d.sweepRoles(ctx, cl, key, roles...)
		if err == nil && whole {
			d.mu.Lock()
			delete(d.blind, key)
			d.mu.Unlock()
			d.forgetPlaced(key, known)
		}
		return err
	}
	if st != nil {
		known = append(known, st.in, st.out)
	}
	known = slices.DeleteFunc(known, func(i SwIfIndex) bool { return i == NoInterface })
	slices.Sort(known)
	known = slices.Compact(known)
	if known == nil {
		known = []SwIfIndex{} // nothing to look at; nil would list all (sweepOnly)
	}
	err := d.sweepOnly(ctx, cl, key, known, roles...)
	if err == nil && whole {
		d.forgetPlaced(key, known)
	}
	return err
}

// notePlaced adds to what vWire id may have left in VPP (placed) the
// interfaces whose create VPP answered.
func (d *Dataplane) notePlaced(id string, ifaces []SwIfIndex) {
	if len(ifaces) == 0 {
		return
	}
	key := tagKey(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, i := range ifaces {
		if !slices.Contains(d.placed[key], i) {
			d.placed[key] = append(d.placed[key], i)
		}
	}
}

// forgetPlaced drops from placed the interfaces of key that a sweep or
// teardown removed (or found not to be the vWire's), all of them for nil.
func (d *Dataplane) forgetPlaced(key string, gone []SwIfIndex) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gone == nil {
		delete(d.placed, key)
		return
	}
	left := slices.DeleteFunc(d.placed[key], func(i SwIfIndex) bool { return slices.Contains(gone, i) })
	if len(left) == 0 {
		delete(d.placed, key)
		return
	}
	d.placed[key] = left
}

// sweepRoles is sweep for the sides of key in roles only.
func (d *Dataplane) sweepRoles(ctx context.Context, cl *Client, key string, roles ...string) error {
	return d.sweepOnly(ctx, cl, key, nil, roles...)
}

// sweepOnly is sweepRoles; with known not nil, it looks among those
// interfaces only and lists no IP table (see sweepKnown).
func (d *Dataplane) sweepOnly(ctx context.Context, cl *Client, key string, known []SwIfIndex, roles ...string) error {
	var ifaces []Interface
	var err error
	if known == nil {
		ifaces, err = cl.ListInterfaces(ctx)
	} else if len(known) > 0 {
		var got []Interface
		var ok []bool
		got, ok, err = cl.GetInterfaces(ctx, known...)
		for i := range got {
			if ok[i] {
				ifaces = append(ifaces, got[i])
			}
		}
	}
	if err != nil {
		return err
	}
	var mine []Interface
	for _, i := range ifaces {
		if t, ok := ParseTag(i.Tag); ok && t.Key == key && slices.Contains(roles, t.Role) {
			mine = append(mine, i)
		}
	}
	var errs []error
	var tables []IPTable // IP tables of this vWire's own (made by earlier versions)
	if known == nil {
		all, err := cl.ListIPTables(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		for _, t := range all {
			if tg, ok := ParseTag(t.Name); ok && tg.Key == key && slices.Contains(roles, tg.Role) {
				tables = append(tables, t)
			}
		}
	}
	// The routes through the interfaces go first: VPP keeps them when
	// their interface goes (and when their table goes), and the next
	// side given their prefix in their table would replace them. One
	// that cannot be deleted keeps its interface and its place in the
	// table, for the next sweep.
	var routeErrs []error
	for _, role := range roles {
		if err := d.vrfs.deleteRoutes(ctx, cl, tagOfKey(role, key)); err != nil {
			routeErrs = append(routeErrs, err)
		}
	}
	for _, t := range tables {
		routes, err := cl.ListRoutes(ctx, t.ID, t.IP6)
		if err != nil {
			routeErrs = append(routeErrs, err)
		}
		for _, r := range routes {
			if r.Prefix.IsSingleIP() {
				if err := cl.DeleteRoute(ctx, r); err != nil && !IsNotFound(err) {
					routeErrs = append(routeErrs, err)
				}
			}
		}
	}
	if len(routeErrs) > 0 {
		return errors.Join(append(errs, routeErrs...)...)
	}
	if len(mine) > 0 {
		errs = append(errs, d.sweepInterfaces(ctx, cl, key, mine)...)
	}
	for _, t := range tables {
		if err := cl.DeleteIPTable(ctx, t); err != nil && !IsNotFound(err) {
			errs = append(errs, err)
		}
		if !t.IP6 {
			d.tables.release(t.ID)
		}
	}
	for _, role := range roles {
		if err := d.vrfs.releaseOwner(ctx, cl, tagOfKey(role, key)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, role := range roles {
		name := linkName(role, key)
		if err := d.host.deleteLink(name, tagOfKey(role, key)); err != nil {
			errs = append(errs, err)
			continue
		}
		// The veth is gone: its VLAN is free once the trunk's filter
		// and the sub-interface are too.
		if v, ok := d.trunk.vlanOf(name); ok && len(errs) == 0 {
			if err := d.host.deleteTrunkVlan(v); err != nil {
				errs = append(errs, err)
				continue
			}
			d.trunk.releaseLink(name)
		}
	}
	return errors.Join(errs...)
}

func (d *Dataplane) sweepInterfaces(ctx context.Context, cl *Client, key string, mine []Interface) []error {
	var errs []error
	keep := func(err error) {
		if err != nil && !IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	// Cross-connects first, so no packet is sent to a half-removed side:
	// every one these interfaces may be the Rx of, by their index, in one
	// round trip, rather than a listing of every cross-connect of VPP.
	// VPP 25.10 answers INVALID_VALUE to an l3xc_del of an Rx with none
	// (undoL3XCCall), and the L2 one puts an Rx in L3 mode, which one
	// that is in it already (an IP vWire's) stays, and which it leaves
	// for good when deleted next (its l2 config goes with it).
	var xcs []pipelined
	for _, i := range mine {
		xcs = append(xcs, undoL3XCCall(L3XC{Rx: i.Index}), undoL3XCCall(L3XC{Rx: i.Index, IP6: true}), deleteL2XCCall(i.Index))
	}
	for _, err := range cl.pipelineEach(ctx, xcs...) {
		keep(err)
	}
	var memifs []Memif
	var vxlans []VxlanTunnelInfo
	for _, i := range mine {
		switch i.kind() {
		case "memif":
			if sock, ok := memifSocketOf(i.Name); ok {
				// Its socket by the id in its name, in the same round
				// trip: no listing of every memif of VPP.
				for _, err := range cl.pipelineEach(ctx, deleteMemifCall(i.Index), deleteSweptMemifSocketCall(sock)) {
					keep(err)
				}
				continue
			}
			if memifs == nil {
				var err error
				if memifs, err = cl.ListMemifs(ctx); err != nil {
					keep(err)
					continue
				}
			}
			keep(cl.DeleteMemif(ctx, i.Index))
			if m := slices.IndexFunc(memifs, func(m Memif) bool { return m.Index == i.Index }); m >= 0 {
				sock := memifs[m].SocketID
				if !slices.ContainsFunc(memifs, func(o Memif) bool { return o.SocketID == sock && o.Index != i.Index }) {
					keep(cl.DeleteMemifSocket(ctx, sock))
				}
			}
		case "sub":
			keep(cl.DeleteSubif(ctx, i.Index))
			if i.Sup == d.trunk.ifIndex() {
				d.trunk.releaseSub(uint16(i.SubID))
			}
		case "host-":
			// A veth's own af_packet, as vwire made them before the
			// KERNEL trunk.
			keep(cl.DeleteAfPacket(ctx, strings.TrimPrefix(i.Name, "host-")))
		case "tap":
			keep(cl.DeleteTap(ctx, i.Index))
		case "vxlan_tunnel":
			if vxlans == nil {
				var err error
				if vxlans, err = cl.ListVxlanTunnels(ctx); err != nil {
					keep(err)
					continue
				}
			}
			if v := slices.IndexFunc(vxlans, func(v VxlanTunnelInfo) bool { return v.Index == i.Index }); v >= 0 {
				keep(cl.DeleteVxlanTunnel(ctx, vxlans[v].VxlanTunnel))
			}
		case "wg":
			keep(cl.DeleteWireguardInterface(ctx, i.Index))
		case "ipip":
			prots, err := cl.ListTunnelProtections(ctx, i.Index)
			keep(err)
			if len(prots) > 0 {
				keep(cl.DeleteTunnelProtection(ctx, i.Index))
			}
			keep(cl.DeleteIpipTunnel(ctx, i.Index))
			for _, p := range prots {
				keep(cl.DeleteSA(ctx, p.Out))
				for _, in := range p.In {
					keep(cl.DeleteSA(ctx, in))
				}
			}
		default:
			errs = append(errs, fmt.Errorf("interface %s (%d) is tagged %q but of a kind vwire does not make: left alone", i.Name, i.Index, i.Tag))
		}
	}
	return errs
}

// Start reconciles with what a previous run left in VPP: objects tagged for
// a connection are kept for the grace period, during which a refresh takes
// them back (Connect); the rest are then removed. It returns once the first
// listing is done; the removal runs in the background until Close.
func (d *Dataplane) Start(ctx context.Context) error {
	lctx, cancel := bounded(ctx)
	defer cancel()
	ifaces, err := d.vpp.ListInterfaces(lctx)
	if err != nil {
		return fmt.Errorf("vpp dataplane: reconcile: %w", err)
	}
	tables, err := d.vpp.ListIPTables(lctx)
	if err != nil {
		return fmt.Errorf("vpp dataplane: reconcile: %w", err)
	}
	links, err := d.host.links()
	if err != nil {
		return fmt.Errorf("vpp dataplane: reconcile: %w", err)
	}
	// Tunnels of ours hold what a refresh must find again: a VXLAN's VNI,
	// a WireGuard side's private key.
	var vxlans []VxlanTunnelInfo
	var wgs []WireguardInterface
	for _, i := range ifaces {
		if t, ok := ParseTag(i.Tag); !ok || t.Role == roleUplink {
			continue
		}
		switch {
		case i.kind() == "vxlan_tunnel" && vxlans == nil:
			vxlans, err = d.vpp.ListVxlanTunnels(lctx)
		case i.kind() == "wg" && wgs == nil:
			wgs, err = d.vpp.ListWireguardInterfaces(lctx)
		}
		if err != nil {
			return fmt.Errorf("vpp dataplane: reconcile: %w", err)
		}
	}
	if err := d.vrfs.resync(lctx, d.vpp, ifaces, tables); err != nil {
		return fmt.Errorf("vpp dataplane: reconcile: %w", err)
	}
	d.mu.Lock()
	memifs := map[string]int{} // a previous run's memifs by vWire, for memifRoom
	for _, i := range ifaces {
		t, ok := ParseTag(i.Tag)
		if !ok || t.Role == roleUplink {
			continue
		}
		d.orphans[t.Key] = true
		if i.kind() == "memif" {
			memifs[t.Key]++
		}
		if w := slices.IndexFunc(wgs, func(w WireguardInterface) bool { return w.Index == i.Index }); w >= 0 {
			// The previous run's key for this side: with it, the
			// refresh's mechanism (which names its public key) is ours
			// and the vWire is taken back as it stands.
			if pub, err := wireguard.PublicKey(wgs[w].PrivateKey); err == nil {
				if d.keys[t.Key] == nil {
					d.keys[t.Key] = map[string]keyPair{}
				}
				d.keys[t.Key][t.Role+"/"+wireguard.Type] = keyPair{priv: wgs[w].PrivateKey, pub: pub, port: wgs[w].Port}
				d.wgPorts[wgs[w].Port] = true
			}
		}
		if v := slices.IndexFunc(vxlans, func(v VxlanTunnelInfo) bool { return v.Index == i.Index }); v >= 0 {
			// Hold the VNI for its connection, so that no new vWire takes
			// it while the old one may come back (and its refresh may).
			if err := d.vnis.Reserve(vxlans[v].VNI); err == nil {
				if d.held[t.Key] == nil {
					d.held[t.Key] = map[string]uint32{}
				}
				d.held[t.Key][t.Role] = vxlans[v].VNI
			}
		}
	}
	for _, t := range tables {
		if tg, ok := ParseTag(t.Name); ok && tg.Role != roleVRF {
			// A table of one side's own, as vwire made them before
			// sides shared tables.
			d.orphans[tg.Key] = true
			d.tables.reserve(t.ID)
		}
	}
	// Veths whose VPP side is gone (a VPP of ours that stopped with the
	// previous forwarder) are swept with the rest.
	for _, alias := range links {
		if tg, ok := ParseTag(alias); ok && tg.Role != roleWL {
			d.orphans[tg.Key] = true
		}
	}
	for key := range d.orphans {
		d.blind[key] = true
	}
	n := len(d.orphans)
	d.mu.Unlock()
	for key, m := range memifs {
		// They take room in VPP's memif pool until a refresh takes them
		// back or collectOrphans removes them.
		d.memifs.settle(key, m)
	}
	if n == 0 {
		return nil
	}
	d.log.Info("found vWires from a previous run in VPP; keeping them for refreshes", "connections", n, "grace", d.grace)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.collectOrphans(ctx)
	}()
	return nil
}

// collectOrphans removes, after the grace period, what no refresh claimed.
func (d *Dataplane) collectOrphans(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-d.closing():
		return
	case <-time.After(d.grace):
	}
	d.mu.Lock()
	var stale []string
	for key := range d.orphans {
		stale = append(stale, key)
	}
	d.orphans = map[string]bool{}
	d.mu.Unlock()
	for _, key := range stale {
		d.log.Info("removing a vWire no connection claimed", "tag_key", key)
		release, err := d.admission.admit(ctx, opRemove)
		if err != nil {
			return // ctx ended
		}
		sctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		err = d.sweep(sctx, d.vpp.WithLogger(d.log.With("tag_key", key)), key)
		cancel()
		release()
		d.mu.Lock()
		if err == nil {
			delete(d.blind, key)
		}
		if d.conns[key] == nil {
			// Nor what Start held for it: its VNIs and read-back keys.
			for _, vni := range d.held[key] {
				d.vnis.Release(vni)
			}
			delete(d.held, key)
			d.dropKeysLocked(key)
			if err == nil {
				d.memifs.settle(key, 0)
			}
		}
		d.mu.Unlock()
		if err != nil {
			d.log.Error("remove stale vWire", "tag_key", key, "err", err)
		}
	}
}

// memifSocketOf reads the socket id from a memif interface's name, which
// VPP 25.10 makes "memif<socket id>/<memif id>" (format_memif_device_name);
// ok is false for another name, and for socket 0, VPP's default, which is
// not a vWire's to delete.
func memifSocketOf(name string) (sock uint32, ok bool) {
	rest, found := strings.CutPrefix(name, "memif")
	if !found {
		return 0, false
	}
	id, _, found := strings.Cut(rest, "/")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

// deleteSweptMemifSocketCall removes the socket of a swept memif, for a
// pipeline after the memif's delete: a socket another memif still uses
// (VPP 25.10: UNEXPECTED_INTF_STATE, "in use") or already gone
// (INVALID_ARGUMENT) is left as it is.
func deleteSweptMemifSocketCall(id uint32) pipelined {
	call := deleteMemifSocketCall(id)
	call.none = func(err error) bool {
		var e api.VPPApiError
		return IsNotFound(err) || errors.As(err, &e) && (e == api.INVALID_ARGUMENT || e == api.UNEXPECTED_INTF_STATE || e == api.INSTANCE_IN_USE)
	}
	return call
}

func tagOfKey(role, key string) string { return Tag{Role: role, Key: key}.String() }
