package vpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.fd.io/govpp/api"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/l2"
)

// KERNEL sides without tapv2 (no /dev/vhost-net) share one af_packet
// interface, the trunk: a veth pair whose one end VPP takes with af_packet
// and gives each vWire a dot1q sub-interface of it, and whose Linux end
// passes each VLAN's frames to and from one vWire's veth (tc programs,
// internal/tcbpf). The workload still gets a veth end of its own.
//
// Why not one af_packet per veth, as before: VPP 25.10's epoll loop
// (vlib_file_poll) calls epoll_wait again, without running any node, for as
// long as it returns its full batch of 16 ready files. An af_packet socket
// stays readable until af-packet-input releases its ring's blocks, which
// happens only after that loop returns. So once 16 rings hold packets at the
// moment a VPP thread enters the loop (the worker held at a barrier by API
// calls while workloads send, or rings of interfaces not yet up), the thread
// spins there for ever: the main thread then serves no API call, or, with a
// worker, the next barrier aborts VPP ("worker thread deadlock"). Nothing
// vwire orders can keep 16 busy rings from being unread for a millisecond.
// With the trunk VPP has two af_packet sockets (trunk and uplink) whatever
// the number of vWires, so the loop can never see 16. It also makes a KERNEL
// side cheap: a sub-interface instead of 28 MB of rings faulted in on VPP's
// main thread.
const (
	trunkVPP  = "vwire-trunk"   // the veth end VPP takes with af_packet
	trunkPort = "vwire-trunk-l" // its Linux peer, where the vWires' filters are
	// trunkAlias marks the trunk's links as ours; it is not a vWire tag,
	// so reconcile never takes them for a vWire's.
	trunkAlias = "vwire-trunk"
	// trunkMTU is the trunk's MTU: above any vWire's (at most 1500).
	trunkMTU = 9000
	// trunkTxFrames is the trunk's TX ring: 256 GSO-sized (66 KB)
	// frames, 17 MB, hold one full VPP vector, and VPP's af_packet hands
	// the ring to the kernel after each vector (VPP's default, 1024, is
	// 69 MB). With VPP's RX ring (160 blocks of 64 KB, 10 MB) that is
	// 28 MB of rings for all of a node's KERNEL vWires.
	trunkTxFrames = 256
	// maxVLAN is the highest VLAN id: a trunk carries at most 4094
	// KERNEL sides.
	maxVLAN = 4094
	// vtrPop1 is VPP's L2_VTR_POP_1: an Ethernet-payload sub-interface
	// takes its tag off on the way in and puts it back on the way out.
	vtrPop1 = 3
)

// ErrNoVLAN is returned when every VLAN of the trunk is in use.
var ErrNoVLAN = errors.New("KERNEL trunk: all 4094 VLANs are in use")

// trunk is the dataplane's state of the trunk: its VPP interface and the
// VLANs in use, each held by the veth (link name) joined to the trunk in
// it, or by a sub-interface alone (a veth of a previous run's that is gone).
type trunk struct {
	mu     sync.Mutex
	index  SwIfIndex
	used   map[uint16]string // VLAN -> link name ("" for a sub-interface alone)
	byLink map[string]uint16
	next   uint16
	// doubt holds the VLANs (reserved, link "") whose sub-interface a
	// create with no answer may have made, and that could not be looked
	// for then: the next KERNEL side, or the next setupTrunk, looks again.
	doubt map[uint16]bool
	// checking is set while one caller looks at the doubtful VLANs.
	checking bool
}

func newTrunk() *trunk {
	return &trunk{index: NoInterface, used: map[uint16]string{}, byLink: map[string]uint16{}, next: 1, doubt: map[uint16]bool{}}
}

// ifIndex is the trunk's VPP interface.
func (t *trunk) ifIndex() SwIfIndex {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.index
}

// allocate takes a free VLAN for link, round robin: a VLAN just released
// is the last one taken again.
func (t *trunk) allocate(link string) (uint16, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.byLink[link]; ok {
		return 0, fmt.Errorf("KERNEL trunk: link %s holds VLAN %d already", link, v)
	}
	for range maxVLAN {
		v := t.next
		t.next = t.next%maxVLAN + 1
		if _, ok := t.used[v]; !ok {
			t.used[v] = link
			t.byLink[link] = v
			return v, nil
		}
	}
	return 0, ErrNoVLAN
}

