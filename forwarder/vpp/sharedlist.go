package vpp

import (
	"context"
	"sync"
)

// sharedList makes one listing of VPP at a time (a dump of every
// interface, say) for any number of callers. A caller that asks while a
// listing is under way waits for the next one, which starts when the
// current one ends and serves every caller that asked meanwhile: each
// caller gets a listing VPP began after it asked (nothing the caller made
// before asking is missing from it), and VPP makes at most one at a time.
//
// Why: at node scale every retried Connect and every Disconnect of a
// vWire with leftovers sweeps, and a sweep lists every interface (several
// thousand details). In a full soak on a loaded host node2's forwarder
// had hundreds of such dumps in flight at once; VPP's main thread, with a
// tenth of a CPU, spent it writing ~2.2 million details for callers whose
// deadline had passed ("Channel ID not known"), every late Connect was
// retried with one more sweep, and VPP stopped answering at all (595 of
// 1,000 vWires up after 10 min). Shared, those dumps cost one, or two in a
// row, whatever the number of callers.
//
// The listing runs on its own context, bounded by callTimeout, not on a
// caller's: a caller that gives up stops waiting, the others still get
// it; a listing every caller gave up on before it began is not made.
type sharedList[T any] struct {
	fetch func(ctx context.Context) ([]T, error)

	mu      sync.Mutex
	running bool          // a listing is under way
	next    *listRound[T] // the round callers join; nil when none asked yet
}

// listRound is one listing and the callers waiting for it.
type listRound[T any] struct {
	done    chan struct{} // closed when items and err are set
	waiters int           // guarded by sharedList.mu
	items   []T
	err     error
}

func newSharedList[T any](fetch func(ctx context.Context) ([]T, error)) *sharedList[T] {
	return &sharedList[T]{fetch: fetch}
}

// get returns a listing begun after get was called, a copy of its own.
func (s *sharedList[T]) get(ctx context.Context) ([]T, error) {
	s.mu.Lock()
	if s.next == nil {
		s.next = &listRound[T]{done: make(chan struct{})}
	}
	r := s.next
	r.waiters++
	if !s.running {
		s.running = true
		s.next = nil
		go s.run(r)
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		if r.err != nil {
			return nil, r.err
		}
		return append([]T(nil), r.items...), nil
	case <-ctx.Done():
		s.mu.Lock()
		r.waiters--
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// run makes round r's listing, then the next round's while callers keep
// joining one.
func (s *sharedList[T]) run(r *listRound[T]) {
	for r != nil {
		s.mu.Lock()
		wanted := r.waiters > 0
		s.mu.Unlock()
		if wanted {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			r.items, r.err = s.fetch(ctx)
			cancel()
		} else {
			r.err = context.Canceled // nobody reads it
		}
		close(r.done)
		s.mu.Lock()
		r, s.next = s.next, nil
		if r == nil {
			s.running = false
		}
		s.mu.Unlock()
	}
}
