// Package kernel is the forwarder's kernel dataplane: each vWire is made of
// veth pairs into workloads' network namespaces (KERNEL) and kernel VXLAN
// devices between nodes (VXLAN), cross-connected by tc mirred redirects, or
// of a WireGuard device (WIREGUARD, for IP payloads: the kernel's where it
// has WireGuard, else wireguard-go's in this process on a TUN device)
// joined to the other side by per-vWire policy routing.
// Every link carries its connection id in its alias, so a restarted
// forwarder keeps the links that live connections claim again and removes
// the rest. It is what `vwire node` uses on a host without VPP, and what
// proves on every CI run that a Request gives a vWire that carries packets.
package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmkernel "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	nsmvxlan "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/vxlan"
	"github.com/vishvananda/netlink"
	nlsock "github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/forwarder"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// Defaults.
const (
	DefaultMTU = 1500
	// vxlanOverhead is what VXLAN over IPv4 adds to a frame: outer IP,
	// UDP, VXLAN and the inner Ethernet header.
	vxlanOverhead = 50
	// DefaultGrace is how long links found at start wait to be claimed by
	// a live connection's refresh before they are removed.
	DefaultGrace = time.Minute
)

var errExist = syscall.EEXIST

// Config configures the kernel dataplane.
type Config struct {
	// TunnelIP is this node's address for VXLAN tunnels.
	TunnelIP netip.Addr
	// Grace is how long links found at start may wait for their connection
	// to be refreshed (DefaultGrace when zero).
	Grace time.Duration
	// NetNSPath names the namespace the forwarder's links live in; the
	// current one when empty (tests run several nodes in one process).
	NetNSPath string
	// WireGuard picks the WireGuard implementation, one of WireGuardModes
	// (WireGuardAuto when empty).
	WireGuard string
	// StateDir keeps a record of each local KERNEL↔KERNEL pair, so that a
	// restarted forwarder removes those whose connections are gone (see
	// records.go), in a subdirectory named after the forwarder's
	// namespace: forwarders of several nodes on one host may share it.
	// None is kept when empty (tests that make dataplanes in one namespace
	// give each a directory of its own). `vwire forwarder` uses
	// <--state-dir>/kernel.
	StateDir string
	Logger   *slog.Logger
}

// Dataplane implements forwarder.Dataplane with netlink in the forwarder's
// own network namespace.
type Dataplane struct {
	nl          *netlink.Handle
	tunnel      netip.Addr
	underlayMTU int
	grace       time.Duration
	vnis        *vxlan.VNIAllocator
	log         *slog.Logger
	netnsPath   string // the forwarder's namespace; "" for the current one
	// wg makes WireGuard devices in the forwarder's namespace; nil when
	// there is no WireGuard (WIREGUARD is then not used).
	wg      wgDevices
	wgPorts *portAllocator
	reap    *reaper  // deletes links in batches
	recs    *records // of direct pairs
	conns   *nsConns // route sockets in workloads' namespaces, for direct pairs
	// rtnl is a route socket in the forwarder's namespace for the
	// requests netlink's Handle has no call for.
	rtnl *nlsock.SocketHandle

	mu      sync.Mutex                   // guards the fields below
	held    map[string]map[string]uint32 // VNIs by connection id and role
	wgHeld  map[string]map[string]wgHold // WireGuard keys and ports by connection id and role
	orphans map[string]bool              // ids found at start, not yet claimed
	// listed is set once Start has found what a previous run left: an id
	// not among the orphans then has no links of a previous run here.
	listed bool
	built  map[string]built      // what each id's links were last built from
	direct map[string]directPair // the pairs of local KERNEL↔KERNEL vWires, by id
	// orphanRecs are the records of direct pairs found at start, by id
	// (two when a run stopped as an end moved), not yet claimed.
	orphanRecs map[string][]pairRecord
}

var _ forwarder.Dataplane = (*Dataplane)(nil)

