package vpp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.fd.io/govpp/binapi/af_packet"
)

// AfPacketSpec is an af_packet interface on a host (Linux) interface of
// VPP's network namespace.
type AfPacketSpec struct {
	HostIfName string
	// MAC is the VPP interface's address; nil gives a random one.
	MAC net.HardwareAddr
	// TxFrames is the number of frames in the TX ring; 0 keeps VPP's
	// default (1024).
	TxFrames uint32
}

// vethTxFrames is the TX ring of a vWire's af_packet. VPP's default ring
// holds 1024 frames of 66 KB (room for a GSO packet each): 69 MB of locked
// memory that VPP's main thread faults in, ~0.25 s per interface, so a node
// building a hundred vWires at once stalled VPP's API for tens of seconds
// and locked gigabytes. 256 frames (17 MB) hold one full VPP vector, so a
// burst is never cut by the ring; frames stay GSO-sized, since the
// workload's veth leaves segmentation to VPP.
const vethTxFrames = 256

// AfPacket is what VPP reports of one af_packet interface.
type AfPacket struct {
	Index      SwIfIndex
	HostIfName string
}

// CreateAfPacket creates an af_packet interface (Ethernet mode), polled and
// administratively up from the start, so that VPP drains its ring at once.
//
// VPP 25.10's epoll loop (vlib_file_poll) goes round again, without running
// any node, for as long as epoll returns its full batch of 16 ready files.
// An af_packet socket stays readable until the input node drains its ring,
// and that node skips an interface that is admin down or in interrupt mode
// until the loop ends: once 16 such rings hold packets (a node building
// many vWires, whose workloads send their first ND and ARP packets before
// VPP's side is configured), the main thread spins in that loop for ever
// and no packet, API call or CLI command is served again. A polled, up
// interface is drained on every main loop pass, and the Client lets only one
// af_packet at a time be between its creation and its admin up: VPP would
// otherwise take the creations of concurrent Connects before any of their
// admin ups.
func (c *Client) CreateAfPacket(ctx context.Context, s AfPacketSpec) (SwIfIndex, error) {
	c.afPacket.Lock()
	defer c.afPacket.Unlock()
	idx, err := c.createAfPacket(ctx, s)
	if err != nil {
		return NoInterface, err
	}
	err = c.SetInterfacePolling(ctx, idx)
	if err == nil {
		err = c.SetInterfaceUp(ctx, idx)
	}
	if err != nil {
		if derr := c.DeleteAfPacket(context.WithoutCancel(ctx), s.HostIfName); derr != nil {
			err = errors.Join(err, derr)
		}
		return NoInterface, fmt.Errorf("af_packet on %s: %w", s.HostIfName, err)
	}
	return idx, nil
}

// createAfPacket is the af_packet_create_v3 call alone, so that its
// latency is told apart from the calls that bring the interface up.
func (c *Client) createAfPacket(ctx context.Context, s AfPacketSpec) (idx SwIfIndex, err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "af_packet_create_v3", start, err, "host_if_name", s.HostIfName, "sw_if_index", idx)
	}()
	req := &af_packet.AfPacketCreateV3{
		Mode:             af_packet.AF_PACKET_API_MODE_ETHERNET,
		HostIfName:       s.HostIfName,
		UseRandomHwAddr:  s.MAC == nil,
		HwAddr:           toMAC(s.MAC),
		NumRxQueues:      1,
		NumTxQueues:      1,
		TxFramesPerBlock: s.TxFrames,
		// VPP's own default for af_packet: bypass the host's qdisc and
		// take the host's checksum and GSO offload into account (a
		// veth's packets often carry a partial checksum).
		Flags: af_packet.AF_PACKET_API_FLAG_QDISC_BYPASS | af_packet.AF_PACKET_API_FLAG_CKSUM_GSO,
	}
	reply, err := af_packet.NewServiceClient(c.conn).AfPacketCreateV3(ctx, req)
	if err != nil {
		return NoInterface, fmt.Errorf("af_packet on %s: create: %w", s.HostIfName, err)
	}
	return SwIfIndex(reply.SwIfIndex), nil
}

// DeleteAfPacket deletes the af_packet interface on a host interface.
func (c *Client) DeleteAfPacket(ctx context.Context, hostIfName string) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "af_packet_delete", start, err, "host_if_name", hostIfName) }()
	_, err = af_packet.NewServiceClient(c.conn).AfPacketDelete(ctx, &af_packet.AfPacketDelete{HostIfName: hostIfName})
	if err != nil {
		return fmt.Errorf("af_packet on %s: delete: %w", hostIfName, err)
	}
	return nil
}

// ListAfPackets returns every af_packet interface.
func (c *Client) ListAfPackets(ctx context.Context) ([]AfPacket, error) {
	var out []AfPacket
	err := dump(ctx, c, &af_packet.AfPacketDump{}, func(d *af_packet.AfPacketDetails) {
		out = append(out, AfPacket{Index: SwIfIndex(d.SwIfIndex), HostIfName: d.HostIfName})
	})
	if err != nil {
		return nil, fmt.Errorf("list af_packets: %w", err)
	}
	return out, nil
}
