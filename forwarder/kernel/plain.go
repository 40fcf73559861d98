package kernel

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// PlainLoop makes local pairs with the netlink requests that a local
// KERNEL↔KERNEL vWire's Connect and Close send (direct.go), the same
// messages in the same order on the same kind of shared route socket per
// namespace, and deletes them the same way (down and into reapGroup, then
// a reaper's pass after a lull), with nothing else of the dataplane: no
// record, no state, no look-up of what a previous run left, no forwarder
// or manager above it. `vwire bench`'s latency group times it next to
// vwire's local vWires: what this host's kernel allows for that work, and
// so how much of a vWire's time is vwire's.
type PlainLoop struct {
	conns   *nsConns
	reap    *reaper
	in, out *nsConn // the client's namespace and the endpoint's, held
	// inURL and outURL name them as a KERNEL mechanism does.
	inURL, outURL string
}

// PlainPair is one pair of the plain loop: its interface name in both
// namespaces, and each end's address (with a route to the other's, as an
// icmp-responder's IP context gives them).
type PlainPair struct {
	Name             string
	Client, Endpoint netip.Prefix
	MTU              int // DefaultMTU when 0
}

// NewPlainLoop opens route sockets in the namespaces at clientNS and
// endpointNS (paths).
func NewPlainLoop(clientNS, endpointNS string) (*PlainLoop, error) {
	self, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("plain loop: this process's netns: %w", err)
	}
	conns := newNSConns(self)
	l := &PlainLoop{conns: conns, reap: newReaper(nil, nil, &records{}, conns, slog.New(slog.DiscardHandler)),
		inURL: "file://" + clientNS, outURL: "file://" + endpointNS}
	if l.in, err = conns.get(l.inURL); err == nil {
		l.out, err = conns.get(l.outURL)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("plain loop: %w", err)
	}
	return l, nil
}

// spec is the vWire's pair for p, as directFor makes it from the
// connections an icmp-responder answers with.
func (l *PlainLoop) spec(p PlainPair) directPair {
	mtu := p.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	end := func(role string, mine, theirs netip.Prefix) vethSpec {
		return vethSpec{role: role, id: p.Name, name: p.Name, mtu: mtu,
			addrs: []string{mine.String()}, routes: []*networkservice.Route{{Prefix: theirs.String()}}}
	}
	return directPair{in: end(roleIn, p.Client, p.Endpoint), out: end(roleOut, p.Endpoint, p.Client), ns: netns.None()}
}

// Connect makes p's pair as connectDirect makes a new vWire's: the look-up
// of the client's interface name (directIntact), the pair's creation with
// its echo, then each end's alias, state, address and route in one
// exchange. The pair's record (a write to an open file, not netlink) is
// left out.
func (l *PlainLoop) Connect(p PlainPair) error {
	defer l.reap.begin()()
	in, err := l.conns.get(l.inURL)
	if err != nil {
		return fmt.Errorf("plain loop: %w", err)
	}
	defer l.conns.put(in)
	out, err := l.conns.get(l.outURL)
	if err != nil {
		return fmt.Errorf("plain loop: %w", err)
	}
	defer l.conns.put(out)
	s := l.spec(p)
	if _, err := in.rtnl.linkByName(s.in.name); err == nil {
		return fmt.Errorf("plain loop: %s: %w", s.in.name, errExist)
	}
	c, err := addPairOn(in.rtnl, out.ns, s)
	if err != nil {
		return fmt.Errorf("plain loop: veth %s: create: %w", p.Name, err)
	}
	err = configureEnd(in.rtnl, c.Attrs().Index, s.in, false)
	if err == nil {
		err = configureEnd(out.rtnl, c.Attrs().ParentIndex, s.out, true)
	}
	if err != nil {
		_, _, _ = in.rtnl.exchange(delLinkReq(c.Attrs().Index))
		return fmt.Errorf("plain loop: veth %s: %w", p.Name, err)
	}
	l.conns.hold(p.Name, in, out) // as rememberDirect does
	return nil
}

// Disconnect retires name's pair as retireDirect does: a look-up, the client's
// end down and into reapGroup in one request, then the reaper deletes the
// group in the client's namespace at the next lull.
func (l *PlainLoop) Disconnect(name string) error {
	defer l.reap.begin()()
	xs := l.conns.heldBy(name)
	if len(xs) == 0 {
		return fmt.Errorf("plain loop: %s: not made", name)
	}
	x := xs[0]
	for _, o := range xs[1:] {
		l.conns.put(o)
	}
	defer l.conns.drop(name)
	c, err := x.rtnl.linkByName(name)
	if err == nil && c.Attrs().Alias != alias(roleWL, name) {
		err = fmt.Errorf("alias %q", c.Attrs().Alias)
	}
	if err == nil {
		var errs []error
		errs, _, err = x.rtnl.exchange(setLinkReq(c.Attrs().Index, "", 0, unix.IFF_UP, reapGroup))
		if err == nil {
			err = errs[0]
		}
	}
	if err != nil {
		l.conns.put(x)
		return fmt.Errorf("plain loop: retire %s: %w", name, err)
	}
	l.reap.enqueue(reapCall{conn: x, inNS: true, marked: true})
	return nil
}

// Flush returns once every pair disconnected so far is deleted.
func (l *PlainLoop) Flush() { l.reap.flush() }

// Close deletes the pairs disconnected so far and lets go of the
// sockets; pairs not disconnected stay.
func (l *PlainLoop) Close() {
	l.reap.flush()
	l.conns.closeAll()
	for _, x := range []*nsConn{l.in, l.out} {
		if x != nil {
			l.conns.put(x)
		}
	}
}
