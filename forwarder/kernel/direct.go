package kernel

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmkernel "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A local KERNEL↔KERNEL vWire is one veth pair: the client's interface in
// the client's namespace, its peer the endpoint's interface in the
// endpoint's. Nothing of it is in the forwarder's namespace and no tc
// redirect joins it, so a Connect costs the kernel one veth instead of two
// plus two ingress qdiscs and filters (each of which, the first on the
// host, also flips a static key: a text patch on every CPU), and a Close
// sets one link down instead of two. Both ends carry the alias
// vwire/wl/<connection id>. A forwarder that restarts cannot list them in
// its namespace: each has a record in the state directory instead
// (records.go), so that those no refresh claims are deleted after the
// grace.

// directPair is the two ends of a local KERNEL↔KERNEL vWire.
type directPair struct {
	in, out vethSpec // the client's end and the endpoint's
	// ns is the client's namespace, held open while the pair is ours:
	// the path the mechanism names may be a descriptor the forwarder has
	// closed by the time the vWire is (and the reaper's pass runs).
	// netns.None() when not held.
	ns netns.NsHandle
	// record is the key of the pair's record (records.go); "" when
	// none is kept.
	record string
}

// release closes p's hold on the client's namespace.
func (p directPair) release() {
	if p.ns.IsOpen() {
		p.ns.Close()
	}
}

// clientNS opens p's client namespace: a duplicate of the held handle, or
// from the mechanism's path.
func (p directPair) clientNS() (netns.NsHandle, error) {
	if p.ns.IsOpen() {
		fd, err := unix.FcntlInt(uintptr(p.ns), unix.F_DUPFD_CLOEXEC, 0)
		if err == nil {
			return netns.NsHandle(fd), nil
		}
	}
	return openNetNS(p.in.netns)
}

// sameEnds reports whether p and o name the same interfaces in the same
// namespaces.
func (p directPair) sameEnds(o directPair) bool {
	return p.in.netns == o.in.netns && p.in.name == o.in.name && p.out.netns == o.out.netns && p.out.name == o.out.name
}

// directFor is the pair for in and out when both are KERNEL.
func directFor(id string, in, out *networkservice.Connection, mtu int) (directPair, bool, error) {
	if in.GetMechanism().GetType() != nsmkernel.MECHANISM || out.GetMechanism().GetType() != nsmkernel.MECHANISM {
		return directPair{ns: netns.None()}, false, nil
	}
	i, err := vethSpecFor(roleIn, id, in.GetMechanism(), in.GetContext(), mtu)
	if err != nil {
		return directPair{ns: netns.None()}, false, err
	}
	o, err := vethSpecFor(roleOut, id, out.GetMechanism(), out.GetContext(), mtu)
	if err != nil {
		return directPair{ns: netns.None()}, false, err
	}
	return directPair{in: i, out: o, ns: netns.None()}, true, nil
}

// pairHandles are route sockets in the two workloads' namespaces (shared,
// see nsConns), and netlink handles there for the rarer steps, opened when
// first asked for.
type pairHandles struct {
	conns       *nsConns
	in, out     *nsConn
	inNS, outNS netns.NsHandle // in's and out's, not owned
	hin, hout   *netlink.Handle
	// took is how long a build's netlink exchanges took, for its debug
	// line: the pair's creation, the client's end, the endpoint's.
	took struct{ create, clientEnd, endpointEnd time.Duration }
}

func (d *Dataplane) openPair(p directPair) (*pairHandles, error) {
	h := &pairHandles{conns: d.conns}
	var err error
	if h.in, err = d.conns.get(p.in.netns); err != nil {
		return nil, fmt.Errorf("the client's namespace: %w", err)
	}
	if h.out, err = d.conns.get(p.out.netns); err != nil {
		d.conns.put(h.in)
		return nil, fmt.Errorf("the endpoint's namespace: %w", err)
	}
	h.inNS, h.outNS = h.in.ns, h.out.ns
	return h, nil
}

// inHandle and outHandle are netlink handles in the client's and the
// endpoint's namespace.
func (h *pairHandles) inHandle() (*netlink.Handle, error) {
	if h.hin == nil {
		var err error
		if h.hin, err = netlink.NewHandleAt(h.inNS, unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("netlink in the client's namespace: %w", err)
		}
	}
	return h.hin, nil
}

func (h *pairHandles) outHandle() (*netlink.Handle, error) {
	if h.hout == nil {
		var err error
		if h.hout, err = netlink.NewHandleAt(h.outNS, unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("netlink in the endpoint's namespace: %w", err)
		}
	}
	return h.hout, nil
}

