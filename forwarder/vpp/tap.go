package vpp

import (
	"context"
	"fmt"
	"time"

	"go.fd.io/govpp/binapi/tapv2"
)

// TapSpec is a tapv2 interface whose host end is created directly in a
// workload's network namespace.
type TapSpec struct {
	// HostIfName is the Linux name of the host end (at most 15 bytes).
	HostIfName string
	// HostNamespace is the path of the host end's network namespace
	// (/proc/<pid>/ns/net, /var/run/netns/<name>); empty for VPP's own.
	HostNamespace string
	// TUN makes an IP-only (TUN) interface; else it is TAP (Ethernet).
	TUN bool
	// HostMTU is the host end's MTU; 0 leaves Linux's default.
	HostMTU uint32
	// Tag is set on the VPP interface in the create request itself.
	Tag string
}

// Tap is what VPP reports of one tap interface.
type Tap struct {
	Index         SwIfIndex
	HostIfName    string
	HostNamespace string
	TUN           bool
}

// CreateTap creates a tap (tap_create_v3, needs /dev/vhost-net).
func (c *Client) CreateTap(ctx context.Context, s TapSpec) (idx SwIfIndex, err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "tap_create_v3", start, err, "host_if_name", s.HostIfName, "netns", s.HostNamespace, "tun", s.TUN, "sw_if_index", idx)
	}()
	if len(s.Tag) > MaxTagLen {
		return NoInterface, fmt.Errorf("tap %s: tag %q longer than %d bytes", s.HostIfName, s.Tag, MaxTagLen)
	}
	req := &tapv2.TapCreateV3{
		ID:               ^uint32(0),
		UseRandomMac:     true,
		NumRxQueues:      1,
		NumTxQueues:      1,
		TxRingSz:         256,
		RxRingSz:         256,
		HostIfNameSet:    true,
		HostIfName:       s.HostIfName,
		HostNamespaceSet: s.HostNamespace != "",
		HostNamespace:    s.HostNamespace,
		HostMtuSet:       s.HostMTU != 0,
		HostMtuSize:      s.HostMTU,
		Tag:              s.Tag,
	}
	if s.TUN {
		req.TapFlags |= tapv2.TAP_API_FLAG_TUN
	}
	reply, err := tapv2.NewServiceClient(c.conn).TapCreateV3(ctx, req)
	if err != nil {
		return NoInterface, fmt.Errorf("tap %s in %s: create: %w", s.HostIfName, s.HostNamespace, err)
	}
	return SwIfIndex(reply.SwIfIndex), nil
}

// DeleteTap deletes a tap (and its host end).
func (c *Client) DeleteTap(ctx context.Context, idx SwIfIndex) error {
	return c.pipeline(ctx, deleteTapCall(idx))
}

// deleteTapCall is the request that deletes tap idx (and its host end),
// for a pipeline.
func deleteTapCall(idx SwIfIndex) pipelined {
	return pipelined{
		req:   &tapv2.TapDeleteV2{SwIfIndex: idx.api()},
		attrs: []any{"sw_if_index", idx},
		wrap:  func(err error) error { return fmt.Errorf("tap %d: delete: %w", idx, err) },
	}
}

// ListTaps returns every tap.
func (c *Client) ListTaps(ctx context.Context) ([]Tap, error) {
	var out []Tap
	err := dump(ctx, c, &tapv2.SwInterfaceTapV2Dump{SwIfIndex: NoInterface.api()}, func(d *tapv2.SwInterfaceTapV2Details) {
		out = append(out, Tap{Index: SwIfIndex(d.SwIfIndex), HostIfName: d.HostIfName, HostNamespace: d.HostNamespace, TUN: d.TapFlags&tapv2.TAP_API_FLAG_TUN != 0})
	})
	if err != nil {
		return nil, fmt.Errorf("list taps: %w", err)
	}
	return out, nil
}
