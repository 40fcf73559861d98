package vpp

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/mechanisms/memif"
)

// ErrMemifPoolFull refuses a vWire whose memifs would not fit in the room
// reserved in VPP's memif pool (--vpp-memif-reserve). It carries
// ResourceExhausted, which the forwarder passes on to the caller: the
// node is full, not broken.
var ErrMemifPoolFull = status.Error(codes.ResourceExhausted, "memif: the room reserved in VPP's memif pool is taken")

// ErrMemifPoolAway is a memif vWire's Connect that gave up waiting for VPP
// to come back and its memif pool to be reserved again (memifRoom.await):
// Unavailable, for the caller to try again.
var ErrMemifPoolAway = status.Error(codes.Unavailable, "memif: VPP is away, or back and its memif pool not reserved again yet")

// memifRoom keeps the memifs of vWires within the room ReserveMemifs made
// in VPP's memif pool, so that the pool never grows while VPP runs.
//
// Why: VPP 25.10's memif process walks that pool with pool_foreach and
// suspends itself every 10 µs of the walk (memif.c, memif_process); the
// API calls served meanwhile may grow the pool, which moves it, and the
// walk goes on through freed memory: VPP dies with SIGSEGV in
// memif_process (TestMemifPoolPastReserveVPP: building memif vWires past
// the reserve from 20 goroutines killed VPP at about 700 memifs, every
// run). Every admin up or down of a memif starts such a walk, and so does
// a 3 s timer, so no order of vwire's calls keeps a growth out of a walk:
// only not growing is safe. The reserve is the pool's room; vWires past
// it are refused.
type memifRoom struct {
	mu    sync.Mutex
	max   int            // the room; -1: no bound (no reserve was asked for); guarded by mu
	held  map[string]int // memifs each vWire may have in VPP; guarded by mu
	total int            // sum of held; guarded by mu
	// gate is closed while new memifs may be claimed; an open one stands
	// from the loss of VPP until the restore has reserved the pool of the
	// VPP that came back: a memif made before would grow that pool
	// unreserved, and the reserve, which goes only into an empty pool,
	// would then be skipped. Guarded by mu.
	gate chan struct{}
}

// newMemifRoom bounds memifs to reserve, or to nothing when it is 0.
func newMemifRoom(reserve int) *memifRoom {
	r := &memifRoom{max: reserve, held: map[string]int{}, gate: make(chan struct{})}
	close(r.gate)
	if reserve == 0 {
		r.max = -1
	}
	return r
}

// shut holds new memifs back (await) until open: VPP is away.
func (r *memifRoom) shut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.gate:
		r.gate = make(chan struct{})
	default:
	}
}

// open lets new memifs go again; it may be called twice.
func (r *memifRoom) open() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.gate:
	default:
		close(r.gate)
	}
}

// await waits until new memifs may go (see gate), ctx ends or closing is
// closed.
func (r *memifRoom) await(ctx context.Context, closing <-chan struct{}) error {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	select {
	case <-gate:
		return nil
	case <-closing:
		return status.Error(codes.Unavailable, "memif: the dataplane is closing")
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrMemifPoolAway, ctx.Err())
	}
}

// setRoom makes n the room: what a reserve reached in the pool of the VPP
// now connected (it may fall short of what was asked).
func (r *memifRoom) setRoom(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.max = n
}

// claim makes id hold n memifs, or refuses (ErrMemifPoolFull) when the
// others' and n exceed the room; id's earlier claim is replaced either
// way only if it fits.
func (r *memifRoom) claim(id string, n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	others := r.total - r.held[id]
	if r.max >= 0 && others+n > r.max {
		return fmt.Errorf("%w: %d of %d memifs held by other vWires, this one needs %d (raise --vpp-memif-reserve)",
			ErrMemifPoolFull, others, r.max, n)
	}
	r.set(id, n)
	return nil
}

// settle makes id hold n memifs, never refusing: for a claim that shrinks
// to what stands in VPP.
func (r *memifRoom) settle(id string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(id, n)
}

// readmit claims again, in order, room for the vWires keys names, whose
// memifs went with a VPP that restarted: their claims are dropped, then
// made again one by one while they fit the room the new VPP's reserve
// reached (need[key] memifs each). It returns the keys refused, which then
// hold nothing. All under one lock: no Connect takes the room between.
func (r *memifRoom) readmit(keys []string, need map[string]int) (refused []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.set(k, 0)
	}
	for _, k := range keys {
		if r.max >= 0 && r.total+need[k] > r.max {
			refused = append(refused, k)
			continue
		}
		r.set(k, need[k])
	}
	return refused
}

// holding is what id holds.
func (r *memifRoom) holding(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held[id]
}

func (r *memifRoom) set(id string, n int) {
	r.total += n - r.held[id]
	if n == 0 {
		delete(r.held, id)
		return
	}
	r.held[id] = n
}

// memifs is how many memifs plan p makes: one a MEMIF side.
func (p *plan) memifs() int {
	n := 0
	for _, s := range []side{p.in, p.out} {
		if s.typ == memif.Type {
			n++
		}
	}
	return n
}