func (h *pairHandles) close() {
	if h.hin != nil {
		h.hin.Close()
	}
	if h.hout != nil {
		h.hout.Close()
	}
	h.conns.put(h.in)
	h.conns.put(h.out)
}

// directIntact reports whether p's ends are there, ours, up, peers of each
// other and not on their way out; found says whether the client's end of
// id is there at all.
func directIntact(h *pairHandles, id string, p directPair) (ok, found bool) {
	c, err := h.in.rtnl.linkByName(p.in.name)
	if err != nil || c.Attrs().Alias != alias(roleWL, id) {
		return false, false
	}
	if _, veth := c.(*netlink.Veth); !veth || c.Attrs().Group == reapGroup || c.Attrs().Flags&unix.IFF_UP == 0 {
		return false, true
	}
	e, err := h.out.rtnl.linkByName(p.out.name)
	if err != nil || e.Attrs().Alias != alias(roleWL, id) || e.Attrs().Index != c.Attrs().ParentIndex || e.Attrs().Flags&unix.IFF_UP == 0 {
		return false, true
	}
	return true, true
}

// connectDirect builds or re-checks the pair p of id. prev and old are what
// id was built from and its pair, if any (known, wasDirect); orphan is the
// records of the pair a previous run made for id, if any; leftovers says
// whether a previous run may have left links of id's in this namespace.
func (d *Dataplane) connectDirect(id string, p directPair, from, prev built, known bool, old directPair, wasDirect bool, orphans []pairRecord, leftovers bool) error {
	entered := time.Now()
	h, err := d.openPair(p)
	if err != nil {
		return err
	}
	defer h.close()
	opened := time.Now()
	if wasDirect {
		p.record = old.record
	}
	if !known || prev == from {
		if ok, _ := directIntact(h, id, p); ok {
			if len(orphans) > 0 {
				// Found again after a restart: one record of it, of
				// what it is now.
				rec, err := d.recs.write(id, h, p)
				if err != nil {
					d.log.Warn("a previous run's record of the pair stands for it", "conn", id, "err", err)
					rec, orphans = orphans[0].key, orphans[1:]
				}
				for _, o := range orphans {
					if err := d.recs.remove(o.key); err != nil {
						d.log.Warn("a previous run's record of the pair stays", "conn", id, "err", err)
					}
				}
				p.record = rec
			}
			d.rememberDirect(id, from, p, h)
			return nil
		}
	}
	if known {
		if err := takenEnds(id, prev, from, []vethSpec{p.in, p.out}); err != nil {
			return err
		}
	}
	start := time.Now()
	if wasDirect && old.sameEnds(p) && prev.inMech == from.inMech && prev.outMech == from.outMech {
		// New addresses only (the endpoint's IPAM answered otherwise):
		// in place, the workloads keep their interfaces.
		if ok, _ := directIntact(h, id, p); ok {
			err := readdress(p.in)
			if err == nil {
				err = readdress(p.out)
			}
			if err == nil {
				d.rememberDirect(id, from, p, h)
				return nil
			}
			d.log.Info("re-addressing in place failed; rebuilding the pair", "conn", id, "err", err)
		}
	}
	if wasDirect && old.in.netns == p.in.netns && old.in.name == p.in.name && old.in.mtu == p.in.mtu && !old.sameEnds(p) {
		// Another endpoint: its end of the pair moves to the new
		// endpoint's namespace, and the client keeps its interface (only
		// its addresses change).
		// The record names the new endpoint's namespace before the
		// end is there: a crash in between leaves the pair found.
		rec, err := d.recs.write(id, h, p)
		if err == nil {
			if err = d.recs.remove(p.record); err == nil {
				p.record = rec
			}
		}
		if err == nil {
			err = d.moveEnd(h, id, old.out, p.out)
		}
		if err == nil {
			err = readdress(p.in)
		}
		if err == nil {
			d.rememberDirect(id, from, p, h)
			d.log.Debug("kernel vWire moved to another endpoint", "conn", id, "pair", p.in.name+"<->"+p.out.name, "took", time.Since(start))
			return nil
		}
		d.log.Info("moving the endpoint's end failed; rebuilding the pair", "conn", id, "err", err)
	}
	switch {
	case wasDirect:
		// The client's interface is made anew, with its name and
		// addresses.
		if err := d.removeDirect(id, old); err != nil {
			return err
		}
	case known:
		// The vWire was made of links in this namespace (its endpoint was
		// remote).
		if err := d.removeLinks(id); err != nil {
			return err
		}
	default:
		// After a restart: links of id's here, or the pair the record
		// names, are an earlier build's. (Two look-ups, skipped when
		// Start found none of id's.)
		if leftovers {
			if _, found := d.check(id, nil); found {
				if err := d.removeLinks(id); err != nil {
					return err
				}
			}
		}
		if err := d.recs.removePairs(orphans); err != nil {
			return fmt.Errorf("remove the pair a previous run made: %w", err)
		}
	}
	// Recorded before it is made: a crash in between leaves a record
	// of nothing, never a pair without one. The old pair's record goes
	// once the new one is there (removeDirect may have removed it).
	recording := time.Now()
	rec, err := d.recs.write(id, h, p)
	if err != nil {
		return err
	}
	if err := d.recs.remove(p.record); err != nil {
		d.recs.remove(rec)
		return err
	}
	p.record = rec
	building := time.Now()
	if err := d.buildDirect(h, p); err != nil {
		if rerr := d.recs.remove(rec); rerr != nil {
			d.log.Warn("pair record of a failed build stays", "conn", id, "err", rerr)
		}
		return err
	}
	d.rememberDirect(id, from, p, h)
	// The steps' times, for a Request's breakdown (vwire bench reads
	// them): the sockets, the look-ups before the build, the record, and
	// the build's three exchanges.
	d.log.Debug("kernel vWire built", "conn", id, "in", nsmkernel.MECHANISM, "out", nsmkernel.MECHANISM, "pair", p.in.name+"<->"+p.out.name, "mtu", p.in.mtu, "took", time.Since(start),
		"whole", time.Since(entered), "open", opened.Sub(entered), "check", recording.Sub(opened), "record", building.Sub(recording),
		"create", h.took.create, "client_end", h.took.clientEnd, "endpoint_end", h.took.endpointEnd)
	return nil
}

