package kernel

import (
	"fmt"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	nsmkernel "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vwire/vwire/forwarder"
)

// A newer Request for a workload interface takes its name from the live
// vWire that holds it (makeRoom, createVeth): the client requested anew
// before closing. The older vWire's refresh then finds its side gone and
// must not rebuild it, or the two would take the name from each other at
// every refresh: it fails with forwarder.ErrWorkloadNameTaken, as on the VPP
// dataplane. These checks run only on a refresh that found the vWire not
// intact, never on the path of one that is.

// takenFrom is takenEnds for the KERNEL sides of in and out (by role).
func takenFrom(id string, prev, now built, conns map[string]*networkservice.Connection, mtu int) error {
	var specs []vethSpec
	for _, role := range []string{roleIn, roleOut} {
		c := conns[role]
		if c.GetMechanism().GetType() != nsmkernel.MECHANISM {
			continue
		}
		s, err := vethSpecFor(role, id, c.GetMechanism(), c.GetContext(), mtu)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	return takenEnds(id, prev, now, specs)
}

// takenEnds returns an error wrapping forwarder.ErrWorkloadNameTaken when
// the workload end of one of specs, a side built before (prev) with the
// same mechanism as now, is held under its name by another vWire's
// workload end.
func takenEnds(id string, prev, now built, specs []vethSpec) error {
	for _, s := range specs {
		if prev.mech(s.role) != now.mech(s.role) {
			continue // a new interface for this side, not a refresh of it
		}
		if other := holderOf(s); other != "" && other != id {
			return fmt.Errorf("%s side: %w: %s in %s belongs to vWire %s (a newer Request for that interface took it); this vWire's side is gone",
				s.role, forwarder.ErrWorkloadNameTaken, s.name, s.netns, other)
		}
	}
	return nil
}

// holderOf is the connection id of the live vWire whose workload end
// holds s's name in s's namespace; "" when none does (or it cannot be
// told: the rebuild then finds out).
func holderOf(s vethSpec) string {
	ns, err := openNetNS(s.netns)
	if err != nil {
		return ""
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return ""
	}
	defer h.Close()
	l, err := h.LinkByName(s.name)
	if err != nil {
		return ""
	}
	if role, other, ok := parseAlias(l.Attrs().Alias); ok && role == roleWL && l.Attrs().Group != reapGroup {
		return other
	}
	return "" // none, or a closed vWire's on its way out: the rebuild takes it
}
