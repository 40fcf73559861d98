package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// reapGroup is the interface group (IFLA_GROUP) links of ours are moved
// into on their way out ("vw" and 1). Deleting a link costs the kernel an
// unregister pass under the rtnl lock (synchronize_net, rcu_barrier: about
// 20 ms however few links it holds), and link deletions are serialised.
// One RTM_DELLINK naming the group deletes every link in it, a veth's far
// end with it, in a single pass: Closes that arrive while a pass runs share
// the next one. Only links of ours (by alias) are put in the group; a link
// still in it when the forwarder starts was being deleted and goes at once.
const reapGroup = 0x76770001

// reaper deletes links in batches, on a goroutine that runs while there is
// something to delete. Callers either wait until their links are gone
// (remove) or only until they are down and marked (retire). A link that
// cannot be deleted is logged and stays marked: the next start deletes it.
//
// Retired links wait for a lull: no Connect or Disconnect in flight (busy)
// for reapQuiet, or reapMaxDelay since the oldest was handed over, or
// reapMaxBatch of them. A pass holds the rtnl lock through the kernel's
// synchronize_net calls, and every Connect needs that lock: one pass per
// Close, run as the next Request came in, made the local Requests' tail
// (a Connect's rtnl wait: 39 ms in all over 300 sequential Connects when
// no pass ran beside them, 1.5 s when one did, perf lock contention).
// Under a steady stream of Requests there is no lull, and a pass comes
// every reapMaxDelay (or reapMaxBatch Closes) into a Connect: in 4 of 6
// runs of vwire bench's breakdown the passes overlapped the slowest 1 % of
// sequential Requests by 10-141 ms on average, the median ones by under
// 0.3 ms. 5 s instead of 1 s was tried: no change at 170 Requests a second
// (256 Closes come first) and load 17-41 (README).
// Links to be removed (remove, flush) go at once.
type reaper struct {
	h     *netlink.Handle
	sock  *nl.SocketHandle // a route socket in the same namespace as h
	recs  *records         // of direct pairs, dropped once deleted
	conns *nsConns         // where calls' conns go back
	log   *slog.Logger
	// quiet, maxDelay and maxBatch are reapQuiet, reapMaxDelay and
	// reapMaxBatch (tests shorten them).
	quiet, maxDelay time.Duration
	maxBatch        int
	kick            chan struct{} // wakes run: work, the end of a call, flush

	mu      sync.Mutex // guards the fields below
	idle    sync.Cond  // signalled (with mu) when running turns false
	pending []reapCall
	oldest  time.Time // when the oldest pending call was handed over
	running bool
	busy    int       // Connects and Disconnects in flight
	lastEnd time.Time // when the last of them ended
	now     int       // flushes waiting: run the pending calls at once
}

const (
	reapQuiet    = 20 * time.Millisecond
	reapMaxDelay = time.Second
	reapMaxBatch = 256
)

type reapCall struct {
	links  []netlink.Link
	marked bool // the links are in reapGroup already
	// ns, when inNS is set, is a workload's namespace whose reapGroup is
	// to be deleted (the ends of local vWires' pairs, see direct.go),
	// owned by the call and closed after the pass: marked only, no links,
	// no done.
	ns   netns.NsHandle
	inNS bool
	// conn, with inNS and in place of ns, is that namespace's entry in
	// nsConns, given back after the pass: it keeps the socket there for
	// the next vWire until the pair is gone.
	conn *nsConn
	// also, with conn, are more sockets given back after the pass (the
	// endpoint's namespace's of a local pair), kept open till then.
	also []*nsConn
	// record, with inNS, is the key of the pair's record, dropped once
	// the pair is deleted.
	record string
	done   chan error // nil for retired links: errors are logged
	// after, for retired links, is called once the pass is over, with nil
	// when the links are gone: what they held (a VXLAN device's VNI) is
	// free again only then.
	after func(error)
}

