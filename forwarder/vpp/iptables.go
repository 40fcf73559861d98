package vpp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
)

// roleVRF tags the IP tables vWire sides share: "vwire/vrf/<table id>".
const roleVRF = "vrf"

// ipTables puts the IP-payload local sides of vWires into shared IP
// tables (VRFs), each side into the first table that holds none of its
// addresses, and makes a table only when none will take it.
//
// What a side needs of its table is room for its own host prefixes: the
// far end's addresses on its interface (so that the workload's ARP/ND find
// VPP) and attached routes to the workload's. Its traffic never looks the
// table up: l3xc takes every IP packet in on either side straight to the
// other, and VPP answers ARP/ND only for addresses of the interface asked
// on. So sides whose prefixes differ can share a table without routing
// into each other; sides whose prefixes overlap (two endpoints' IPAM
// giving the same addresses) go into different tables. A table of its own
// per side cost VPP 25.10 about 0.5 MB of main heap (its IPv4 mtrie's
// 64k-entry root alone is 256 kB) and ip_table_add_del about 5 ms of its
// main thread, on every Connect and again on every Close.
//
// A table goes when its last side does, so VPP is back to its tables of
// before once every vWire is closed.
type ipTables struct {
	ids *tableAllocator

	mu     sync.Mutex
	tables []*sharedTable // guarded by mu
}

// sharedTable is one VRF (both families, one id) and the sides in it.
type sharedTable struct {
	id    uint32
	ready chan struct{} // closed once VPP has the table (or failed to make it)
	err   error         // set before ready is closed

	used   map[netip.Prefix]string   // host prefix -> owner (a side's tag); guarded by ipTables.mu
	owners map[string][]netip.Prefix // owner -> its prefixes; guarded by ipTables.mu
}

func newIPTables(ids *tableAllocator) *ipTables { return &ipTables{ids: ids} }

func (s *sharedTable) name() string {
	return Tag{Role: roleVRF, Key: strconv.FormatUint(uint64(s.id), 10)}.String()
}

// fits reports whether none of ps is used in s.
func (s *sharedTable) fits(ps []netip.Prefix) bool {
	for _, p := range ps {
		if _, ok := s.used[p]; ok {
			return false
		}
	}
	return true
}

func (s *sharedTable) add(owner string, ps []netip.Prefix) {
	for _, p := range ps {
		s.used[p] = owner
	}
	s.owners[owner] = append(s.owners[owner], ps...)
}

// place records owner's prefixes in a table that holds none of them,
// making one (both families) if no table will do, and returns its id.
func (t *ipTables) place(ctx context.Context, cl *Client, owner string, ps []netip.Prefix) (uint32, error) {
	t.mu.Lock()
	var s *sharedTable
	for _, c := range t.tables {
		if c.fits(ps) {
			s = c
			break
		}
	}
	create := s == nil
	if create {
		s = &sharedTable{id: t.ids.allocate(), ready: make(chan struct{}), used: map[netip.Prefix]string{}, owners: map[string][]netip.Prefix{}}
		t.tables = append(t.tables, s)
	}
	s.add(owner, ps)
	t.mu.Unlock()

	if create {
		s.err = t.create(ctx, cl, s)
		if s.err != nil {
			t.mu.Lock()
			t.tables = slices.DeleteFunc(t.tables, func(c *sharedTable) bool { return c == s })
			t.mu.Unlock()
			t.ids.release(s.id)
		}
		close(s.ready)
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		t.forget(ctx, cl, owner, s)
		return 0, fmt.Errorf("ip table %d: %w", s.id, ctx.Err())
	}
	if s.err != nil {
		return 0, s.err
	}
	return s.id, nil
}

func (t *ipTables) create(ctx context.Context, cl *Client, s *sharedTable) error {
	var made []IPTable
	for _, ip6 := range []bool{false, true} {
		tb := IPTable{ID: s.id, IP6: ip6, Name: s.name()}
		if err := cl.CreateIPTable(ctx, tb); err != nil {
			for _, m := range made {
				_ = cl.DeleteIPTable(context.WithoutCancel(ctx), m)
			}
			return err
		}
		made = append(made, tb)
	}
	return nil
}

// release takes owner out of table id; the table's last side takes the
// table with it.
func (t *ipTables) release(ctx context.Context, cl *Client, owner string, id uint32) error {
	t.mu.Lock()
	i := slices.IndexFunc(t.tables, func(s *sharedTable) bool { return s.id == id })
	if i < 0 {
		t.mu.Unlock()
		return nil
	}
	s := t.tables[i]
	t.mu.Unlock()
	return t.forget(ctx, cl, owner, s)
}