// New opens the dataplane in cfg.NetNS, or the current network namespace.
func New(cfg Config) (*Dataplane, error) {
	ns := netns.None() // the current namespace
	if cfg.NetNSPath != "" {
		var err error
		if ns, err = netns.GetFromPath(cfg.NetNSPath); err != nil {
			return nil, fmt.Errorf("kernel dataplane: %w", err)
		}
		defer ns.Close()
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("kernel dataplane: netlink: %w", err)
	}
	sock, err := nlsock.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("kernel dataplane: netlink: %w", err)
	}
	rtnl, err := nlsock.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		nl.Close()
		sock.Close()
		return nil, fmt.Errorf("kernel dataplane: netlink: %w", err)
	}
	recs, err := openRecords(cfg.StateDir, cfg.NetNSPath)
	if err != nil {
		nl.Close()
		sock.Close()
		rtnl.Close()
		return nil, fmt.Errorf("kernel dataplane: %w", err)
	}
	self, err := netns.Get()
	if err != nil {
		nl.Close()
		sock.Close()
		rtnl.Close()
		recs.close()
		return nil, fmt.Errorf("kernel dataplane: this process's netns: %w", err)
	}
	conns := newNSConns(self)
	d := &Dataplane{nl: nl, reap: newReaper(nl, sock, recs, conns, cfg.Logger), recs: recs, conns: conns, orphanRecs: map[string][]pairRecord{}, rtnl: &nlsock.SocketHandle{Socket: rtnl}, tunnel: cfg.TunnelIP, grace: cfg.Grace, vnis: vxlan.NewVNIAllocator(), log: cfg.Logger,
		netnsPath: cfg.NetNSPath, wgPorts: newPortAllocator(wgFirstPort, wgPorts),
		held: map[string]map[string]uint32{}, wgHeld: map[string]map[string]wgHold{}, orphans: map[string]bool{}, built: map[string]built{}, direct: map[string]directPair{}, underlayMTU: DefaultMTU}
	if d.grace <= 0 {
		d.grace = DefaultGrace
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.reap.log = d.log
	if cfg.TunnelIP.IsValid() {
		if mtu, err := d.mtuOf(cfg.TunnelIP); err == nil {
			d.underlayMTU = mtu
		} else {
			d.log.Warn("tunnel address not on any interface; assuming MTU 1500", "tunnel_ip", cfg.TunnelIP, "err", err)
		}
	}
	if err := d.openWireguard(cfg.WireGuard); err != nil {
		nl.Close()
		sock.Close()
		rtnl.Close()
		recs.close()
		conns.closeAll()
		return nil, fmt.Errorf("kernel dataplane: %w", err)
	}
	return d, nil
}

func (d *Dataplane) mtuOf(ip netip.Addr) (int, error) {
	addrs, err := d.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return 0, err
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip.Unmap() {
			link, err := d.nl.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, err
			}
			return link.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("no interface has %s", ip)
}

