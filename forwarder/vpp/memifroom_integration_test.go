package vpp

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/mechanisms/memif"
)

// TestMemifPoolPastReserveVPP builds local memif vWires on a real VPP from
// 20 goroutines, far past the room reserved in VPP's memif pool: the
// vWires that fit are built, the others refused with ErrMemifPoolFull
// before VPP is called, and VPP runs on, the same process. Without the
// bound (memifroom.go) the pool grows while VPP 25.10's memif process
// walks it and VPP dies with SIGSEGV in memif_process, at about 700
// memifs here, in every run. Room freed by Disconnects is taken again.
func TestMemifPoolPastReserveVPP(t *testing.T) {
	needVPP(t)
	const reserve, n, workers = 64, 400, 20
	dp := startNode(t, newNS(t, "node"), "", func(c *Config) { c.MemifReserve = reserve })
	dp.mu.Lock()
	proc := dp.proc
	dp.mu.Unlock()
	base := vppObjects(t, dp)
	ctx := context.Background()
	id := func(i int) string { return fmt.Sprintf("room-%d", i) }
	connect := func(i int) error {
		return dp.Connect(ctx, id(i),
			conn(memifMech(fmt.Sprintf("room-%d-c.sock", i)), payload.Ethernet),
			conn(memifMech(fmt.Sprintf("room-%d-e.sock", i)), payload.Ethernet))
	}
	t.Cleanup(func() {
		for i := range n + 1 {
			_ = dp.Disconnect(ctx, id(i))
		}
	})
	_, errs := parallel(n, workers, connect)
	died := func() bool {
		select {
		case <-proc.Done():
			return true
		default:
			return false
		}
	}
	if died() {
		t.Fatalf("VPP died while memif vWires were built past its reserve:\n%s", proc.ExitReport())
	}
	for _, err := range errs {
		if !errors.Is(err, ErrMemifPoolFull) {
			t.Fatalf("a Connect failed for another reason than a full memif pool: %v", err)
		}
	}
	if built, want := n-len(errs), reserve/2; built != want {
		t.Fatalf("%d vWires built, want the %d that fit %d memifs", built, want, reserve)
	}
	if got := vppObjects(t, dp); got["memifs"]-base["memifs"] != reserve {
		t.Errorf("VPP holds %d more memifs, want %d", got["memifs"]-base["memifs"], reserve)
	}
	t.Logf("%d vWires built, %d refused; first refusal: %v", n-len(errs), len(errs), errs[0])

	// One Disconnect frees the room of one vWire.
	var gone int
	for i := range n {
		dp.mu.Lock()
		st := dp.conns[id(i)]
		dp.mu.Unlock()
		if st != nil {
			gone = i
			break
		}
	}
	if err := dp.Disconnect(ctx, id(gone)); err != nil {
		t.Fatal(err)
	}
	if err := connect(n); err != nil {
		t.Fatalf("a vWire in the room a Disconnect freed: %v", err)
	}
	if err := connect(n + 1); !errors.Is(err, ErrMemifPoolFull) {
		t.Fatalf("a vWire past the reserve again: %v, want ErrMemifPoolFull", err)
	}
	for i := range n + 1 {
		if err := dp.Disconnect(ctx, id(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := vppObjects(t, dp); got["memifs"] != base["memifs"] || got["memif sockets"] != base["memif sockets"] {
		t.Errorf("after every Disconnect VPP holds %d memifs and %d sockets, want %d and %d",
			got["memifs"], got["memif sockets"], base["memifs"], base["memif sockets"])
	}
	if died() {
		t.Fatalf("VPP died:\n%s", proc.ExitReport())
	}
}

// TestMemifSlaveSocketsVPP builds and removes, from 20 goroutines, local
// memif vWires whose endpoint side is a socket file an NSM endpoint named
// (VPP slave) and nobody listens on, twice over, within the reserve: VPP's
// memif process walks those slave memifs, up and never connected, and
// after each pause of its walk reads and writes its memif's socket-file
// entry (memif.c, memif_process), while every vWire registers two socket
// files. With the socket-file pool reserved (ReserveMemifSockets) it
// never grows under the walk; VPP runs on, the same process, and is back
// to its objects.
func TestMemifSlaveSocketsVPP(t *testing.T) {
	needVPP(t)
	const n, workers = 300, 20
	dp := startNode(t, newNS(t, "node"), "", func(c *Config) { c.MemifReserve = 2*n + 8 })
	dp.mu.Lock()
	proc := dp.proc
	dp.mu.Unlock()
	base := vppObjects(t, dp)
	ctx := context.Background()
	nobody := t.TempDir() // the endpoints' sockets: no listener
	id := func(i int) string { return fmt.Sprintf("slave-%d", i) }
	t.Cleanup(func() {
		for i := range n {
			_ = dp.Disconnect(ctx, id(i))
		}
	})
	for round := range 2 {
		_, errs := parallel(n, workers, func(i int) error {
			return dp.Connect(ctx, id(i),
				conn(memifMech(fmt.Sprintf("slave-%d-c.sock", i)), payload.Ethernet),
				conn(memif.New(memif.Params{SocketURL: "file://" + filepath.Join(nobody, fmt.Sprintf("ep-%d.sock", i))}), payload.Ethernet))
		})
		if len(errs) > 0 {
			t.Fatalf("round %d: %d of %d Connects failed; first: %v", round, len(errs), n, errs[0])
		}
		if got := vppObjects(t, dp); got["memif sockets"]-base["memif sockets"] != 2*n {
			t.Fatalf("round %d: VPP holds %d more memif sockets, want %d", round, got["memif sockets"]-base["memif sockets"], 2*n)
		}
		if _, errs = parallel(n, workers, func(i int) error { return dp.Disconnect(ctx, id(i)) }); len(errs) > 0 {
			t.Fatalf("round %d: %d Disconnects failed; first: %v", round, len(errs), errs[0])
		}
		select {
		case <-proc.Done():
			t.Fatalf("round %d: VPP died:\n%s", round, proc.ExitReport())
		default:
		}
	}
	if got := vppObjects(t, dp); got["memifs"] != base["memifs"] || got["memif sockets"] != base["memif sockets"] {
		t.Errorf("VPP holds %d memifs and %d sockets, want %d and %d", got["memifs"], got["memif sockets"], base["memifs"], base["memif sockets"])
	}
}
