package vpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/api"

	"github.com/vwire/vwire/mechanisms/vxlan"
)

// listings are the dumps of every memif and every memif socket: what the
// undo of a create with no answer made, under load, for each such create,
// keeping VPP's one API thread busy so that more creates went unanswered
// (#16).
var listings = []string{"memif_dump", "memif_socket_filename_dump"}

// TestUnansweredMemifUndoListsNothing: the undo of a memif create (and of
// a socket create whose id vwire chose) that got no answer looks for what
// VPP made by its name and id, not in VPP's lists of every memif and
// every socket, and still removes it when VPP made it, and sends no
// delete of a memif when VPP did not. Before, it listed every memif.
func TestUnansweredMemifUndoListsNothing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		local         bool     // KERNEL to memif, step by step
		made, dropped []string // creates carried out, or not, never answered
		socketListed  bool     // the socket's filename checked (its id VPP chose)
	}{
		{name: "pipelined memif made", made: []string{"memif_create_v2"}},
		{name: "pipelined memif not made", dropped: []string{"memif_create_v2"}},
		{name: "pipelined socket made", made: []string{"memif_socket_filename_add_del_v2", "memif_create_v2"}},
		{name: "pipelined socket not made", dropped: []string{"memif_socket_filename_add_del_v2", "memif_create_v2"}},
		{name: "step-by-step memif made", local: true, made: []string{"memif_create_v2"}, socketListed: true},
		{name: "step-by-step memif not made", local: true, dropped: []string{"memif_create_v2"}, socketListed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestNode(t, "192.0.2.1"), newTestNode(t, "192.0.2.2")
			// socketIDs lists VPP's sockets at its first id, once.
			_, err := b.dp.memifSockIDs.take(context.Background(), b.dp.vpp)
			must(t, err)
			before := b.vpp.snapshot()
			for _, c := range tc.made {
				b.vpp.withhold(c, 1)
			}
			for _, c := range tc.dropped {
				b.vpp.drop(c, 1)
			}
			b.vpp.takeSent()
			ctx, cancel := context.WithTimeout(context.Background(), unansweredDeadline)
			defer cancel()
			if tc.local {
				p, perr := b.dp.plan("b", conn(kernelMech(nsClient, "nsm-c"), payload.Ethernet), conn(memifMech("e.sock"), payload.Ethernet))
				must(t, perr)
				_, _, _, err = b.dp.build(ctx, b.dp.vpp, p, true)
			} else {
				_, err = buildAccepted(ctx, t, a, b, vxlan.Type, payload.Ethernet, memifMech("e.sock"))
			}
			check(t, errors.Is(err, context.DeadlineExceeded), "build: %v, want DeadlineExceeded", err)
			sent := b.vpp.takeSent()
			check(t, b.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", b.vpp.snapshot(), before)
			names := messageNames(sent)
			for _, l := range listings {
				want := 0
				if l == "memif_socket_filename_dump" && tc.socketListed {
					want = 1
				}
				check(t, count(names, l) == want, "%d %s sent, want %d: %v", count(names, l), l, want, names)
			}
			check(t, count(names, "memif_delete") == map[bool]int{true: 1}[len(tc.made) > 0],
				"%d memif_delete sent, VPP made the memif: %v", count(names, "memif_delete"), len(tc.made) > 0)
			check(t, slices.ContainsFunc(sent, isMemifNameLookup), "the memif not looked up by name: %v", names)
		})
	}
}

// TestMemifIntentsListNothing: the journal's lookup, after a restart, of
// a memif and a socket whose ids it recorded lists neither every memif nor
// every memif socket's memifs: the memif is looked up by name, the socket
// deleted by id once its filename is checked (VPP refuses the delete of a
// socket in use). It removes both when VPP has them, and leaves VPP as it
// is when it has not.
func TestMemifIntentsListNothing(t *testing.T) {
	for _, made := range []bool{true, false} {
		t.Run(fmt.Sprintf("made %v", made), func(t *testing.T) {
			n := newTestNode(t, "192.0.2.1")
			ctx := context.Background()
			cl := n.dp.vpp
			before := n.vpp.snapshot()
			file := n.memifDir + "/gone.sock"
			sock, err := n.dp.memifSockIDs.take(ctx, cl)
			must(t, err)
			_, err = n.dp.intents.record(intent{ID: "gone", Kind: intentMemifSocket, Sock: sock, File: file},
				intent{ID: "gone", Kind: intentMemif, Sock: sock, File: file})
			must(t, err)
			if made {
				must(t, cl.pipeline(ctx, createMemifSocketCall(file, sock, func(uint32) {}), createMemifCall(MemifSpec{SocketID: sock}, func(SwIfIndex) {})))
				check(t, n.vpp.snapshot() != before, "nothing made")
			}
			n.vpp.takeSent()
			must(t, n.dp.resolveIntents(ctx, cl, "gone"))
			names := messageNames(n.vpp.takeSent())
			check(t, n.vpp.snapshot() == before, "VPP now:\n%s\nbefore:\n%s", n.vpp.snapshot(), before)
			check(t, len(openIntents(n)) == 0, "intents still open: %v", openIntents(n))
			check(t, count(names, "memif_dump") == 0, "memif_dump sent: %v", names)
			check(t, count(names, "memif_delete") == map[bool]int{true: 1}[made], "memif_delete sent %d times: %v", count(names, "memif_delete"), names)
		})
	}
}

// isMemifNameLookup reports whether m is a sw_interface_dump by a memif's
// name.
func isMemifNameLookup(m api.Message) bool { return refuseKey(m) == "sw_interface_dump:memif" }

// count is how many of names are name.
func count(names []string, name string) int {
	n := 0
	for _, x := range names {
		if x == name {
			n++
		}
	}
	return n
}

// TestFindInterfaceNamedExact: VPP's name filter matches every interface
// whose name holds it (memif1/1 is in memif1/10 and memif1/1.100 alike):
// the lookup keeps only the interface named exactly so, and finds none
// when only such others are there.
func TestFindInterfaceNamedExact(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	ctx := context.Background()
	cl := n.dp.vpp
	sock, err := cl.CreateMemifSocket(ctx, n.memifDir+"/x.sock")
	must(t, err)
	ten, err := cl.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: 10})
	must(t, err)
	_, ok, err := cl.findInterfaceNamed(ctx, memifName(sock, 1))
	must(t, err)
	check(t, !ok, "memif %d/1 found, VPP has only %d/10", sock, sock)
	one, err := cl.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: 1})
	must(t, err)
	for id, want := range map[uint32]SwIfIndex{1: one, 10: ten} {
		i, ok, err := cl.findInterfaceNamed(ctx, memifName(sock, id))
		must(t, err)
		check(t, ok && i.Index == want, "memif %d/%d: found %v (%v), want index %d", sock, id, i, ok, want)
	}
}