// Start reconciles with what a previous run left: links of ours are kept
// for the grace period, during which refreshes claim them; the rest are
// then removed. It returns once the first listing is done; the removal runs
// until ctx ends.
func (d *Dataplane) Start(ctx context.Context) error {
	// Links a previous run was deleting when it stopped.
	if err := d.reap.deleteGroup(); err != nil && !errors.Is(err, syscall.ENODEV) {
		d.log.Warn("links a previous run was deleting are left to the grace period", "err", err)
	}
	links, err := d.nl.LinkList()
	if err != nil {
		return fmt.Errorf("kernel dataplane: list links: %w", err)
	}
	ours := map[string]bool{}                // names of our links
	wgDevs := map[string]map[string]string{} // WireGuard device names by id and role
	d.mu.Lock()
	for _, l := range links {
		role, id, ok := parseAlias(l.Attrs().Alias)
		if !ok {
			continue
		}
		d.orphans[id] = true
		ours[l.Attrs().Name] = true
		switch l := l.(type) {
		case *netlink.Vxlan:
			if err := d.vnis.Reserve(uint32(l.VxlanId)); err == nil {
				d.holdLocked(id, role, uint32(l.VxlanId))
			}
		case *netlink.Wireguard:
			if wgDevs[id] == nil {
				wgDevs[id] = map[string]string{}
			}
			wgDevs[id][role] = l.Attrs().Name
		}
	}
	d.mu.Unlock()
	recs, err := d.recs.list()
	if err != nil {
		d.log.Warn("unreadable pair records removed; their pairs, if any, stay until a workload's namespace goes", "err", err)
	}
	d.mu.Lock()
	for _, r := range recs {
		d.orphans[r.ID] = true
		d.orphanRecs[r.ID] = append(d.orphanRecs[r.ID], r)
	}
	n := len(d.orphans)
	d.listed = true
	d.mu.Unlock()
	if err := d.reconcileWireguard(wgDevs, ours); err != nil {
		return fmt.Errorf("kernel dataplane: reconcile: %w", err)
	}
	if n == 0 {
		return nil
	}
	d.log.Info("found vWire links from a previous run; keeping them for refreshes", "connections", n, "grace", d.grace)
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.grace):
		}
		d.mu.Lock()
		var stale []string
		for id := range d.orphans {
			stale = append(stale, id)
		}
		d.orphans = map[string]bool{}
		d.mu.Unlock()
		for _, id := range stale {
			d.log.Info("removing links no connection claimed", "conn", id)
			if err := d.Disconnect(ctx, id); err != nil {
				d.log.Error("remove stale links", "conn", id, "err", err)
			}
		}
	}()
	return nil
}

// Close releases the netlink handle once the links of closed vWires are
// deleted. Other links stay: traffic goes on, but for userspace WireGuard
// devices, which go with this process.
func (d *Dataplane) Close() error {
	d.reap.flush()
	d.mu.Lock()
	for _, p := range d.direct {
		p.release()
	}
	d.direct = map[string]directPair{}
	d.mu.Unlock()
	d.conns.closeAll()
	if d.wg != nil {
		d.wg.Close()
	}
	d.nl.Close()
	d.reap.sock.Socket.Close()
	d.rtnl.Socket.Close()
	d.recs.close()
	return nil
}

func (d *Dataplane) holdLocked(id, role string, vni uint32) {
	if d.held[id] == nil {
		d.held[id] = map[string]uint32{}
	}
	d.held[id][role] = vni
}

// holdVNI reserves vni for id's role, or confirms the id already holds it.
func (d *Dataplane) holdVNI(id, role string, vni uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held[id][role] == vni {
		return true
	}
	if !d.vnis.TryReserve(vni) {
		return false
	}
	if old, ok := d.held[id][role]; ok {
		d.vnis.Release(old)
	}
	d.holdLocked(id, role, vni)
	return true
}

// Accept takes the first KERNEL (with a namespace), VXLAN or WIREGUARD
// (where the kernel has it, for an IP payload) preference.
func (d *Dataplane) Accept(_ context.Context, id string, conn *networkservice.Connection, prefs []*networkservice.Mechanism) (*networkservice.Mechanism, error) {
	var reasons []error
	for _, p := range prefs {
		switch p.GetType() {
		case nsmkernel.MECHANISM:
			params, err := kernel.FromOffer(p)
			if err == nil && params.NetNSURL == "" {
				err = errors.New("kernel: the client named no network namespace (inodeURL)")
			}
			if err != nil {
				reasons = append(reasons, err)
				continue
			}
			if params.Name == "" {
				params.Name = kernel.DefaultName(id)
			}
			return kernel.New(params), nil
		case nsmvxlan.MECHANISM:
			if !d.tunnel.IsValid() {
				reasons = append(reasons, errors.New("vxlan: this forwarder has no tunnel address"))
				continue
			}
			offer, err := vxlan.FromOffer(p)
			if err != nil {
				reasons = append(reasons, err)
				continue
			}
			params, err := vxlan.Accept(offer, d.tunnel, func(vni uint32) bool { return d.holdVNI(id, roleIn, vni) })
			if err != nil {
				reasons = append(reasons, err)
				continue
			}
			params.MTU = uint32(d.underlayMTU - vxlanOverhead)
			return vxlan.New(params), nil
		case wireguard.Type:
			m, err := d.acceptWireguard(id, conn, p)
			if err != nil {
				reasons = append(reasons, err)
				continue
			}
			return m, nil
		default:
			reasons = append(reasons, fmt.Errorf("%s: not supported by the kernel dataplane", p.GetType()))
		}
	}
	return nil, fmt.Errorf("%w: %w", forwarder.ErrNoMechanism, errors.Join(reasons...))
}