// reserve records a VLAN found in use (link "" for a sub-interface whose
// port is unknown).
func (t *trunk) reserve(v uint16, link string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.used[v]; ok && old != "" {
		return
	}
	t.used[v] = link
	if link != "" {
		t.byLink[link] = v
	}
}

// vlanOf returns the VLAN link holds.
func (t *trunk) vlanOf(link string) (uint16, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.byLink[link]
	return v, ok
}

// releaseLink frees the VLAN of a veth that is gone.
func (t *trunk) releaseLink(link string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.byLink[link]; ok {
		delete(t.byLink, link)
		delete(t.used, v)
	}
}

// releaseSub frees the VLAN of a deleted sub-interface when no veth holds
// it (a veth's VLAN is freed with the veth).
func (t *trunk) releaseSub(v uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.used[v]; ok && l == "" {
		delete(t.used, v)
		delete(t.doubt, v)
	}
}

// keepInDoubt frees link's hold on its VLAN but keeps the VLAN reserved,
// as a sub-interface's alone: VPP may have a sub-interface in it that
// nothing found yet.
func (t *trunk) keepInDoubt(link string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.byLink[link]; ok {
		delete(t.byLink, link)
		t.used[v] = ""
		t.doubt[v] = true
	}
}

// heldByLink reports whether a veth holds VLAN v (a vWire's side, being
// made or standing).
func (t *trunk) heldByLink(v uint16) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used[v] != ""
}

// takeDoubts returns the doubtful VLANs for one caller to look at, none
// while another caller is at it; doneDoubts ends the look.
func (t *trunk) takeDoubts() []uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.checking || len(t.doubt) == 0 {
		return nil
	}
	t.checking = true
	out := make([]uint16, 0, len(t.doubt))
	for v := range t.doubt {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func (t *trunk) doneDoubts() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checking = false
}

// inUse is the number of VLANs in use.
func (t *trunk) inUse() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.used)
}

// setupTrunk makes (or takes back) the trunk: its veth in Linux, the
// af_packet interface in VPP (up), and records the VLANs that
// Linux's filters and VPP's sub-interfaces already use. Run at start and
// when VPP comes back.
func (d *Dataplane) setupTrunk(ctx context.Context) error {
	if err := d.host.createTrunk(trunkMTU); err != nil {
		return fmt.Errorf("KERNEL trunk: %w", err)
	}
	ports, err := d.host.trunkVlans()
	if err != nil {
		return fmt.Errorf("KERNEL trunk: %w", err)
	}
	for link, v := range ports {
		d.trunk.reserve(v, link)
	}
	cl := d.vpp.WithLogger(d.log.With("step", "trunk"))
	tag := Tag{Role: roleUplink, Key: trunkVPP}.String()
	ifaces, err := cl.ListInterfaces(ctx)
	if err != nil {
		return fmt.Errorf("KERNEL trunk: %w", err)
	}
	idx := NoInterface
	if i := slices.IndexFunc(ifaces, func(i Interface) bool { return i.Tag == tag }); i >= 0 {
		idx = ifaces[i].Index
	} else {
		if idx, err = cl.CreateAfPacket(ctx, AfPacketSpec{HostIfName: trunkVPP, TxFrames: trunkTxFrames}); err != nil {
			return fmt.Errorf("KERNEL trunk: %w", err)
		}
		if err := cl.SetInterfaceTag(ctx, idx, tag); err != nil {
			return errors.Join(fmt.Errorf("KERNEL trunk: %w", err), cl.DeleteAfPacket(ctx, trunkVPP))
		}
		if err := cl.SetInterfaceMTU(ctx, idx, trunkMTU); err != nil {
			return fmt.Errorf("KERNEL trunk: %w", err)
		}
	}
	subs := map[uint16]Interface{}
	for _, i := range ifaces {
		if i.Sub && i.Sup == idx {
			d.trunk.reserve(uint16(i.SubID), "")
			subs[uint16(i.SubID)] = i
		}
	}
	removed := d.removeLeftoverSubifs(ctx, cl, subs)
	d.trunk.mu.Lock()
	d.trunk.index = idx
	for v := range d.trunk.doubt {
		if _, ok := subs[v]; !ok && d.trunk.used[v] == "" {
			// Looked for in the listing: not made.
			delete(d.trunk.used, v)
			delete(d.trunk.doubt, v)
		}
	}
	d.trunk.mu.Unlock()
	d.log.Info("KERNEL trunk ready", "host_if", trunkVPP, "sw_if_index", idx, "vlans_in_use", d.trunk.inUse(), "leftover_subifs_removed", removed)
	return nil
}