// moveEnd moves id's end from (in its namespace) into h's endpoint
// namespace as to names it, and configures it there; the peer, the
// client's interface, stays.
func (d *Dataplane) moveEnd(h *pairHandles, id string, from, to vethSpec) error {
	ns, err := openNetNS(from.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	err = withLink(ns, from, id, func(_ *netlink.Handle, l netlink.Link) error {
		sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer sock.Close()
		move := func() error {
			req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
			req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
			msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
			msg.Index = int32(l.Attrs().Index)
			req.AddData(msg)
			req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(h.outNS))))
			req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(to.name)))
			_, err := req.Execute(unix.NETLINK_ROUTE, 0)
			return err
		}
		err = move()
		if errors.Is(err, errExist) {
			hout, rerr := h.outHandle()
			if rerr == nil {
				rerr = d.makeRoom(hout, to)
			}
			if rerr != nil {
				return rerr
			}
			err = move()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", from.name, to.netns, err)
	}
	l, err := h.out.rtnl.linkByName(to.name)
	if err != nil {
		return fmt.Errorf("find %s after the move: %w", to.name, err)
	}
	return configureEnd(h.out.rtnl, l.Attrs().Index, to, true)
}

func (d *Dataplane) rememberDirect(id string, from built, p directPair, h *pairHandles) {
	if !p.ns.IsOpen() {
		if fd, err := unix.FcntlInt(uintptr(h.inNS), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			p.ns = netns.NsHandle(fd)
		} else if ns, err := p.clientNS(); err == nil {
			p.ns = ns
		}
	}
	d.conns.hold(id, h.in, h.out)
	d.mu.Lock()
	d.built[id] = from
	d.direct[id] = p
	d.mu.Unlock()
}

