package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/mechanisms/inodeurl"
)

// A local pair's Connect and Close talk to the kernel through one route
// socket per workload namespace, kept while a vWire of this forwarder
// lives there (nsConns), and send their requests several at a time
// (rtnlConn.exchange): the requests of one end (alias, up, addresses,
// routes) go in one sendmsg, which the kernel runs in order, and their
// acks are read back together. netlink's Handle opens a socket per handle
// (entering the namespace and back: two setns) and makes a round trip,
// with four more system calls (deadlines, getsockname), per request.

// rtnlConn is a route netlink socket in one namespace.
type rtnlConn struct {
	mu  sync.Mutex // one exchange at a time; guards the fields below
	s   *nl.NetlinkSocket
	seq uint32
	buf []byte
}

// rtnlTimeout bounds how long an exchange waits for the kernel's answers
// (it answers a route request before sendmsg returns).
const rtnlTimeout = 10 * 1000 // ms

// openRtnl opens a route socket in ns from a thread in self, the
// process's namespace, which it goes back to.
func openRtnl(ns, self netns.NsHandle) (*rtnlConn, error) {
	s, err := nl.GetNetlinkSocketAt(ns, self, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	// The kernel's reason for an error, in the ack.
	_ = s.SetExtAck(true)
	return &rtnlConn{s: s, buf: make([]byte, 64<<10)}, nil
}

func (c *rtnlConn) close() { c.s.Close() }

// exchange sends reqs in one write and reads every one's ack (each must
// ask for one: NLM_F_ACK); the kernel runs them in order, each on its own
// (one failing does not stop the next). It returns each request's error
// and the replies of those that have them (RTM_GETLINK) but for their
// acks.
func (c *rtnlConn) exchange(reqs ...*nl.NetlinkRequest) ([]error, [][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.seq + 1
	var b []byte
	for _, r := range reqs {
		c.seq++
		r.Seq = c.seq
		b = append(b, r.Serialize()...)
	}
	fd := c.s.GetFd()
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, nil, fmt.Errorf("netlink send: %w", err)
	}
	errs := make([]error, len(reqs))
	replies := make([][]byte, len(reqs))
	for left := len(reqs); left > 0; {
		n, _, err := unix.Recvfrom(fd, c.buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, err := unix.Poll(pfd, rtnlTimeout); err != nil && !errors.Is(err, unix.EINTR) {
				return nil, nil, fmt.Errorf("netlink poll: %w", err)
			} else if n == 0 && err == nil {
				return nil, nil, fmt.Errorf("netlink: no answer from the kernel in %d ms", rtnlTimeout)
			}
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return nil, nil, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			i := int(m.Header.Seq) - int(first)
			if i < 0 || i >= len(reqs) {
				continue // an earlier exchange's, abandoned
			}
			if m.Header.Type != unix.NLMSG_ERROR {
				replies[i] = append([]byte(nil), m.Data...)
				continue
			}
			errs[i] = ackError(m)
			left--
		}
	}
	return errs, replies, nil
}

// ackError is the error an ack carries, with the kernel's reason when it
// gives one; nil for a success.
func ackError(m syscall.NetlinkMessage) error {
	if len(m.Data) < 4 {
		return errors.New("netlink: short ack")
	}
	errno := int32(binary.NativeEndian.Uint32(m.Data[:4]))
	if errno == 0 {
		return nil
	}
	var err error = syscall.Errno(-errno)
	rest := m.Data[4:]
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(rest) < syscall.SizeofNlMsghdr {
		return err
	}
	echo := (*syscall.NlMsghdr)(unsafe.Pointer(&rest[0]))
	skip := syscall.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_CAPPED == 0 {
		skip = int(echo.Len+3) &^ 3
	}
	if skip > len(rest) {
		return err
	}
	for rest = rest[skip:]; len(rest) >= syscall.SizeofRtAttr; {
		l := int(binary.NativeEndian.Uint16(rest[:2]))
		t := binary.NativeEndian.Uint16(rest[2:4])
		if l < syscall.SizeofRtAttr || l > len(rest) {
			break
		}
		if t == unix.NLMSGERR_ATTR_MSG {
			return fmt.Errorf("%w: %s", err, unix.ByteSliceToString(rest[4:l]))
		}
		rest = rest[(l+3)&^3:]
	}
	return err
}

// linkByName asks for the link called name; ENODEV when there is none.
func (c *rtnlConn) linkByName(name string) (netlink.Link, error) {
	errs, replies, err := c.exchange(getLinkReq(name))
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return nil, err
	}
	return parseLink(replies[0])
}

