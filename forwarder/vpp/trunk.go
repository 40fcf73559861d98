package vpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

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
}

func newTrunk() *trunk {
	return &trunk{index: NoInterface, used: map[uint16]string{}, byLink: map[string]uint16{}, next: 1}
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
	}
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
	for _, i := range ifaces {
		if i.Sub && i.Sup == idx {
			d.trunk.reserve(uint16(i.SubID), "")
		}
	}
	d.trunk.mu.Lock()
	d.trunk.index = idx
	d.trunk.mu.Unlock()
	d.log.Info("KERNEL trunk ready", "host_if", trunkVPP, "sw_if_index", idx, "vlans_in_use", d.trunk.inUse())
	return nil
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
	vlan, err := d.trunk.allocate(host)
	if err != nil {
		return NoInterface, err
	}
	u.push("vlan", func(context.Context, *Client) error {
		if err := d.host.deleteTrunkVlan(vlan); err != nil {
			return err
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
	if err != nil {
		return NoInterface, err
	}
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