func newReaper(h *netlink.Handle, sock *nl.NetlinkSocket, recs *records, conns *nsConns, log *slog.Logger) *reaper {
	r := &reaper{h: h, sock: &nl.SocketHandle{Socket: sock}, recs: recs, conns: conns, log: log,
		quiet: reapQuiet, maxDelay: reapMaxDelay, maxBatch: reapMaxBatch, kick: make(chan struct{}, 1)}
	r.idle.L = &r.mu
	return r
}

// remove deletes links (a veth's peer goes with it) and returns once they
// are gone.
func (r *reaper) remove(links []netlink.Link) error {
	if len(links) == 0 {
		return nil
	}
	done := make(chan error, 1)
	r.enqueue(reapCall{links: links, done: done})
	return <-done
}

// retire sets links down and in reapGroup, and has them deleted in the
// background. A veth whose end is down has no carrier at its peer either:
// nothing passes any more. after, if not nil, is called once with nil when
// all of links are gone (at once when none waits for a pass).
func (r *reaper) retire(links []netlink.Link, after func(error)) error {
	var errs []error
	var marked []netlink.Link
	for _, l := range links {
		err := r.h.LinkSetDown(l)
		if err == nil {
			err = r.h.LinkSetGroup(l, reapGroup)
		}
		switch {
		case err == nil:
			marked = append(marked, l)
		case errors.Is(err, unix.ENODEV):
			// already gone
		default:
			// Not down or not marked: deleted before returning.
			errs = append(errs, r.remove([]netlink.Link{l}))
		}
	}
	err := errors.Join(errs...)
	switch {
	case len(marked) > 0:
		c := reapCall{links: marked, marked: true}
		if after != nil {
			c.after = func(perr error) { after(errors.Join(err, perr)) }
		}
		r.enqueue(c)
	case after != nil:
		after(err)
	}
	return err
}

func (r *reaper) enqueue(c reapCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		r.oldest = time.Now()
	}
	r.pending = append(r.pending, c)
	if !r.running {
		r.running = true
		go r.run()
	}
	r.wake()
}

// wake tells run to look again; it never blocks.
func (r *reaper) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// begin marks a Connect or Disconnect in flight until the returned func
// is called: passes wait for a lull.
func (r *reaper) begin() func() {
	r.mu.Lock()
	r.busy++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.busy--
		r.lastEnd = time.Now()
		r.mu.Unlock()
		r.wake()
	}
}

// waitLocked is how long the pending calls wait before the next pass: 0
// for now.
func (r *reaper) waitLocked(now time.Time) time.Duration {
	if r.now > 0 || len(r.pending) >= r.maxBatch {
		return 0
	}
	for _, c := range r.pending {
		if c.done != nil {
			return 0 // a caller waits
		}
	}
	wait := r.oldest.Add(r.maxDelay).Sub(now)
	if r.busy == 0 {
		wait = min(wait, r.lastEnd.Add(r.quiet).Sub(now))
	}
	return max(wait, 0)
}

func (r *reaper) run() {
	r.mu.Lock()
	for len(r.pending) > 0 {
		if wait := r.waitLocked(time.Now()); wait > 0 {
			r.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-r.kick:
			case <-t.C:
			}
			t.Stop()
			r.mu.Lock()
			continue
		}
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		r.pass(batch)
		r.mu.Lock()
	}
	r.running = false
	r.idle.Broadcast()
	r.mu.Unlock()
}

// flush returns once every link handed over so far is deleted (or its
// deletion has failed).
func (r *reaper) flush() {
	r.mu.Lock()
	r.now++
	r.wake()
	for r.running {
		r.idle.Wait()
	}
	r.now--
	r.mu.Unlock()
}