func getLinkReq(name string) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	return req
}

func parseLink(reply []byte) (netlink.Link, error) {
	if reply == nil {
		return nil, errors.New("netlink: no link in the answer")
	}
	if len(reply) < unix.SizeofIfInfomsg {
		// LinkDeserialize would slice past its end.
		return nil, fmt.Errorf("netlink: a link message of %d bytes", len(reply))
	}
	return netlink.LinkDeserialize(nil, reply)
}

// setLinkReq sets index's alias and, with up or down, its state; group,
// when not zero, is its new interface group.
func setLinkReq(index int, alias string, flags, change uint32, group uint32) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	msg.Flags, msg.Change = flags, change
	req.AddData(msg)
	if alias != "" {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	}
	if group != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	}
	return req
}

// addAddrReq adds a to index (netlink's AddrAdd: the local address, and
// for IPv4 the subnet's broadcast address).
func addAddrReq(index int, a *netlink.Addr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	family := nl.GetIPFamily(a.IP)
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(index)
	prefix, _ := a.Mask.Size()
	msg.Prefixlen = uint8(prefix)
	req.AddData(msg)
	ip := a.IP.To4()
	if family == unix.AF_INET6 {
		ip = a.IP.To16()
	}
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	if family == unix.AF_INET && prefix < 31 {
		brd := make([]byte, 4)
		for i := range brd {
			brd[i] = ip[i] | ^a.Mask[len(a.Mask)-4+i]
		}
		req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, brd))
	}
	return req
}

// replaceRouteReq adds or replaces the route to dst through index, via gw
// when it is set (of dst's family).
func replaceRouteReq(index int, r *netlink.Route) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	family := nl.GetIPFamily(r.Dst.IP)
	msg := nl.NewRtMsg()
	msg.Family = uint8(family)
	msg.Scope = uint8(r.Scope)
	ones, _ := r.Dst.Mask.Size()
	msg.Dst_len = uint8(ones)
	req.AddData(msg)
	dst := r.Dst.IP.To4()
	if family == unix.AF_INET6 {
		dst = r.Dst.IP.To16()
	}
	req.AddData(nl.NewRtAttr(unix.RTA_DST, dst))
	if r.Gw != nil {
		if nl.GetIPFamily(r.Gw) == family {
			gw := r.Gw.To4()
			if family == unix.AF_INET6 {
				gw = r.Gw.To16()
			}
			req.AddData(nl.NewRtAttr(unix.RTA_GATEWAY, gw))
		} else {
			// An IPv6 next hop for an IPv4 route (RFC 5549).
			via := &netlink.Via{AddrFamily: nl.GetIPFamily(r.Gw), Addr: r.Gw}
			b, _ := via.Encode()
			req.AddData(nl.NewRtAttr(unix.RTA_VIA, b))
		}
	}
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(index))))
	return req
}

func delLinkReq(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	return req
}

// nsKey is a network namespace's identity.
type nsKey struct{ dev, ino uint64 }

// nsConn is a workload namespace, held open, and a route socket in it,
// shared by the vWires of this forwarder that live there.
type nsConn struct {
	key  nsKey
	ns   netns.NsHandle
	rtnl *rtnlConn
	refs int // guarded by nsConns.mu
}

