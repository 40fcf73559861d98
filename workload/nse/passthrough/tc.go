package passthrough

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoLink means an interface to cross-connect is not (yet) in the
// namespace: the dataplane plugs the incoming one only after Request
// returns.
var ErrNoLink = errors.New("interface not there yet")

// Counters are packets a passthrough let through (both directions) and
// dropped by its deny rules.
type Counters struct {
	Passed  uint64
	Dropped uint64
}

// Add returns c + d.
func (c Counters) Add(d Counters) Counters {
	return Counters{Passed: c.Passed + d.Passed, Dropped: c.Dropped + d.Dropped}
}

// Wirer cross-connects two interfaces of the endpoint's namespace and
// counts what crosses. Implementations must be safe for concurrent use.
type Wirer interface {
	// Ensure makes in and out one wire (in both directions, with the deny
	// rules), leaving it alone when it already is; it fails with ErrNoLink
	// (wrapped) while either interface is missing.
	Ensure(in, out string) error
	// Counters reads what crossed the wire between in and out.
	Counters(in, out string) (Counters, error)
}

// Priorities of the filters on each ingress: deny rules first, then the
// redirect.
const (
	denyPrio     = 10
	redirectPrio = 100
)

var ingressParent = netlink.MakeHandle(0xffff, 0)

// TC is a Wirer that uses tc in this process's network namespace: on the
// ingress of each interface, one u32 filter per deny rule whose action
// drops, then a u32 match-all filter whose action redirects to the other
// interface's egress (mirred). The kernel's per-action statistics are the
// counters, so counting costs nothing per packet in this process, and the
// passthrough's own IP stack never sees the traffic: the two vWires are one
// wire with a filter in the middle, for IP and ETHERNET payloads alike.
//
// Denied packets are dropped by redirecting them (mirred again) to a sink:
// one end of a veth pair kept down, which drops what it is given. The
// obvious drop action (act_gact) is a module that kernels without module
// support, such as this CI's, do not have; act_mirred is there wherever the
// forwarder's cross-connects work.
type TC struct {
	nl   *netlink.Handle
	deny []Rule
	sink netlink.Link // nil without deny rules
}

// SinkName is the interface denied packets are redirected to (and dropped);
// its peer is SinkName+"p". Both stay down.
const SinkName = "vwdeny0"

// sinkAlias marks the sink (not a vwire/ alias: no dataplane owns it).
const sinkAlias = "passthrough/deny-sink"

var _ Wirer = (*TC)(nil)

// NewTC returns a TC with the deny rules.
func NewTC(deny []Rule) (*TC, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("passthrough: netlink: %w", err)
	}
	t := &TC{nl: h, deny: deny}
	if len(deny) > 0 {
		if t.sink, err = t.makeSink(); err != nil {
			h.Close()
			return nil, err
		}
	}
	return t, nil
}

// makeSink (re)creates the sink veth pair, down.
func (t *TC) makeSink() (netlink.Link, error) {
	if old, err := t.nl.LinkByName(SinkName); err == nil {
		_ = t.nl.LinkDel(old)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: SinkName}, PeerName: SinkName + "p"}
	if err := t.nl.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("passthrough: deny sink %s: %w", SinkName, err)
	}
	l, err := t.nl.LinkByName(SinkName)
	if err != nil {
		return nil, fmt.Errorf("passthrough: deny sink %s: %w", SinkName, err)
	}
	if err := t.nl.LinkSetAlias(l, sinkAlias); err != nil {
		_ = t.nl.LinkDel(l)
		return nil, fmt.Errorf("passthrough: deny sink %s: %w", SinkName, err)
	}
	return l, nil
}

// Close removes the sink and releases the netlink handle. Filters go with
// the interfaces they sit on.
func (t *TC) Close() {
	if t.sink != nil {
		_ = t.nl.LinkDel(t.sink)
	}
	t.nl.Close()
}

// Ensure implements Wirer.
func (t *TC) Ensure(in, out string) error {
	a, err := t.link(in)
	if err != nil {
		return err
	}
	b, err := t.link(out)
	if err != nil {
		return err
	}
	if err := t.ensureOneWay(a, b); err != nil {
		return err
	}
	return t.ensureOneWay(b, a)
}