// removeLeftoverSubifs deletes the trunk's sub-interfaces (subs, by VLAN)
// that are untagged and in a VLAN no veth holds, and frees their VLANs:
// each was made by a create_vlan_subif whose answer never reached its
// caller (its Connect gave up first), so no tag was set and no sweep, which
// finds objects by tag, would remove it. A sub-interface whose VLAN a veth
// holds is a KERNEL side being made (tagged right after its create) and is
// left alone; so is a tagged one (a previous run's vWire, swept or taken
// back by tag). A VLAN no veth holds is reserved (setupTrunk), so no
// Connect takes it meanwhile. It returns how many it deleted.
func (d *Dataplane) removeLeftoverSubifs(ctx context.Context, cl *Client, subs map[uint16]Interface) int {
	n := 0
	for v, i := range subs {
		if i.Tag != "" || d.trunk.heldByLink(v) {
			continue
		}
		// The listing may be older than a rollback that deleted it and
		// freed its index for another interface: ask again (the VLAN is
		// reserved, so no new sub-interface of ours can be in it now).
		now, ok, err := cl.GetInterface(ctx, i.Index)
		if err == nil && (!ok || !now.Sub || now.Sup != i.Sup || now.SubID != i.SubID || now.Tag != "") {
			if !ok || now.Sup != i.Sup || now.SubID != i.SubID {
				d.trunk.releaseSub(v)
			}
			continue
		}
		if err == nil {
			err = cl.DeleteSubif(ctx, i.Index)
		}
		if err != nil && !IsNotFound(err) {
			cl.log.Warn("KERNEL trunk: untagged sub-interface left by a create with no answer: not deleted, its VLAN kept",
				"sw_if_index", i.Index, "vlan", v, "err", err)
			continue
		}
		d.trunk.releaseSub(v)
		n++
	}
	return n
}

// makeTrunkSide makes a KERNEL side on the trunk: a VLAN, the veth joined
// to the trunk in it, and VPP's sub-interface for it (tag
// popped for an Ethernet payload, whose frames are cross-connected as they
// came). Each is undone in reverse on failure, the VLAN freed last.
func (d *Dataplane) makeTrunkSide(ctx context.Context, cl *Client, u *undoStack, host, tag string, w workloadLink, l3 bool) (SwIfIndex, error) {
	trunkIdx := d.trunk.ifIndex()
	if trunkIdx == NoInterface {
		return NoInterface, errors.New("KERNEL trunk is not ready (VPP came back and the trunk is being made again)")
	}
	// A veth of ours left without its VPP side (the VPP that had it
	// stopped) would be in the way.
	if err := d.host.deleteLink(host, tag); err != nil {
		return NoInterface, err
	}
	d.trunk.releaseLink(host)
	d.checkDoubtfulVLANs(ctx, cl, trunkIdx)
	vlan, err := d.trunk.allocate(host)
	if err != nil {
		return NoInterface, err
	}
	// inDoubt is set by the undo of a create that got no answer when it
	// could not find out whether VPP made the sub-interface: the VLAN
	// then stays reserved, for the next look (checkDoubtfulVLANs,
	// setupTrunk) to remove what VPP has in it.
	inDoubt := false
	u.push("vlan", func(context.Context, *Client) error {
		if err := d.host.deleteTrunkVlan(vlan); err != nil {
			return err
		}
		if inDoubt {
			d.trunk.keepInDoubt(host)
			return nil
		}
		d.trunk.releaseLink(host)
		return nil
	})
	replaced, err := d.host.createVeth(host, tag, vlan, w)
	if replaced != "" {
		cl.log.Warn("workload interface name was held by another vWire's link: deleted it",
			"netns", w.netns, "name", w.name, "held_by", replaced)
	}
	if err != nil {
		return NoInterface, err
	}
	u.push("veth", func(context.Context, *Client) error { return d.host.deleteLink(host, tag) })
	idx, err := cl.CreateVlanSubif(ctx, trunkIdx, vlan)
	if errors.Is(err, api.VLAN_ALREADY_EXISTS) {
		// A sub-interface was left in this VLAN (made by a create whose
		// answer came too late, or by a vWire since gone): take it
		// away, unless a vWire has it.
		if err = d.removeStaleSubif(ctx, cl, trunkIdx, vlan, tag); err == nil {
			idx, err = cl.CreateVlanSubif(ctx, trunkIdx, vlan)
		}
	}
	if err != nil {
		if !answered(err) {
			// VPP may have made it all the same, untagged: look for it
			// when rolling back (see removeUnansweredSubif).
			u.push("sub-interface (create unanswered)", func(ctx context.Context, cl *Client) error {
				if err := removeUnansweredSubif(ctx, cl, trunkIdx, vlan); err != nil {
					inDoubt = true
					return err
				}
				return nil
			})
		}
		return NoInterface, err
	}
	u.made(idx)
	u.pushCall("sub-interface", deleteSubifCall(idx))
	if !l3 {
		if err := cl.SetVlanTagPop(ctx, idx); err != nil {
			return NoInterface, err
		}
	}
	return idx, nil
}

