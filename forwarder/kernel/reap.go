package kernel

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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

// reaper deletes links in batches. A caller adds its links and waits until
// they are gone; whoever finds no pass running runs passes until nothing is
// pending, so no goroutine outlives the calls and nothing is left behind.
type reaper struct {
	h    *netlink.Handle
	sock *nl.SocketHandle // a route socket in the same namespace as h

	mu      sync.Mutex // guards the fields below
	pending []reapCall
	running bool
}

type reapCall struct {
	links []netlink.Link
	done  chan error
}

// remove deletes links (a veth's peer goes with it) and returns once they
// are gone.
func (r *reaper) remove(links []netlink.Link) error {
	if len(links) == 0 {
		return nil
	}
	done := make(chan error, 1)
	r.mu.Lock()
	r.pending = append(r.pending, reapCall{links: links, done: done})
	if r.running {
		r.mu.Unlock()
		return <-done
	}
	r.running = true
	for len(r.pending) > 0 {
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		r.pass(batch)
		r.mu.Lock()
	}
	r.running = false
	r.mu.Unlock()
	return <-done
}

// pass deletes one batch's links in one unregister pass; links that cannot
// join the group, or all of them if the group's deletion fails, are deleted
// one by one.
func (r *reaper) pass(batch []reapCall) {
	errs := make([][]error, len(batch))
	var grouped []int // calls with links in the group
	for i, c := range batch {
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
	for i, c := range batch {
		c.done <- errors.Join(errs[i]...)
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
func (r *reaper) deleteGroup() error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: r.sock}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(reapGroup)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("delete link group %#x: %w", reapGroup, err)
	}
	return nil
}