// Offer offers KERNEL to a local endpoint; to a remote hop, WIREGUARD first
// when the kernel has it and the payload is IP, then VXLAN.
func (d *Dataplane) Offer(_ context.Context, id string, conn *networkservice.Connection, remote bool) ([]*networkservice.Mechanism, error) {
	if !remote {
		return []*networkservice.Mechanism{kernel.New(kernel.Params{})}, nil
	}
	if !d.tunnel.IsValid() {
		return nil, nil
	}
	d.mu.Lock()
	vni, ok := d.held[id][roleOut]
	d.mu.Unlock()
	if !ok {
		var err error
		if vni, err = d.vnis.Allocate(); err != nil {
			return nil, fmt.Errorf("vxlan: %w", err)
		}
		d.mu.Lock()
		d.holdLocked(id, roleOut, vni)
		d.mu.Unlock()
	}
	p := vxlan.Offer(d.tunnel, vni)
	p.MTU = uint32(d.underlayMTU - vxlanOverhead)
	offers := []*networkservice.Mechanism{vxlan.New(p)}
	if d.wireguardOK(conn) == nil {
		wg, err := d.offerWireguard(id)
		if err != nil {
			return nil, err
		}
		offers = append([]*networkservice.Mechanism{wg}, offers...)
	}
	return offers, nil
}