// pass deletes one batch's links in one unregister pass; links that cannot
// join the group, or all of them if the group's deletion fails, are deleted
// one by one.
func (r *reaper) pass(batch []reapCall) {
	start := time.Now()
	// When it ran, to the microsecond: vwire bench lays the passes over
	// its Requests (the time of a log line is to the millisecond).
	defer func() {
		r.log.Debug("reaper pass", "calls", len(batch), "start_us", start.UnixMicro(), "took", time.Since(start))
	}()
	errs := make([][]error, len(batch))
	var grouped []int                    // calls with links in the group
	others := map[nsKey]netns.NsHandle{} // by the namespace's identity
	viaConn := map[nsKey]*nsConn{}       // namespaces with a socket given
	recorded := map[nsKey][]string{}     // records that go, by the namespace's identity
	for i, c := range batch {
		if c.inNS && c.conn != nil {
			defer r.conns.put(c.conn)
			for _, x := range c.also {
				defer r.conns.put(x)
			}
			viaConn[c.conn.key] = c.conn
			if c.record != "" {
				recorded[c.conn.key] = append(recorded[c.conn.key], c.record)
			}
			continue
		}
		if c.inNS {
			var st unix.Stat_t
			err := unix.Fstat(int(c.ns), &st)
			key := nsKey{st.Dev, st.Ino}
			if _, dup := others[key]; err != nil || dup {
				defer c.ns.Close()
			} else {
				others[key] = c.ns
			}
			if err == nil && c.record != "" {
				recorded[key] = append(recorded[key], c.record)
			}
			continue
		}
		if c.marked {
			grouped = append(grouped, i)
			continue
		}
		in := false
		for _, l := range c.links {
			err := r.h.LinkSetGroup(l, reapGroup)
			switch {
			case err == nil:
				in = true
			case errors.Is(err, unix.ENODEV):
				// already gone
			default:
				errs[i] = append(errs[i], r.deleteOne(l))
			}
		}
		if in {
			grouped = append(grouped, i)
		}
	}
	if len(grouped) > 0 {
		if err := r.deleteGroup(); err != nil && !errors.Is(err, unix.ENODEV) {
			for _, i := range grouped {
				for _, l := range batch[i].links {
					if e := r.deleteOne(l); e != nil {
						errs[i] = append(errs[i], fmt.Errorf("%w (after the batch failed: %v)", e, err))
					}
				}
			}
		}
	}
	for key, conn := range viaConn {
		if ns, ok := others[key]; ok {
			ns.Close() // the same namespace
			delete(others, key)
		}
		// A socket of the pass's own: the deletion holds it for the
		// kernel's whole unregister pass (tens of ms), and Connects and
		// Closes in that namespace use conn's meanwhile.
		err := deleteGroupIn(conn.ns, r.conns.self)
		r.removed(err, recorded[key])
	}
	for key, ns := range others {
		err := deleteGroupIn(ns, r.conns.self)
		ns.Close()
		r.removed(err, recorded[key])
	}
	for i, c := range batch {
		err := errors.Join(errs[i]...)
		if c.done != nil {
			c.done <- err
		} else if err != nil {
			r.log.Error("delete links of a closed vWire; they stay marked for the next start", "err", err)
		}
		if c.after != nil {
			c.after(err)
		}
	}
}

// removed drops the records of the pairs a group's deletion in a workload's
// namespace deleted, unless it failed (err).
func (r *reaper) removed(err error, recorded []string) {
	if err != nil {
		r.log.Error("delete links of closed vWires in a workload's namespace; they stay down until the next start's grace", "err", err)
		return
	}
	for _, rec := range recorded {
		if err := r.recs.remove(rec); err != nil {
			r.log.Error("a deleted pair's record stays", "err", err)
		}
	}
}

func (r *reaper) deleteOne(l netlink.Link) error {
	if err := r.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// deleteGroup deletes every link in reapGroup in one pass (`ip link delete
// group`); ENODEV when the group is empty.
func (r *reaper) deleteGroup() error { return deleteGroupOn(r.sock) }

// deleteGroupIn deletes every link in reapGroup in ns, from a thread in
// self (the process's namespace, see nsConns); nil when there is none.
func deleteGroupIn(ns, self netns.NsHandle) error {
	sock, err := nl.GetNetlinkSocketAt(ns, self, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in a workload's namespace: %w", err)
	}
	defer sock.Close()
	if err := deleteGroupOn(&nl.SocketHandle{Socket: sock}); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

func deleteGroupOn(sock *nl.SocketHandle) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sock}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(reapGroup)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("delete link group %#x: %w", reapGroup, err)
	}
	return nil
}
