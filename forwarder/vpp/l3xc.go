package vpp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/l3xc"
)

// L3XC is one direction and address family of an L3 cross-connect: every
// IP packet of that family received on Rx is sent out of Tx, to NextHop
// (unset for point-to-point interfaces), without a FIB lookup.
type L3XC struct {
	Rx, Tx  SwIfIndex
	IP6     bool
	NextHop netip.Addr
}

// CreateL3XC creates the cross-connect of x.Rx, which must have none
// (VPP 25.10 does not restack one it replaces: see CreateL3XCs).
func (c *Client) CreateL3XC(ctx context.Context, x L3XC) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "l3xc_update", start, err, "rx", x.Rx, "tx", x.Tx, "ip6", x.IP6, "nh", x.NextHop) }()
	_, err = l3xc.NewServiceClient(c.conn).L3xcUpdate(ctx, &l3xc.L3xcUpdate{L3xc: l3xc.L3xc{
		SwIfIndex: x.Rx.api(), IsIP6: x.IP6, NPaths: 1, Paths: []fib_types.FibPath{fibPath(x.Tx, x.NextHop, x.IP6)},
	}})
	if err != nil {
		return fmt.Errorf("l3xc %d->%d (ip6 %v): create: %w", x.Rx, x.Tx, x.IP6, err)
	}
	return nil
}

// DeleteL3XC removes the cross-connect of rx for one family.
func (c *Client) DeleteL3XC(ctx context.Context, rx SwIfIndex, ip6 bool) error {
	return c.pipeline(ctx, deleteL3XCCall(rx, ip6))
}

// deleteL3XCCall is the request that removes the cross-connect of rx for
// one family, for a pipeline.
func deleteL3XCCall(rx SwIfIndex, ip6 bool) pipelined {
	return pipelined{
		req:   &l3xc.L3xcDel{SwIfIndex: rx.api(), IsIP6: ip6},
		attrs: []any{"rx", rx, "ip6", ip6},
		wrap:  func(err error) error { return fmt.Errorf("l3xc from %d (ip6 %v): delete: %w", rx, ip6, err) },
	}
}

// ListL3XCs returns every L3 cross-connect.
func (c *Client) ListL3XCs(ctx context.Context) ([]L3XC, error) {
	var out []L3XC
	err := dump(ctx, c, &l3xc.L3xcDump{SwIfIndex: NoInterface.api()}, func(d *l3xc.L3xcDetails) {
		x := L3XC{Rx: SwIfIndex(d.L3xc.SwIfIndex), IP6: d.L3xc.IsIP6, Tx: NoInterface}
		if len(d.L3xc.Paths) > 0 {
			p := d.L3xc.Paths[0]
			x.Tx = SwIfIndex(p.SwIfIndex)
			if p.Proto == fib_types.FIB_API_PATH_NH_PROTO_IP6 {
				a := p.Nh.Address.GetIP6()
				x.NextHop = netip.AddrFrom16(a)
			} else {
				a := p.Nh.Address.GetIP4()
				x.NextHop = netip.AddrFrom4(a)
			}
			if x.NextHop.IsUnspecified() {
				x.NextHop = netip.Addr{}
			}
		}
		out = append(out, x)
	})
	if err != nil {
		return nil, fmt.Errorf("list l3xcs: %w", err)
	}
	return out, nil
}

// CreateL3XCs creates the cross-connects of xs, pipelined (one round
// trip to VPP); made gets each one made, also when another failed.
//
// Each is created anew: any cross-connect VPP still has on its Rx goes
// first, in the same round trip. VPP 25.10's l3xc keeps a cross-connect
// when its Rx interface is deleted, and gives that interface's index to
// the next interface made; and l3xc_update on an Rx that has one takes the
// new path without restacking the forwarding on it, so packets keep going
// where the old path led (a drop, once its Tx is gone) until something
// else moves the path (an ARP resolution does; a WireGuard or VXLAN Tx
// never does). A Connect whose l3xc_update was answered after its caller
// gave up left such cross-connects behind (its rollback removed the
// interfaces, not what it never heard was made), and the soak's remote
// KERNEL vWires whose client side got such an index dropped every packet
// their workload sent (TestStaleL3XCOnReusedIndex).
func (c *Client) CreateL3XCs(ctx context.Context, made func(L3XC), xs ...L3XC) error {
	return c.pipeline(ctx, createL3XCCalls(made, xs...)...)
}

// createL3XCCalls are the requests that create the cross-connects of xs,
// for a pipeline, each after a delete of any cross-connect its Rx still
// has (see CreateL3XCs); made gets each one made.
func createL3XCCalls(made func(L3XC), xs ...L3XC) []pipelined {
	calls := make([]pipelined, 0, 2*len(xs))
	for _, x := range xs {
		calls = append(calls, undoL3XCCall(x))
	}
	for _, x := range xs {
		calls = append(calls, pipelined{
			req: &l3xc.L3xcUpdate{L3xc: l3xc.L3xc{
				SwIfIndex: x.Rx.api(), IsIP6: x.IP6, NPaths: 1, Paths: []fib_types.FibPath{fibPath(x.Tx, x.NextHop, x.IP6)},
			}},
			attrs: []any{"rx", x.Rx, "tx", x.Tx, "ip6", x.IP6, "nh", x.NextHop},
			wrap:  func(err error) error { return fmt.Errorf("l3xc %d->%d (ip6 %v): create: %w", x.Rx, x.Tx, x.IP6, err) },
			got:   func(api.Message) { made(x) },
			// One whose reply was lost may be in VPP: its removal is
			// recorded too. Left behind, with its Tx deleted, VPP 25.10
			// leaves the path of the route through that Tx holding the
			// deleted interface's adjacency, not dropped
			// (TestRouteOutlivingInterfaceVPP).
			lost: func() { made(x) },
		})
	}
	return calls
}

// undoL3XCCall is the request that removes x's cross-connect, if its Rx
// has one, for a pipeline: l3xc_del answers INVALID_VALUE (VPP 25.10) when
// Rx has none, which is no failure here.
func undoL3XCCall(x L3XC) pipelined {
	del := deleteL3XCCall(x.Rx, x.IP6)
	del.none = func(err error) bool { return errors.Is(err, api.INVALID_VALUE) || IsNotFound(err) }
	return del
}