// deleteRoutes deletes owner's host routes in whatever table holds it (a
// sweep's first step: VPP keeps a route made through the API when the
// interface it goes through is deleted, so the routes go before the
// interfaces). Owner keeps its place: its prefixes are not given to
// another side until releaseOwner.
func (t *ipTables) deleteRoutes(ctx context.Context, cl *Client, owner string) error {
	t.mu.Lock()
	var routes []Route
	for _, s := range t.tables {
		for _, p := range s.owners[owner] {
			routes = append(routes, Route{Table: s.id, Prefix: p})
		}
	}
	t.mu.Unlock()
	var errs []error
	for _, r := range routes {
		if err := cl.DeleteRoute(ctx, r); err != nil && !IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// releaseOwner takes owner out of whatever table holds it; its routes
// went first (deleteRoutes).
func (t *ipTables) releaseOwner(ctx context.Context, cl *Client, owner string) error {
	t.mu.Lock()
	var in []*sharedTable
	for _, s := range t.tables {
		if _, ok := s.owners[owner]; ok {
			in = append(in, s)
		}
	}
	t.mu.Unlock()
	var errs []error
	for _, s := range in {
		errs = append(errs, t.forget(ctx, cl, owner, s))
	}
	return errors.Join(errs...)
}

// forget drops owner from s and deletes s when nobody is left in it.
func (t *ipTables) forget(ctx context.Context, cl *Client, owner string, s *sharedTable) error {
	t.mu.Lock()
	for _, p := range s.owners[owner] {
		if s.used[p] == owner {
			delete(s.used, p)
		}
	}
	delete(s.owners, owner)
	empty := len(s.owners) == 0 && slices.Contains(t.tables, s)
	if empty {
		t.tables = slices.DeleteFunc(t.tables, func(c *sharedTable) bool { return c == s })
	}
	t.mu.Unlock()
	if !empty {
		return nil
	}
	<-s.ready // its maker is done with it
	if s.err != nil {
		return nil
	}
	var errs []error
	for _, ip6 := range []bool{false, true} {
		if err := cl.DeleteIPTable(ctx, IPTable{ID: s.id, IP6: ip6}); err != nil && !IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		t.ids.release(s.id)
	}
	return errors.Join(errs...)
}

// resync forgets what it knew and reads the shared tables back from VPP
// (at start, and after VPP comes back): each host route through a tagged
// interface belongs to that interface's side. Tables no side is in are
// deleted.
func (t *ipTables) resync(ctx context.Context, cl *Client, ifaces []Interface, tables []IPTable) error {
	tagOfIf := map[SwIfIndex]string{}
	for _, i := range ifaces {
		if tg, ok := ParseTag(i.Tag); ok && tg.Role != roleUplink {
			tagOfIf[i.Index] = i.Tag
		}
	}
	byID := map[uint32]*sharedTable{}
	var order []uint32
	var errs []error
	for _, tb := range tables {
		tg, ok := ParseTag(tb.Name)
		if !ok || tg.Role != roleVRF {
			continue
		}
		t.ids.reserve(tb.ID)
		s := byID[tb.ID]
		if s == nil {
			s = &sharedTable{id: tb.ID, ready: make(chan struct{}), used: map[netip.Prefix]string{}, owners: map[string][]netip.Prefix{}}
			close(s.ready)
			byID[tb.ID] = s
			order = append(order, tb.ID)
		}
		routes, err := cl.ListRoutes(ctx, tb.ID, tb.IP6)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range routes {
			if owner, ok := tagOfIf[r.Via]; ok && r.Prefix.IsSingleIP() {
				if _, dup := s.used[r.Prefix]; !dup {
					s.add(owner, []netip.Prefix{r.Prefix})
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ip tables: %w", errors.Join(errs...))
	}
	var keep []*sharedTable
	for _, id := range order {
		s := byID[id]
		if len(s.owners) > 0 {
			keep = append(keep, s)
			continue
		}
		for _, ip6 := range []bool{false, true} {
			if err := cl.DeleteIPTable(ctx, IPTable{ID: id, IP6: ip6}); err != nil && !IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		t.ids.release(id)
	}
	t.mu.Lock()
	for _, s := range t.tables {
		if byID[s.id] == nil { // gone with a VPP that restarted
			t.ids.release(s.id)
		}
	}
	t.tables = keep
	t.mu.Unlock()
	return errors.Join(errs...)
}