// buildDirect makes the pair, names, addresses, routes and sets up both
// ends; on error nothing is left. Three exchanges with the kernel: the
// pair (made with the client's end up) and a look-up of that end (its
// index, and its peer's); the client's end's alias, addresses and routes;
// the endpoint's end's alias and up, addresses and routes.
func (d *Dataplane) buildDirect(h *pairHandles, p directPair) error {
	t0 := time.Now()
	c, err := d.addPair(h, p)
	if errors.Is(err, errExist) {
		hin, errIn := h.inHandle()
		if errIn == nil {
			errIn = d.makeRoom(hin, p.in)
		}
		hout, errOut := h.outHandle()
		if errOut == nil {
			errOut = d.makeRoom(hout, p.out)
		}
		if err := errors.Join(errIn, errOut); err != nil {
			return fmt.Errorf("veth %s<->%s: %w", p.in.name, p.out.name, err)
		}
		c, err = d.addPair(h, p)
	}
	if err != nil {
		return fmt.Errorf("veth %s<->%s: create: %w", p.in.name, p.out.name, err)
	}
	t1 := time.Now()
	err = configureEnd(h.in.rtnl, c.Attrs().Index, p.in, false)
	t2 := time.Now()
	if err == nil {
		err = configureEnd(h.out.rtnl, c.Attrs().ParentIndex, p.out, true)
	}
	h.took.create, h.took.clientEnd, h.took.endpointEnd = t1.Sub(t0), t2.Sub(t1), time.Since(t2)
	if err != nil {
		if errs, _, derr := h.in.rtnl.exchange(delLinkReq(c.Attrs().Index)); derr == nil && errs[0] != nil {
			d.log.Warn("delete the pair of a failed build", "pair", p.in.name+"<->"+p.out.name, "err", errs[0])
		}
		return fmt.Errorf("veth %s<->%s: %w", p.in.name, p.out.name, err)
	}
	return nil
}

// addPair asks for the pair in one request, on the socket in the client's
// namespace: the client's end there and up, the peer in the endpoint's
// namespace and down (a veth end cannot be set up before its peer is
// registered, and the peer is made first; the kernel takes no alias at
// creation). The request asks for its echo (NLM_F_ECHO: Linux 6.1 and
// later answer a creation with the new link, as its notification says it),
// which gives the client's end's index and its peer's (a veth's
// IFLA_LINK). A kernel that sends no echo gets a look-up by name instead.
// The echo saves that look-up's round, and the look-up was not free: it
// runs the link's pending link-watch event at once (an IPv6 route table
// walk in the client's namespace), which the link-watch worker otherwise
// merges with the carrier event of the endpoint's end coming up.
func (d *Dataplane) addPair(h *pairHandles, p directPair) (netlink.Link, error) {
	return addPairOn(h.in.rtnl, h.outNS, p)
}

// addPairOn is addPair through conn, the socket in the client's namespace;
// outNS is the endpoint's.
func addPairOn(conn *rtnlConn, outNS netns.NsHandle, p directPair) (netlink.Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(p.in.name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.in.mtu))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(p.out.name))
	peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.out.mtu)))
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(outNS)))
	req.AddData(info)
	errs, replies, err := conn.exchange(req)
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	if c, err := echoedPair(replies[0], p.in.name); err == nil {
		return c, nil
	}
	c, err := conn.linkByName(p.in.name)
	if err != nil {
		return nil, fmt.Errorf("find it: %w", err)
	}
	if c.Attrs().ParentIndex <= 0 {
		return nil, fmt.Errorf("%s: the kernel gave no peer index", p.in.name)
	}
	return c, nil
}

// echoedPair is the client's end name as the kernel's echo of its
// creation describes it, with its peer's index; an error when there was
// no echo or it does not say.
func echoedPair(reply []byte, name string) (netlink.Link, error) {
	c, err := parseLink(reply)
	if err != nil {
		return nil, err
	}
	if c.Attrs().Name != name || c.Attrs().Index <= 0 || c.Attrs().ParentIndex <= 0 {
		return nil, fmt.Errorf("the echo of %s's creation names %q, index %d, peer %d", name, c.Attrs().Name, c.Attrs().Index, c.Attrs().ParentIndex)
	}
	return c, nil
}

// configureEnd gives the workload end index, through conn (a socket in
// the workload's namespace), its alias, and sets it up when up, then its
// addresses and routes: one exchange.
func configureEnd(conn *rtnlConn, index int, s vethSpec, up bool) error {
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	reqs := []*nl.NetlinkRequest{setLinkReq(index, alias(roleWL, s.id), flags, flags, 0)}
	for _, a := range s.addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
		reqs = append(reqs, addAddrReq(index, addr))
	}
	for _, r := range s.routes {
		dst, err := parsePrefix(r.GetPrefix())
		if err != nil {
			return fmt.Errorf("route %q: %w", r.GetPrefix(), err)
		}
		route := &netlink.Route{Dst: dst, Scope: netlink.SCOPE_LINK}
		if nh := r.GetNextHop(); nh != "" {
			if route.Gw = net.ParseIP(nh); route.Gw == nil {
				return fmt.Errorf("route %s: next hop %q is not an address", r.GetPrefix(), nh)
			}
			route.Scope = netlink.SCOPE_UNIVERSE
		}
		reqs = append(reqs, replaceRouteReq(index, route))
	}
	errs, _, err := conn.exchange(reqs...)
	if err != nil {
		return fmt.Errorf("configure %s: %w", s.name, err)
	}
	if errs[0] != nil {
		return fmt.Errorf("alias and state of %s: %w", s.name, errs[0])
	}
	errs = errs[1:]
	for i, a := range s.addrs {
		if errs[i] != nil && !errors.Is(errs[i], errExist) {
			return fmt.Errorf("add address %s to %s: %w", a, s.name, errs[i])
		}
	}
	errs = errs[len(s.addrs):]
	for i, r := range s.routes {
		if errs[i] != nil {
			return fmt.Errorf("route %s via %s: %w", r.GetPrefix(), s.name, errs[i])
		}
	}
	return nil
}

