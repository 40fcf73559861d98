package vpp

import (
	"context"
	"fmt"
	"time"

	"go.fd.io/govpp/binapi/l2"
)

// L2XC is one direction of an L2 cross-connect: every frame received on Rx
// is sent out of Tx.
type L2XC struct {
	Rx, Tx SwIfIndex
}

// CreateL2XC cross-connects x.Rx to x.Tx (one direction).
func (c *Client) CreateL2XC(ctx context.Context, x L2XC) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "sw_interface_set_l2_xconnect", start, err, "rx", x.Rx, "tx", x.Tx) }()
	_, err = l2.NewServiceClient(c.conn).SwInterfaceSetL2Xconnect(ctx, &l2.SwInterfaceSetL2Xconnect{RxSwIfIndex: x.Rx.api(), TxSwIfIndex: x.Tx.api(), Enable: true})
	if err != nil {
		return fmt.Errorf("l2xc %d->%d: create: %w", x.Rx, x.Tx, err)
	}
	return nil
}

// DeleteL2XC returns rx to L3 mode.
func (c *Client) DeleteL2XC(ctx context.Context, rx SwIfIndex) error {
	return c.pipeline(ctx, deleteL2XCCall(rx))
}

// deleteL2XCCall is the request that returns rx to L3 mode, for a
// pipeline.
func deleteL2XCCall(rx SwIfIndex) pipelined {
	return pipelined{
		req:   &l2.SwInterfaceSetL2Xconnect{RxSwIfIndex: rx.api(), Enable: false},
		attrs: []any{"rx", rx, "enable", false},
		wrap:  func(err error) error { return fmt.Errorf("l2xc from %d: delete: %w", rx, err) },
	}
}

// ListL2XCs returns every L2 cross-connect.
func (c *Client) ListL2XCs(ctx context.Context) ([]L2XC, error) {
	var out []L2XC
	err := dump(ctx, c, &l2.L2XconnectDump{}, func(d *l2.L2XconnectDetails) {
		out = append(out, L2XC{Rx: SwIfIndex(d.RxSwIfIndex), Tx: SwIfIndex(d.TxSwIfIndex)})
	})
	if err != nil {
		return nil, fmt.Errorf("list l2xcs: %w", err)
	}
	return out, nil
}

// CreateL2XCs makes several cross-connect directions, the requests
// pipelined (one round trip to VPP).
func (c *Client) CreateL2XCs(ctx context.Context, xs ...L2XC) error {
	return c.pipeline(ctx, createL2XCCalls(xs...)...)
}

// createL2XCCalls are the requests that make the directions xs, for a
// pipeline.
func createL2XCCalls(xs ...L2XC) []pipelined {
	calls := make([]pipelined, 0, len(xs))
	for _, x := range xs {
		calls = append(calls, pipelined{
			req:   &l2.SwInterfaceSetL2Xconnect{RxSwIfIndex: x.Rx.api(), TxSwIfIndex: x.Tx.api(), Enable: true},
			attrs: []any{"rx", x.Rx, "tx", x.Tx},
			wrap:  func(err error) error { return fmt.Errorf("l2xc %d->%d: create: %w", x.Rx, x.Tx, err) },
		})
	}
	return calls
}
