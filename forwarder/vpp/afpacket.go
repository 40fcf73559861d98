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
	// default (1024 frames of 66 KB, room for a GSO packet each).
	TxFrames uint32
}

// AfPacket is what VPP reports of one af_packet interface.
type AfPacket struct {
	Index      SwIfIndex
	HostIfName string
}

// CreateAfPacket creates an af_packet interface (Ethernet mode),
// administratively up from the start: af-packet-input skips an interface
// that is down, and its ring, left unread, would keep its socket readable
// (which is what VPP 25.10's epoll livelock feeds on, see trunk.go). vwire
// makes two, the uplink and the KERNEL trunk, and leaves them in VPP's
// default interrupt mode: with two sockets the livelock cannot happen, and
// a polled queue makes VPP's worker spin on its core, where a worker
// starved of CPU for a second makes VPP abort at the next barrier ("worker
// thread deadlock"; seen here with two VPPs on a loaded two-core machine).
// af_packet's receive path is paced by the kernel anyway: a TPACKET_V3
// block reaches VPP when full or after VPP's 1 ms block timeout.
func (c *Client) CreateAfPacket(ctx context.Context, s AfPacketSpec) (SwIfIndex, error) {
	c.afPacket.Lock()
	defer c.afPacket.Unlock()
	idx, err := c.createAfPacket(ctx, s)
	if err != nil {
		return NoInterface, err
	}
	if err = c.SetInterfaceUp(ctx, idx); err != nil {
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