// removeDirect deletes p's pair (deleting one end deletes both) and
// returns once it is gone; a pair that is not there, or whose names a
// newer vWire holds now, is left alone.
func (d *Dataplane) removeDirect(id string, p directPair) error {
	ns, err := p.clientNS()
	if err != nil {
		// The client's namespace is gone, and the pair with it.
		return d.recs.remove(p.record)
	}
	defer ns.Close()
	err = withLink(ns, p.in, id, func(h *netlink.Handle, l netlink.Link) error {
		return h.LinkDel(l)
	})
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", p.in.name, err)
	}
	return d.recs.remove(p.record)
}

// retireDirect sets the client's end of p down (the endpoint's end loses
// its carrier) and into reapGroup, in one request, and hands it to the
// reaper, which deletes the pair in the client's namespace.
//
// The reaper keeps both namespaces' sockets until its pass: a Request that
// comes meanwhile for a workload there (a client asking again, another
// client of the same endpoint) finds them open. Each one opened anew costs
// the Connect a trip of a thread into the namespace and back (0.15 ms of a
// sequential Request's 1.2 ms in the dataplane, measured with vwire bench's
// breakdown).
func (d *Dataplane) retireDirect(id string, p directPair) error {
	var x *nsConn
	xs := d.conns.heldBy(id)
	if len(xs) > 0 {
		x = xs[0]
	} else {
		ns, err := p.clientNS()
		if err != nil {
			// The client's namespace is gone, and the pair with it.
			return d.recs.remove(p.record)
		}
		if x, err = d.conns.getNS(ns, p.in.netns); err != nil {
			return fmt.Errorf("retire %s: %w", p.in.name, err)
		}
		xs = []*nsConn{x}
	}
	handed := false
	defer func() {
		if !handed {
			for _, x := range xs {
				d.conns.put(x)
			}
		}
	}()
	l, err := x.rtnl.linkByName(p.in.name)
	if err != nil || l.Attrs().Alias != alias(roleWL, id) {
		// Gone, or a newer vWire's.
		return d.recs.remove(p.record)
	}
	index := l.Attrs().Index
	// Not renamed out of the client's way here: a rename costs the kernel
	// the interface's sysctl tables again, under the rtnl lock, on every
	// Close (Close p50 rose about 0.5 ms); a Connect that finds its name
	// held by a pair waiting for the reaper moves it (makeRoom).
	errs, _, err := x.rtnl.exchange(setLinkReq(index, "", 0, unix.IFF_UP, reapGroup))
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		if !errors.Is(err, unix.ENODEV) {
			// Not down or not marked: deleted before returning.
			errs, _, derr := x.rtnl.exchange(delLinkReq(index))
			if derr == nil {
				derr = errs[0]
			}
			if derr != nil && !errors.Is(derr, unix.ENODEV) {
				return fmt.Errorf("retire %s: set down: %w; delete: %w", p.in.name, err, derr)
			}
		}
		return d.recs.remove(p.record)
	}
	handed = true
	// The reaper drops the record once the pair is deleted.
	d.reap.enqueue(reapCall{conn: x, also: xs[1:], inNS: true, marked: true, record: p.record})
	return nil
}

// withLink calls f with a handle in ns and s's interface when it is there
// and id's; ENODEV when it is not (gone, or a newer vWire's).
func withLink(ns netns.NsHandle, s vethSpec, id string, f func(h *netlink.Handle, l netlink.Link) error) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", s.netns, err)
	}
	defer h.Close()
	l, err := h.LinkByName(s.name)
	if err != nil || l.Attrs().Alias != alias(roleWL, id) {
		return unix.ENODEV
	}
	return f(h, l)
}