// CreateVlanSubif creates the dot1q sub-interface of parent for vlan
// (exact match: the sub-interface takes single-tagged frames of that VLAN
// only).
func (c *Client) CreateVlanSubif(ctx context.Context, parent SwIfIndex, vlan uint16) (idx SwIfIndex, err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "create_vlan_subif", start, err, "sw_if_index", parent, "vlan", vlan, "sub_sw_if_index", idx)
	}()
	reply, err := interfaces.NewServiceClient(c.conn).CreateVlanSubif(ctx, &interfaces.CreateVlanSubif{SwIfIndex: parent.api(), VlanID: uint32(vlan)})
	if err != nil {
		return NoInterface, fmt.Errorf("sub-interface %d.%d: create: %w", parent, vlan, err)
	}
	return SwIfIndex(reply.SwIfIndex), nil
}

// answered reports whether err is VPP's refusal (a reply with a retval):
// VPP then made nothing. Any other failure (the call's context ended, no
// reply within govpp's timeout, the connection failed) leaves the outcome
// unknown: VPP may have made the object and answered too late.
func answered(err error) bool {
	var e api.VPPApiError
	return errors.As(err, &e)
}

// removeUnansweredSubif deletes parent's sub-interface in vlan if VPP has
// one: the rollback of a create_vlan_subif that got no answer. VPP serves a
// connection's messages in order, so the listing, sent after the create,
// shows the sub-interface if the create made it. A failure (VPP still not
// answering) is returned; the VLAN must then not be handed out again.
func removeUnansweredSubif(ctx context.Context, cl *Client, parent SwIfIndex, vlan uint16) error {
	_, err := removeUntaggedSubif(ctx, cl, parent, vlan)
	if err != nil {
		cl.log.Error("KERNEL trunk: a create_vlan_subif got no answer and its sub-interface cannot be looked for: VLAN kept until it is",
			"vlan", vlan, "err", err)
	}
	return err
}

// removeUntaggedSubif deletes parent's sub-interface in vlan if it is
// untagged; tagged reports one left there because it has a tag (not what
// an unanswered create made: that one has none yet).
func removeUntaggedSubif(ctx context.Context, cl *Client, parent SwIfIndex, vlan uint16) (tagged bool, err error) {
	i, ok, err := cl.FindVlanSubif(ctx, parent, vlan)
	if err != nil || !ok {
		return false, err
	}
	if i.Tag != "" {
		// The VLAN's next create meets it (see removeStaleSubif).
		cl.log.Warn("KERNEL trunk: a tagged sub-interface is in the VLAN of an unanswered create: left alone", "sw_if_index", i.Index, "vlan", vlan, "tag", i.Tag)
		return true, nil
	}
	cl.log.Info("KERNEL trunk: deleting the sub-interface a create_vlan_subif made after its caller gave up", "sw_if_index", i.Index, "vlan", vlan)
	if err := cl.DeleteSubif(ctx, i.Index); err != nil && !IsNotFound(err) {
		return false, err
	}
	return false, nil
}

