package vpp

import (
	"context"
	"fmt"
	"net/netip"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/vxlan"
)

// VxlanTunnel is an L2 VXLAN tunnel between this node (Src) and a peer.
type VxlanTunnel struct {
	Src, Dst netip.Addr
	// Port is the UDP port on both ends (4789 when 0).
	Port uint16
	VNI  uint32
}

// VxlanTunnelInfo is what VPP reports of one VXLAN tunnel.
type VxlanTunnelInfo struct {
	Index SwIfIndex
	VxlanTunnel
}

func (t VxlanTunnel) request(add bool) *vxlan.VxlanAddDelTunnelV3 {
	port := t.Port
	if port == 0 {
		port = 4789
	}
	return &vxlan.VxlanAddDelTunnelV3{
		IsAdd:          add,
		Instance:       ^uint32(0),
		SrcAddress:     toAddress(t.Src),
		DstAddress:     toAddress(t.Dst),
		SrcPort:        port,
		DstPort:        port,
		McastSwIfIndex: NoInterface.api(),
		DecapNextIndex: ^uint32(0), // l2-input
		Vni:            t.VNI,
	}
}

// CreateVxlanTunnel creates a tunnel.
func (c *Client) CreateVxlanTunnel(ctx context.Context, t VxlanTunnel) (idx SwIfIndex, err error) {
	idx = NoInterface
	return idx, c.pipeline(ctx, createVxlanTunnelCall(t, func(i SwIfIndex) { idx = i }))
}

// createVxlanTunnelCall is the request that creates tunnel t, for a
// pipeline; made gets its index.
func createVxlanTunnelCall(t VxlanTunnel, made func(SwIfIndex)) pipelined {
	return pipelined{
		req:   t.request(true),
		attrs: []any{"src", t.Src, "dst", t.Dst, "vni", t.VNI},
		wrap:  func(err error) error { return fmt.Errorf("vxlan %s->%s vni %d: create: %w", t.Src, t.Dst, t.VNI, err) },
		got: func(m api.Message) {
			if r, ok := m.(*vxlan.VxlanAddDelTunnelV3Reply); ok {
				made(SwIfIndex(r.SwIfIndex))
			}
		},
	}
}

// DeleteVxlanTunnel deletes a tunnel, named by its parameters.
func (c *Client) DeleteVxlanTunnel(ctx context.Context, t VxlanTunnel) error {
	return c.pipeline(ctx, deleteVxlanTunnelCall(t))
}

// deleteVxlanTunnelCall is the request that deletes tunnel t, for a
// pipeline.
func deleteVxlanTunnelCall(t VxlanTunnel) pipelined {
	return pipelined{
		req:   t.request(false),
		attrs: []any{"src", t.Src, "dst", t.Dst, "vni", t.VNI, "add", false},
		wrap:  func(err error) error { return fmt.Errorf("vxlan %s->%s vni %d: delete: %w", t.Src, t.Dst, t.VNI, err) },
	}
}

// ListVxlanTunnels returns every VXLAN tunnel.
func (c *Client) ListVxlanTunnels(ctx context.Context) ([]VxlanTunnelInfo, error) {
	var out []VxlanTunnelInfo
	err := dump(ctx, c, &vxlan.VxlanTunnelV2Dump{SwIfIndex: NoInterface.api()}, func(d *vxlan.VxlanTunnelV2Details) {
		out = append(out, VxlanTunnelInfo{Index: SwIfIndex(d.SwIfIndex), VxlanTunnel: VxlanTunnel{
			Src: fromAddress(d.SrcAddress), Dst: fromAddress(d.DstAddress), Port: d.DstPort, VNI: d.Vni,
		}})
	})
	if err != nil {
		return nil, fmt.Errorf("list vxlan tunnels: %w", err)
	}
	return out, nil
}

// deleteUnansweredVxlanCall is the request that deletes tunnel t if VPP
// has it: the undo of a vxlan_add_del_tunnel_v3 that got no answer. VPP
// serves a connection's messages in order, so the delete, sent after the
// create, finds the tunnel if the create made it; VPP's "no such entry"
// means it did not. t's VNI is held by its vWire (see holdVNI), so no
// other vWire has a tunnel with t's parameters.
func deleteUnansweredVxlanCall(t VxlanTunnel) pipelined {
	call := deleteVxlanTunnelCall(t)
	call.none = IsNotFound
	return call
}