// nsConns are the route sockets in workload namespaces: each is kept
// while a vWire of this forwarder lives in its namespace (hold) or a call
// uses it (get), and closed with the last, so that the namespace of a
// workload that has gone is not held alive past its vWires. Keyed by the
// namespace's identity: a workload's namespace comes as a different path
// (/proc/<pid>/fd/<n>) on each Request.
type nsConns struct {
	// self is the process's namespace, where a thread that has made a
	// socket in another goes back to: named once, as finding the
	// thread's own (netns.Get, an open in /proc) cost about 0.1 ms a
	// socket here.
	self netns.NsHandle

	mu   sync.Mutex // guards the fields below
	m    map[nsKey]*nsConn
	held map[string][]*nsConn // by vWire id
}

// newNSConns opens the sockets' registry; self is the process's
// namespace, owned by the registry from then on (close).
func newNSConns(self netns.NsHandle) *nsConns {
	return &nsConns{self: self, m: map[nsKey]*nsConn{}, held: map[string][]*nsConn{}}
}

// get returns the socket in the namespace raw (a KERNEL mechanism's URL)
// names, opening one if there is none; put it back when done.
func (c *nsConns) get(raw string) (*nsConn, error) {
	u, err := inodeurl.Parse(raw)
	if err == nil && !u.IsInode() {
		var st unix.Stat_t
		if unix.Stat(u.Path, &st) == nil {
			c.mu.Lock()
			x := c.m[nsKey{st.Dev, st.Ino}]
			if x != nil {
				x.refs++
			}
			c.mu.Unlock()
			if x != nil {
				return x, nil
			}
		}
	}
	ns, err := openNetNS(raw)
	if err != nil {
		return nil, err
	}
	return c.getNS(ns, raw)
}

// getNS is get for an open namespace, which it takes over.
func (c *nsConns) getNS(ns netns.NsHandle, name string) (*nsConn, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		ns.Close()
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	key := nsKey{st.Dev, st.Ino}
	c.mu.Lock()
	if x := c.m[key]; x != nil {
		x.refs++
		c.mu.Unlock()
		ns.Close()
		return x, nil
	}
	c.mu.Unlock()
	r, err := openRtnl(ns, c.self)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if x := c.m[key]; x != nil { // opened meanwhile
		x.refs++
		r.close()
		ns.Close()
		return x, nil
	}
	x := &nsConn{key: key, ns: ns, rtnl: r, refs: 1}
	c.m[key] = x
	return x, nil
}

// put gives back what get returned.
func (c *nsConns) put(x *nsConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(x)
}

func (c *nsConns) putLocked(x *nsConn) {
	if x.refs--; x.refs > 0 {
		return
	}
	delete(c.m, x.key)
	x.rtnl.close()
	x.ns.Close()
}

// hold keeps xs for id's vWire (and no longer what it held before), until
// drop.
func (c *nsConns) hold(id string, xs ...*nsConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range xs {
		x.refs++
	}
	for _, x := range c.held[id] {
		c.putLocked(x)
	}
	c.held[id] = xs
}

// heldBy is the sockets id's vWire holds (a local pair's: the client's
// namespace's, then the endpoint's), each taken as get does; nil when it
// holds none.
func (c *nsConns) heldBy(id string) []*nsConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	xs := slices.Clone(c.held[id])
	for _, x := range xs {
		x.refs++
	}
	return xs
}

// drop lets go of what id's vWire held.
func (c *nsConns) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.held[id] {
		c.putLocked(x)
	}
	delete(c.held, id)
}

// closeAll lets go of every vWire's hold and of self (the forwarder
// stops).
func (c *nsConns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, xs := range c.held {
		for _, x := range xs {
			c.putLocked(x)
		}
		delete(c.held, id)
	}
	if c.self.IsOpen() {
		c.self.Close()
		c.self = netns.None()
	}
}

// count is how many namespaces have a socket open.
func (c *nsConns) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