// removeStaleSubif deletes parent's sub-interface in vlan, found there by
// a create_vlan_subif refused with VLAN_ALREADY_EXISTS, when it is no
// vWire's: untagged, or tagged for this very side (tag), or for a
// connection this dataplane neither has nor keeps for a refresh.
func (d *Dataplane) removeStaleSubif(ctx context.Context, cl *Client, parent SwIfIndex, vlan uint16, tag string) error {
	i, ok, err := cl.FindVlanSubif(ctx, parent, vlan)
	if err != nil {
		return fmt.Errorf("sub-interface %d.%d exists: %w", parent, vlan, err)
	}
	if !ok {
		return nil // gone meanwhile: create again
	}
	if i.Tag != "" && i.Tag != tag {
		t, ok := ParseTag(i.Tag)
		if !ok {
			return fmt.Errorf("sub-interface %d.%d exists, tagged %q (not vwire's): left alone", parent, vlan, i.Tag)
		}
		d.mu.Lock()
		known := d.conns[t.Key] != nil || d.orphans[t.Key]
		d.mu.Unlock()
		if known {
			return fmt.Errorf("sub-interface %d.%d exists and belongs to vWire %s: left alone", parent, vlan, t.Key)
		}
	}
	cl.log.Warn("KERNEL trunk: deleting a leftover sub-interface in the VLAN given to a new side", "sw_if_index", i.Index, "vlan", vlan, "tag", i.Tag)
	if err := cl.DeleteSubif(ctx, i.Index); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}

// checkDoubtfulVLANs looks again at the VLANs whose sub-interface an
// unanswered create may have made (see trunk.doubt): one deleted, or none
// found, frees the VLAN. One caller at a time; failures keep the VLAN for
// the next look and do not fail the caller.
func (d *Dataplane) checkDoubtfulVLANs(ctx context.Context, cl *Client, parent SwIfIndex) {
	vlans := d.trunk.takeDoubts()
	if len(vlans) == 0 {
		return
	}
	defer d.trunk.doneDoubts()
	for _, v := range vlans {
		tagged, err := removeUntaggedSubif(ctx, cl, parent, v)
		if err != nil {
			cl.log.Warn("KERNEL trunk: VLANs in doubt not looked at again", "vlans", vlans, "err", err)
			return
		}
		if tagged {
			// A tagged sub-interface's VLAN is freed with it (sweep).
			d.trunk.mu.Lock()
			delete(d.trunk.doubt, v)
			d.trunk.mu.Unlock()
			continue
		}
		d.trunk.releaseSub(v)
	}
}

// FindVlanSubif returns parent's sub-interface in vlan; ok is false when
// VPP has none. VPP is asked for the interfaces whose name holds the
// trunk's name and the VLAN (sub-interfaces are named
// <parent>.<vlan>), not the whole list.
func (c *Client) FindVlanSubif(ctx context.Context, parent SwIfIndex, vlan uint16) (found Interface, ok bool, err error) {
	req := &interfaces.SwInterfaceDump{SwIfIndex: NoInterface.api(), NameFilterValid: true, NameFilter: fmt.Sprintf("%s.%d", trunkVPP, vlan)}
	err = dump(ctx, c, req, func(d *interfaces.SwInterfaceDetails) {
		if i := interfaceOf(d); i.Sub && i.Sup == parent && i.SubID == uint32(vlan) {
			found, ok = i, true
		}
	})
	if err != nil {
		return Interface{}, false, fmt.Errorf("sub-interface %d.%d: find: %w", parent, vlan, err)
	}
	return found, ok, nil
}

// DeleteSubif deletes a sub-interface.
func (c *Client) DeleteSubif(ctx context.Context, idx SwIfIndex) error {
	return c.pipeline(ctx, deleteSubifCall(idx))
}

// deleteSubifCall is the request that deletes sub-interface idx, for a
// pipeline.
func deleteSubifCall(idx SwIfIndex) pipelined {
	return pipelined{
		req:   &interfaces.DeleteSubif{SwIfIndex: idx.api()},
		attrs: []any{"sw_if_index", idx},
		wrap:  func(err error) error { return fmt.Errorf("sub-interface %d: delete: %w", idx, err) },
	}
}

// SetVlanTagPop makes an L2 sub-interface pop its tag on input (and push it
// back on output).
func (c *Client) SetVlanTagPop(ctx context.Context, idx SwIfIndex) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "l2_interface_vlan_tag_rewrite", start, err, "sw_if_index", idx, "vtr_op", "pop-1")
	}()
	_, err = l2.NewServiceClient(c.conn).L2InterfaceVlanTagRewrite(ctx, &l2.L2InterfaceVlanTagRewrite{SwIfIndex: idx.api(), VtrOp: vtrPop1})
	if err != nil {
		return fmt.Errorf("sub-interface %d: tag rewrite pop 1: %w", idx, err)
	}
	return nil
}
