package vpp

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/mechanisms/memif"
)

// TestNarrowSweepVPP runs the narrow sweep (sweepKnown) against a real VPP
// 25.10: an IP and an Ethernet local memif vWire, each marked unclean (as a
// failed Connect leaves it) with an interface set down (so its undo cannot
// run), are disconnected beside a third vWire. Their cross-connects go by
// their Rx (an l3xc_del per family, INVALID_VALUE where none; an L2 one put
// back in L3 mode, harmless on an IP side), their memifs and sockets by the
// socket id in the memif's name; nothing of them is left, and the third
// vWire's interfaces and cross-connects stand untouched.
func TestNarrowSweepVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dp := startNode(t, newNS(t, "narrow"), "")
	mk := func(id, pl string) (*networkservice.Connection, *networkservice.Connection) {
		c := func(side string) *networkservice.Connection {
			return &networkservice.Connection{Mechanism: memif.New(memif.Params{SocketFile: id + side + ".sock"}), Context: ipContext(), Payload: pl}
		}
		return c("-c"), c("-e")
	}
	ifacesBefore, err := dp.vpp.ListInterfaces(ctx)
	must(t, err)
	for _, v := range []struct{ id, pl string }{{"keep", payload.IP}, {"ip", payload.IP}, {"eth", payload.Ethernet}} {
		in, out := mk(v.id, v.pl)
		must(t, dp.Connect(ctx, v.id, in, out))
	}
	state := func(id string) *vwireState {
		dp.mu.Lock()
		defer dp.mu.Unlock()
		return dp.conns[id]
	}
	keep := state("keep")
	l3Before, err := dp.vpp.ListL3XCs(ctx)
	must(t, err)
	for _, id := range []string{"ip", "eth"} {
		st := state(id)
		must(t, dp.vpp.SetInterfaceDown(ctx, st.out))
		dp.mu.Lock()
		dp.unclean[tagKey(id)] = true
		dp.mu.Unlock()
		must(t, dp.Disconnect(ctx, id))
	}
	ifaces, err := dp.vpp.ListInterfaces(ctx)
	must(t, err)
	var tagged []string
	for _, i := range ifaces {
		if tg, ok := ParseTag(i.Tag); ok && (tg.Key == "ip" || tg.Key == "eth") {
			tagged = append(tagged, i.Name+" "+i.Tag)
		}
	}
	check(t, len(tagged) == 0, "left in VPP: %v", tagged)
	check(t, len(ifaces) == len(ifacesBefore)+2, "%d interfaces, want %d (before) and keep's two", len(ifaces), len(ifacesBefore))
	l3, err := dp.vpp.ListL3XCs(ctx)
	must(t, err)
	for _, x := range l3Before {
		mine := x.Rx == keep.in || x.Rx == keep.out
		check(t, slices.Contains(l3, x) == mine, "l3xc %+v: in VPP %v after the sweeps, want %v", x, !mine, mine)
	}
	l2, err := dp.vpp.ListL2XCs(ctx)
	must(t, err)
	check(t, len(l2) == 0, "l2xcs left: %v", l2)
	socks, err := dp.vpp.ListMemifSockets(ctx)
	must(t, err)
	for _, s := range socks {
		base := filepath.Base(s.Filename)
		check(t, !strings.HasPrefix(base, "ip-") && !strings.HasPrefix(base, "eth-"), "memif socket %s left", s.Filename)
	}
	ok, err := dp.intact(ctx, dp.vpp, "keep", keep)
	must(t, err)
	check(t, ok, "the vWire beside the sweeps is no longer intact")
	must(t, dp.Disconnect(ctx, "keep"))
}