// Connect builds (or re-checks) the vWire: the incoming side, the outgoing
// side and the redirects between them.
func (d *Dataplane) Connect(ctx context.Context, id string, in, out *networkservice.Connection) (err error) {
	defer d.reap.begin()()
	d.mu.Lock()
	leftovers := d.orphans[id] || !d.listed
	delete(d.orphans, id)
	recs := d.orphanRecs[id]
	delete(d.orphanRecs, id)
	d.mu.Unlock()
	if len(recs) > 0 {
		defer func() {
			if err != nil {
				d.reorphan(id, recs)
			}
		}()
	}
	routed, err := d.planRouted(id, in, out)
	if err != nil {
		return err
	}
	if out.GetMechanism().GetType() != wireguard.Type {
		// A WIREGUARD offer the next hop did not take.
		d.releaseWireguard(id, roleOut)
	}
	mtu := d.mtu(in, out)
	if in.Context == nil {
		in.Context = &networkservice.ConnectionContext{}
	}
	in.Context.MTU = uint32(mtu)
	from := builtFrom(in, out, mtu)
	pair, direct := directPair{ns: netns.None()}, false
	if routed == nil {
		if pair, direct, err = directFor(id, in, out, mtu); err != nil {
			return err
		}
	}
	d.mu.Lock()
	prev, known := d.built[id]
	old, wasDirect := d.direct[id]
	delete(d.built, id)
	delete(d.direct, id)
	d.mu.Unlock()
	kept := false // id's state is put back as it was (see keep)
	if wasDirect {
		defer func() {
			if !kept {
				old.release()
			}
		}()
	}
	// keep puts back id's state when a refresh found its workload names
	// taken: it stays known, so that its next refresh fails alike and its
	// Close finds nothing of its own to remove.
	keep := func(err error) error {
		if errors.Is(err, forwarder.ErrWorkloadNameTaken) {
			kept = true
			d.mu.Lock()
			d.built[id] = prev
			if wasDirect {
				d.direct[id] = old
			}
			d.mu.Unlock()
		}
		return err
	}
	if direct {
		return keep(d.connectDirect(id, pair, from, prev, known, old, wasDirect, recs, leftovers))
	}
	if len(recs) > 0 {
		// A pair a previous run made for id, which is not local any
		// more: it goes before id's links are made (they carry the same
		// alias).
		if err := d.recs.removePairs(recs); err != nil {
			return fmt.Errorf("remove the pair a previous run made: %w", err)
		}
	}
	if wasDirect {
		// The vWire's endpoint moved off this node: its pair goes, and
		// the client's side is built anew.
		if err := d.removeDirect(id, old); err != nil {
			return err
		}
		d.conns.drop(id) // its namespaces are not held for it any more
		known = false
	}
	// Links built from other mechanisms or addresses (the manager moved the
	// vWire to another endpoint) are not intact however they look. After a
	// restart nothing is known: the links decide.
	fresh := false // nothing of id's is there to remove before building
	if !known || prev == from {
		ok, found := d.check(id, routed)
		if ok {
			d.remember(id, from)
			return nil
		}
		// Rules of id's go with its links (linksOf) and, after a
		// restart, at Start: with no link of id's, none is left either.
		fresh = !known && !found
	}
	if known {
		if err := takenFrom(id, prev, from, map[string]*networkservice.Connection{roleIn: in, roleOut: out}, mtu); err != nil {
			return keep(err)
		}
	}
	start := time.Now()
	switch {
	case known && routed == nil && prev.routed == from.routed:
		// Only what changed is rebuilt: link deletions are serialised in
		// the kernel (tens of ms each), and a heal that moves many vWires
		// at once waits for all of them.
		err = d.update(id, prev, from, in, out, mtu)
	case routed != nil && (!known || prev.routed):
		err = d.updateRouted(id, prev, known, from, in, out, mtu, routed)
	default:
		err = d.build(id, in, out, mtu, routed, fresh)
	}
	if err != nil {
		return err
	}
	d.remember(id, from)
	d.log.Debug("kernel vWire built", "conn", id, "in", in.GetMechanism().GetType(), "out", out.GetMechanism().GetType(), "mtu", mtu, "took", time.Since(start))
	return nil
}

// build makes both sides of id anew: leftovers of an earlier attempt (or of
// a peer that changed) go first, unless fresh says there are none; on
// error nothing is left.
func (d *Dataplane) build(id string, in, out *networkservice.Connection, mtu int, routed *routedXC, fresh bool) error {
	if !fresh {
		d.removeLinks(id)
	}
	inLink, err := d.sideFor(roleIn, id, in.GetMechanism(), in.GetContext(), mtu, routed == nil)
	if err != nil {
		d.removeLinks(id)
		return err
	}
	outLink, err := d.sideFor(roleOut, id, out.GetMechanism(), out.GetContext(), mtu, routed == nil)
	if err != nil {
		d.removeLinks(id)
		return err
	}
	if routed != nil {
		err = d.routeConnect(inLink, outLink, routed)
	} else {
		err = d.crossConnect(inLink, outLink)
	}
	if err != nil {
		d.removeLinks(id)
	}
	return err
}

