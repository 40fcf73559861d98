package vpp

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.fd.io/govpp/api"
)

// TestUnansweredCreatesVPP, on a real VPP: for each create whose outcome
// a rollback may not know (memif socket with an id vwire chose, or one VPP
// chooses, and its memif; VXLAN tunnel; WireGuard interface; IPsec SA;
// IP-in-IP tunnel), the undo pushed for it finds and removes what a
// create whose reply nobody reads made, and, run when VPP made nothing,
// takes VPP's refusal as nothing to do (no error): VPP's objects are back
// as they were either way.
func TestUnansweredCreatesVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n1, _ := twoNodes(t)
	cl := n1.vpp
	dir := t.TempDir()
	src, dst := n1.tunnel, netip.MustParseAddr("198.51.100.7")
	var key [WireguardKeyLen]byte
	key[0], key[31] = 0x40, 0x7f
	sa := SA{ID: 0x7ffe0001, SPI: 0x7ffe0001, Salt: 7, UDPSrcPort: 4500, UDPDstPort: 4500}
	sa.Key[3] = 9
	for _, tc := range []struct {
		name string
		// creates returns the requests to send unread, and the undo
		// steps a build pushes when their outcome is unknown.
		creates func(t *testing.T) ([]api.Message, func(u *undoStack))
	}{
		{name: "memif socket and memif, ids chosen here", creates: func(t *testing.T) ([]api.Message, func(u *undoStack)) {
			id, err := n1.memifSockIDs.take(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			spec := MemifSpec{SocketID: id}
			return []api.Message{createMemifSocketCall(filepath.Join(dir, "a.sock"), id, nil).req, createMemifCall(spec, nil).req},
				func(u *undoStack) {
					u.pushCallAgain("memif socket", deleteChosenMemifSocketCall(id))
					u.pushAgain("memif", func(ctx context.Context, cl *Client) error { return removeMemifOn(ctx, cl, id, spec.ID) })
				}
		}},
		{name: "memif on a socket VPP chose", creates: func(t *testing.T) ([]api.Message, func(u *undoStack)) {
			// The step-by-step build's: the socket answered, its
			// memif not.
			file := filepath.Join(dir, "c.sock")
			sock, err := cl.CreateMemifSocket(ctx, file)
			if err != nil {
				t.Fatal(err)
			}
			spec := MemifSpec{SocketID: sock}
			return []api.Message{createMemifCall(spec, nil).req}, func(u *undoStack) {
				u.pushAgain("memif socket", func(ctx context.Context, cl *Client) error {
					return deleteSocketOf(ctx, cl, file, sock, deleteChosenMemifSocketCall(sock))
				})
				u.pushAgain("memif", func(ctx context.Context, cl *Client) error { return removeMemifOn(ctx, cl, sock, spec.ID) })
			}
		}},
		{name: "memif socket, id chosen by VPP", creates: func(*testing.T) ([]api.Message, func(u *undoStack)) {
			file := filepath.Join(dir, "b.sock")
			return []api.Message{createMemifSocketCall(file, ^uint32(0), nil).req}, func(u *undoStack) {
				u.pushAgain("memif socket", func(ctx context.Context, cl *Client) error { return removeSocketNamed(ctx, cl, file) })
			}
		}},
		{name: "vxlan tunnel", creates: func(*testing.T) ([]api.Message, func(u *undoStack)) {
			v := VxlanTunnel{Src: src, Dst: dst, VNI: 4242}
			return []api.Message{v.request(true)}, func(u *undoStack) { u.pushCallAgain("vxlan tunnel", deleteUnansweredVxlanCall(v)) }
		}},
		{name: "wireguard interface", creates: func(*testing.T) ([]api.Message, func(u *undoStack)) {
			w := WireguardInterfaceSpec{PrivateKey: key, Src: src, Port: 51999}
			return []api.Message{createWireguardInterfaceCall(w, nil).req}, func(u *undoStack) {
				u.pushAgain("wireguard interface", func(ctx context.Context, cl *Client) error { return removeWireguardInterfaceOf(ctx, cl, w) })
			}
		}},
		{name: "ipsec sa", creates: func(*testing.T) ([]api.Message, func(u *undoStack)) {
			return []api.Message{sa.request()}, func(u *undoStack) { u.pushCallAgain("outbound sa", deleteSACall(sa.ID)) }
		}},
		{name: "ipip tunnel", creates: func(*testing.T) ([]api.Message, func(u *undoStack)) {
			p := IpipTunnel{Src: src, Dst: dst}
			return []api.Message{p.request()}, func(u *undoStack) {
				u.pushAgain("ipip tunnel", func(ctx context.Context, cl *Client) error { return removeIpipTunnelOf(ctx, cl, p) })
			}
		}},
	} {
		for _, made := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s made %v", tc.name, made), func(t *testing.T) {
				before, ifaces := vppObjects(t, n1), interfacesOf(t, n1)
				reqs, push := tc.creates(t)
				if made {
					sendUnread(ctx, t, n1, reqs)
				}
				var u undoStack
				push(&u)
				if err := u.run(ctx, cl); err != nil {
					t.Fatalf("undo: %v", err)
				}
				if got := vppObjects(t, n1); !reflect.DeepEqual(got, before) {
					t.Fatalf("VPP's objects %v, before %v", got, before)
				}
				if got := interfacesOf(t, n1); got != ifaces {
					t.Fatalf("VPP's interfaces:\n%s\nbefore:\n%s", got, ifaces)
				}
				if made && tc.name == "ipsec sa" {
					// Gone: the same id is taken again.
					if err := cl.CreateSA(ctx, sa); err != nil {
						t.Fatalf("SA %d not removed: %v", sa.ID, err)
					}
					if err := cl.DeleteSA(ctx, sa.ID); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// sendUnread sends reqs to dp's VPP on a stream of their own and never
// reads their replies: creates whose answer a Connect never got.
func sendUnread(ctx context.Context, t *testing.T, dp *Dataplane, reqs []api.Message) {
	t.Helper()
	stream, err := dp.conn.NewStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if err := stream.SendMsg(r); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.Close()
}

// TestMemifSocketDeleteByIDVPP, on a real VPP: a socket deleted by its id
// once its filename is checked (deleteSocketOf) is refused while a memif
// uses it (an undo's error: run again later; the journal's "nothing to
// do"), deleted once the memif is gone, and a second delete, of an id VPP
// no longer has, is nothing to do: VPP 25.10's codes, as the fake's.
func TestMemifSocketDeleteByIDVPP(t *testing.T) {
	needVPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n1, _ := twoNodes(t)
	cl := n1.vpp
	file := filepath.Join(t.TempDir(), "d.sock")
	sock, err := n1.memifSockIDs.take(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	var idx SwIfIndex
	if err := cl.pipeline(ctx, createMemifSocketCall(file, sock, func(uint32) {}), createMemifCall(MemifSpec{SocketID: sock}, func(x SwIfIndex) { idx = x })); err != nil {
		t.Fatal(err)
	}
	if err := deleteSocketOf(ctx, cl, file, sock, deleteChosenMemifSocketCall(sock)); err == nil {
		t.Fatal("socket in use deleted, or its refusal taken as nothing to do")
	}
	if err := deleteSocketOf(ctx, cl, file, sock, deleteSweptMemifSocketCall(sock)); err != nil {
		t.Fatalf("socket in use, swept: %v", err)
	}
	i, ok, err := cl.findInterfaceNamed(ctx, memifName(sock, 0))
	if err != nil || !ok || i.Index != idx {
		t.Fatalf("memif %s: found %v %v %v, want index %d", memifName(sock, 0), i, ok, err, idx)
	}
	if err := cl.DeleteMemif(ctx, idx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := deleteSocketOf(ctx, cl, file, sock, deleteChosenMemifSocketCall(sock)); err != nil {
			t.Fatal(err)
		}
		if err := cl.pipeline(ctx, deleteChosenMemifSocketCall(sock)); err != nil {
			t.Fatalf("socket %d, gone, deleted again: %v", sock, err)
		}
	}
	socks, err := cl.ListMemifSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.ID == sock {
			t.Fatalf("socket %d left: %v", sock, s)
		}
	}
}