// Counters implements Wirer.
func (t *TC) Counters(in, out string) (Counters, error) {
	var c Counters
	for _, name := range []string{in, out} {
		l, err := t.link(name)
		if err != nil {
			return c, err
		}
		filters, err := t.nl.FilterList(l, ingressParent)
		if err != nil {
			return c, fmt.Errorf("passthrough: list filters of %s: %w", name, err)
		}
		for _, f := range filters {
			u, ok := f.(*netlink.U32)
			if !ok {
				continue
			}
			for _, a := range u.Actions {
				m, ok := a.(*netlink.MirredAction)
				st := a.Attrs().Statistics
				if !ok || st == nil || st.Basic == nil {
					continue
				}
				if t.isSink(m.Ifindex) {
					c.Dropped += uint64(st.Basic.Packets)
				} else {
					c.Passed += uint64(st.Basic.Packets)
				}
			}
		}
	}
	return c, nil
}

func (t *TC) link(name string) (netlink.Link, error) {
	l, err := t.nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("passthrough: %s: %w", name, ErrNoLink)
		}
		return nil, fmt.Errorf("passthrough: find %s: %w", name, err)
	}
	return l, nil
}

// ensureOneWay makes from's ingress drop what the rules deny and redirect
// the rest to to; when the filters there are not exactly that (a new
// interface, or one whose peer was replaced), they are rebuilt.
func (t *TC) ensureOneWay(from, to netlink.Link) error {
	name := from.Attrs().Name
	if t.wired(from, to) {
		return nil
	}
	if err := t.ensureIngress(from); err != nil {
		return err
	}
	old, err := t.nl.FilterList(from, ingressParent)
	if err != nil {
		return fmt.Errorf("passthrough: list filters of %s: %w", name, err)
	}
	for _, f := range old {
		if err := t.nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("passthrough: delete filter on %s: %w", name, err)
		}
	}
	for i, r := range t.deny {
		if err := t.nl.FilterAdd(denyFilter(from.Attrs().Index, uint16(denyPrio+i), r, t.sink.Attrs().Index)); err != nil {
			return fmt.Errorf("passthrough: deny %s on %s: %w", r, name, err)
		}
	}
	redirect := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from.Attrs().Index, Parent: ingressParent, Priority: redirectPrio, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{Mask: 0, Val: 0}}},
		Actions:     []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := t.nl.FilterAdd(redirect); err != nil {
		return fmt.Errorf("passthrough: redirect %s -> %s: %w", name, to.Attrs().Name, err)
	}
	return nil
}

// wired reports whether from's ingress holds the deny filters and a
// redirect to to.
func (t *TC) wired(from, to netlink.Link) bool {
	filters, err := t.nl.FilterList(from, ingressParent)
	if err != nil {
		return false
	}
	redirect, drops := false, 0
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, a := range u.Actions {
			m, ok := a.(*netlink.MirredAction)
			switch {
			case !ok:
			case t.isSink(m.Ifindex):
				drops++
			case m.Ifindex == to.Attrs().Index:
				redirect = true
			}
		}
	}
	return redirect && drops == len(t.deny)
}

// denyFilter drops IPv4 packets of r.Proto (to r.Port). The port is read
// at a fixed offset: IPv4 headers with options are not matched by a port
// rule (they are rare on a vWire; a protocol-only rule still matches them).
func denyFilter(ifindex int, prio uint16, r Rule, sink int) *netlink.U32 {
	keys := []netlink.TcU32Key{{Off: 8, Mask: 0x00ff0000, Val: uint32(r.Proto) << 16}}
	if r.Port != 0 {
		keys = append(keys, netlink.TcU32Key{Off: 20, Mask: 0x0000ffff, Val: uint32(r.Port)})
	}
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: ingressParent, Priority: prio, Protocol: unix.ETH_P_IP},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: keys},
		Actions:     []netlink.Action{netlink.NewMirredAction(sink)},
	}
}

func (t *TC) isSink(ifindex int) bool { return t.sink != nil && t.sink.Attrs().Index == ifindex }

// ensureIngress adds the ingress qdisc to l unless it has one.
func (t *TC) ensureIngress(l netlink.Link) error {
	qs, err := t.nl.QdiscList(l)
	if err != nil {
		return fmt.Errorf("passthrough: list qdiscs of %s: %w", l.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_INGRESS {
			return nil
		}
	}
	qdisc := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: ingressParent, Parent: netlink.HANDLE_INGRESS}}
	if err := t.nl.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("passthrough: ingress qdisc on %s: %w", l.Attrs().Name, err)
	}
	return nil
}