// update changes a redirect-joined vWire from what it was built from to
// what it must be: a side whose mechanism is the same keeps its link (a
// workload's interface gets its new addresses and routes in place); the
// other side is made anew; the redirects are set again.
func (d *Dataplane) update(id string, prev, now built, in, out *networkservice.Connection, mtu int) error {
	conns := map[string]*networkservice.Connection{roleIn: in, roleOut: out}
	links := map[string]netlink.Link{}
	for _, role := range []string{roleIn, roleOut} {
		c := conns[role]
		link, err := d.nl.LinkByName(linkName(role, id))
		ours := err == nil && link.Attrs().Alias == alias(role, id)
		live := ours && link.Attrs().Group != reapGroup // not on its way out
		switch {
		case live && prev.mech(role) == now.mech(role) && prev.addrs(role) == now.addrs(role):
			links[role] = link
			continue
		case live && prev.mech(role) == now.mech(role) && c.GetMechanism().GetType() == nsmkernel.MECHANISM:
			spec, err := vethSpecFor(role, id, c.GetMechanism(), c.GetContext(), mtu)
			if err == nil {
				err = readdress(spec)
			}
			if err == nil {
				links[role] = link
				continue
			}
			d.log.Info("re-addressing in place failed; rebuilding the side", "conn", id, "role", role, "err", err)
		}
		if ours {
			if err := d.reap.remove([]netlink.Link{link}); err != nil {
				d.removeLinks(id)
				return fmt.Errorf("%s side: delete %s: %w", role, link.Attrs().Name, err)
			}
		}
		link, err = d.sideFor(role, id, c.GetMechanism(), c.GetContext(), mtu, true)
		if err != nil {
			d.removeLinks(id)
			return err
		}
		links[role] = link
	}
	for _, l := range links {
		if err := d.clearRedirects(l); err != nil {
			d.removeLinks(id)
			return err
		}
	}
	if err := d.crossConnect(links[roleIn], links[roleOut]); err != nil {
		d.removeLinks(id)
		return err
	}
	return nil
}

// mtu is the vWire's MTU: the underlay's less the tunnel's overhead when a
// side tunnels, never above what the endpoint asked for.
func (d *Dataplane) mtu(in, out *networkservice.Connection) int {
	mtu := DefaultMTU
	for _, t := range []string{in.GetMechanism().GetType(), out.GetMechanism().GetType()} {
		switch {
		case t == nsmvxlan.MECHANISM && d.underlayMTU-vxlanOverhead < mtu:
			mtu = d.underlayMTU - vxlanOverhead
		case t == wireguard.Type && d.underlayMTU-d.wgOverhead() < mtu:
			mtu = d.underlayMTU - d.wgOverhead()
		}
	}
	if m := int(out.GetContext().GetMTU()); m > 0 && m < mtu {
		mtu = m
	}
	return mtu
}

// vethSpecFor is the veth of a KERNEL side: the client's addresses and
// routes on the incoming side, the endpoint's on the outgoing one.
func vethSpecFor(role, id string, m *networkservice.Mechanism, cc *networkservice.ConnectionContext, mtu int) (vethSpec, error) {
	p, err := kernel.FromMechanism(m)
	if err != nil {
		return vethSpec{}, err
	}
	spec := vethSpec{host: linkName(role, id), role: role, id: id, netns: p.NetNSURL, name: p.Name, mtu: mtu}
	if role == roleIn { // the client's side
		spec.addrs, spec.routes = cc.GetIpContext().GetSrcIpAddrs(), cc.GetIpContext().GetSrcRoutes()
	} else { // the endpoint's side
		spec.addrs, spec.routes = cc.GetIpContext().GetDstIpAddrs(), cc.GetIpContext().GetDstRoutes()
	}
	return spec, nil
}

// side makes one side's link in the forwarder's namespace.
func (d *Dataplane) side(role, id string, m *networkservice.Mechanism, cc *networkservice.ConnectionContext, mtu int) (netlink.Link, error) {
	return d.sideFor(role, id, m, cc, mtu, false)
}

// sideFor is side; redirected says the side is joined by redirects, so
// that a veth's end here needs no IPv6 of its own.
func (d *Dataplane) sideFor(role, id string, m *networkservice.Mechanism, cc *networkservice.ConnectionContext, mtu int, redirected bool) (netlink.Link, error) {
	switch m.GetType() {
	case nsmkernel.MECHANISM:
		spec, err := vethSpecFor(role, id, m, cc, mtu)
		if err != nil {
			return nil, err
		}
		spec.redirected = redirected
		return d.createVeth(spec)
	case nsmvxlan.MECHANISM:
		p, err := vxlan.FromMechanism(m)
		if err != nil {
			return nil, err
		}
		local, remote := p.SrcIP, p.DstIP // we sent the Request onward
		if role == roleIn {
			local, remote = p.DstIP, p.SrcIP // we received it
		}
		return d.createVxlan(linkName(role, id), role, id, p, net.IP(local.AsSlice()), net.IP(remote.AsSlice()), mtu)
	case wireguard.Type:
		return d.createWireguard(role, id, m, mtu)
	}
	return nil, fmt.Errorf("%s side: mechanism %q is not supported by the kernel dataplane", role, m.GetType())
}

