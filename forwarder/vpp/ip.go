package vpp

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/ip"
)

// IPTable is one VPP IP table (VRF) of one address family.
type IPTable struct {
	ID   uint32
	IP6  bool
	Name string // our tag, for tables of ours
}

// CreateIPTable creates (or renames) a table.
func (c *Client) CreateIPTable(ctx context.Context, t IPTable) error { return c.table(ctx, t, true) }

// DeleteIPTable deletes a table and every route in it.
func (c *Client) DeleteIPTable(ctx context.Context, t IPTable) error { return c.table(ctx, t, false) }

func (c *Client) table(ctx context.Context, t IPTable, add bool) (err error) {
	start := time.Now()
	defer func() { c.done(ctx, "ip_table_add_del", start, err, "table", t.ID, "ip6", t.IP6, "add", add) }()
	if len(t.Name) > MaxTagLen {
		return fmt.Errorf("ip table %d: name %q longer than %d bytes", t.ID, t.Name, MaxTagLen)
	}
	_, err = ip.NewServiceClient(c.conn).IPTableAddDel(ctx, &ip.IPTableAddDel{IsAdd: add, Table: ip.IPTable{TableID: t.ID, IsIP6: t.IP6, Name: t.Name}})
	if err != nil {
		return fmt.Errorf("ip table %d (ip6 %v, add %v): %w", t.ID, t.IP6, add, err)
	}
	return nil
}

// ListIPTables returns every IP table of both families.
func (c *Client) ListIPTables(ctx context.Context) ([]IPTable, error) {
	var out []IPTable
	err := dump(ctx, c, &ip.IPTableDump{}, func(d *ip.IPTableDetails) {
		out = append(out, IPTable{ID: d.Table.TableID, IP6: d.Table.IsIP6, Name: d.Table.Name})
	})
	if err != nil {
		return nil, fmt.Errorf("list ip tables: %w", err)
	}
	return out, nil
}

// Route is a route through one interface: attached when NextHop is the
// zero Addr.
type Route struct {
	Table   uint32
	Prefix  netip.Prefix
	Via     SwIfIndex
	NextHop netip.Addr
}

// CreateRoute adds r, replacing any route to the same prefix in the table.
func (c *Client) CreateRoute(ctx context.Context, r Route) error { return c.route(ctx, r, true) }

// DeleteRoute removes the route to r.Prefix in r.Table.
func (c *Client) DeleteRoute(ctx context.Context, r Route) error { return c.route(ctx, r, false) }

func (c *Client) route(ctx context.Context, r Route, add bool) (err error) {
	start := time.Now()
	defer func() {
		c.done(ctx, "ip_route_add_del", start, err, "table", r.Table, "prefix", r.Prefix, "via", r.Via, "nh", r.NextHop, "add", add)
	}()
	route := ip.IPRoute{TableID: r.Table, Prefix: toPrefix(r.Prefix)}
	if add {
		route.Paths = []fib_types.FibPath{fibPath(r.Via, r.NextHop, r.Prefix.Addr().Is6())}
		route.NPaths = 1
	}
	_, err = ip.NewServiceClient(c.conn).IPRouteAddDel(ctx, &ip.IPRouteAddDel{IsAdd: add, Route: route})
	if err != nil {
		return fmt.Errorf("route %s via %d %s in table %d (add %v): %w", r.Prefix, r.Via, r.NextHop, r.Table, add, err)
	}
	return nil
}

// ListRoutes returns the routes of one table: their prefix and first path.
func (c *Client) ListRoutes(ctx context.Context, table uint32, ip6 bool) ([]Route, error) {
	var out []Route
	err := dump(ctx, c, &ip.IPRouteDump{Table: ip.IPTable{TableID: table, IsIP6: ip6}}, func(d *ip.IPRouteDetails) {
		r := Route{Table: table, Prefix: fromPrefix(d.Route.Prefix), Via: NoInterface}
		if len(d.Route.Paths) > 0 {
			r.Via = SwIfIndex(d.Route.Paths[0].SwIfIndex)
		}
		out = append(out, r)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes of table %d: %w", table, err)
	}
	return out, nil
}

// fibPath is a path out of via, to nh (attached when nh is not valid).
func fibPath(via SwIfIndex, nh netip.Addr, ip6 bool) fib_types.FibPath {
	p := fib_types.FibPath{SwIfIndex: uint32(via), Proto: fib_types.FIB_API_PATH_NH_PROTO_IP4, Nh: fib_types.FibPathNh{Address: addressUnion(nh)}}
	if ip6 {
		p.Proto = fib_types.FIB_API_PATH_NH_PROTO_IP6
	}
	return p
}

// routeCall is the request that adds (or deletes) r, for a pipeline.
func (c *Client) routeCall(r Route, add bool) pipelined {
	route := ip.IPRoute{TableID: r.Table, Prefix: toPrefix(r.Prefix)}
	if add {
		route.Paths = []fib_types.FibPath{fibPath(r.Via, r.NextHop, r.Prefix.Addr().Is6())}
		route.NPaths = 1
	}
	return pipelined{
		req:   &ip.IPRouteAddDel{IsAdd: add, Route: route},
		attrs: []any{"table", r.Table, "prefix", r.Prefix, "via", r.Via, "nh", r.NextHop, "add", add},
		wrap: func(err error) error {
			return fmt.Errorf("route %s via %d %s in table %d (add %v): %w", r.Prefix, r.Via, r.NextHop, r.Table, add, err)
		},
	}
}