// intact reports whether both sides of id exist with our alias and are
// still cross-connected: by redirects, or by routing when routed is set.
func (d *Dataplane) intact(id string, routed *routedXC) bool {
	ok, _ := d.check(id, routed)
	return ok
}

// check is intact, and found says whether a link by either side's name is
// there at all.
func (d *Dataplane) check(id string, routed *routedXC) (ok, found bool) {
	in, err1 := d.nl.LinkByName(linkName(roleIn, id))
	out, err2 := d.nl.LinkByName(linkName(roleOut, id))
	found = !errors.As(err1, new(netlink.LinkNotFoundError)) || !errors.As(err2, new(netlink.LinkNotFoundError))
	if err1 != nil || err2 != nil {
		return false, found
	}
	if in.Attrs().Alias != alias(roleIn, id) || out.Attrs().Alias != alias(roleOut, id) {
		return false, found
	}
	if in.Attrs().Group == reapGroup || out.Attrs().Group == reapGroup {
		return false, found // on their way out
	}
	if routed != nil {
		return d.hasRoutes(in, out, routed), found
	}
	return d.hasRedirect(in, out) && d.hasRedirect(out, in), found
}

// Disconnect removes every link and rule of id and frees its VNIs, ports
// and keys. A vWire made of veths and VXLAN devices is down when it
// returns (its workloads' ends have lost their carrier, its VXLAN devices
// are down) and is deleted a moment later with others (see reaper): its
// VNIs stay taken until then, as the kernel refuses a second device with
// a VNI. WireGuard links are gone when it returns, as their ports are free
// again.
func (d *Dataplane) Disconnect(_ context.Context, id string) error {
	defer d.reap.begin()()
	d.mu.Lock()
	pair, direct := d.direct[id]
	delete(d.direct, id)
	recs := d.orphanRecs[id]
	delete(d.orphanRecs, id)
	vnis := d.held[id]
	delete(d.held, id)
	d.mu.Unlock()
	// The VNIs are free once the links are gone; a link that could not be
	// deleted stays marked for the next start, which deletes it before
	// taking its VNIs again.
	releaseVNIs := func(err error) {
		if err != nil {
			d.log.Warn("VNIs of a closed vWire stay taken: its links are not deleted", "conn", id, "err", err)
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, vni := range vnis {
			d.vnis.Release(vni)
		}
	}
	var err error
	if direct {
		// Nothing of it is in this namespace (see connectDirect).
		err = d.retireDirect(id, pair)
		pair.release()
		d.conns.drop(id)
		releaseVNIs(nil)
	} else {
		err = d.retireLinks(id, releaseVNIs)
	}
	if rerr := d.recs.removePairs(recs); rerr != nil {
		err = errors.Join(err, rerr)
	}
	d.mu.Lock()
	for _, h := range d.wgHeld[id] {
		d.wgPorts.Release(h.port)
	}
	delete(d.wgHeld, id)
	delete(d.orphans, id)
	delete(d.built, id)
	d.mu.Unlock()
	return err
}

// reorphan puts back those of recs, a previous run's records of id's pair,
// that a failed Connect left: the grace, a Close or the next Connect deals
// with them.
func (d *Dataplane) reorphan(id string, recs []pairRecord) {
	var left []pairRecord
	for _, r := range recs {
		if d.recs.has(r.key) {
			left = append(left, r)
		}
	}
	if len(left) == 0 {
		return
	}
	d.mu.Lock()
	d.orphans[id] = true
	d.orphanRecs[id] = append(d.orphanRecs[id], left...)
	d.mu.Unlock()
}

func (d *Dataplane) remember(id string, from built) {
	d.mu.Lock()
	d.built[id] = from
	d.mu.Unlock()
}

// built is what a vWire's links were made from, per side: the mechanism
// (with the MTU) and the addresses and routes on a workload's interface.
type built struct {
	inMech, inAddrs, outMech, outAddrs string
	routed                             bool // joined by routing (WireGuard), not redirects
}

func (b built) mech(role string) string {
	if role == roleIn {
		return b.inMech
	}
	return b.outMech
}

func (b built) addrs(role string) string {
	if role == roleIn {
		return b.inAddrs
	}
	return b.outAddrs
}

func builtFrom(in, out *networkservice.Connection, mtu int) built {
	enc := func(ms ...proto.Message) string {
		var b []byte
		for _, m := range ms {
			e, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			b = append(binary.AppendUvarint(b, uint64(len(e))), e...)
		}
		return string(b)
	}
	ipIn, ipOut := in.GetContext().GetIpContext(), out.GetContext().GetIpContext()
	mtuTag := fmt.Sprintf("mtu=%d;", mtu)
	return built{
		inMech:   mtuTag + enc(in.GetMechanism()),
		inAddrs:  enc(&networkservice.IPContext{SrcIpAddrs: ipIn.GetSrcIpAddrs(), SrcRoutes: ipIn.GetSrcRoutes()}),
		outMech:  mtuTag + enc(out.GetMechanism()),
		outAddrs: enc(&networkservice.IPContext{DstIpAddrs: ipOut.GetDstIpAddrs(), DstRoutes: ipOut.GetDstRoutes()}),
		routed:   in.GetMechanism().GetType() == wireguard.Type || out.GetMechanism().GetType() == wireguard.Type,
	}
}

// removeLinks deletes id's links (a veth's far end goes with it, routes
// with the links they leave by) and its rules. The links go in one batch
// with those of concurrent calls (see reaper); it returns once they are
// gone.
func (d *Dataplane) removeLinks(id string) error {
	links, err := d.linksOf(id)
	if rerr := d.reap.remove(links); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// retireLinks is removeLinks, except that links that are all veths and
// VXLAN devices are only set down and handed to the reaper: they are out
// of use, and their deletion, which takes the kernel tens of milliseconds,
// need not be waited for. after is called once with nil when the links are
// gone (before retireLinks returns, when it waited for that).
func (d *Dataplane) retireLinks(id string, after func(error)) error {
	links, err := d.linksOf(id)
	for _, l := range links {
		switch l.(type) {
		case *netlink.Veth, *netlink.Vxlan:
		default:
			// A WireGuard device: its port is free for the next one
			// only once it is gone.
			rerr := d.reap.remove(links)
			after(rerr)
			return errors.Join(err, rerr)
		}
	}
	if rerr := d.reap.retire(links, after); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// linksOf removes id's rules and returns its links.
func (d *Dataplane) linksOf(id string) ([]netlink.Link, error) {
	var errs []error
	names := map[string]bool{linkName(roleIn, id): true, linkName(roleOut, id): true}
	if err := d.removeRules(func(iif string) bool { return names[iif] }); err != nil {
		errs = append(errs, err)
	}
	var del []netlink.Link
	for _, role := range []string{roleIn, roleOut} {
		if d.wg != nil {
			d.wg.Release(linkName(role, id))
		}
		l, err := d.nl.LinkByName(linkName(role, id))
		if err != nil {
			continue // not there
		}
		if l.Attrs().Alias != alias(role, id) {
			errs = append(errs, fmt.Errorf("link %s is not ours (alias %q): left alone", l.Attrs().Name, l.Attrs().Alias))
			continue
		}
		del = append(del, l)
	}
	return del, errors.Join(errs...)
}
