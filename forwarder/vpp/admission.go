package vpp

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DefaultMaxInFlight is --vpp-max-in-flight's default: how many vWire
// operations (Connect, Disconnect, a restore's rebuild) talk to one VPP at
// once; 0, no bound. 16 measured as good as no bound at 20 in parallel
// (forwarder/vpp/README.md, Admission), but in the full soak's concurrent
// rounds Connects that gave up queued were retried into remote vWires with
// no WireGuard session, a fault not found yet: off until it is.
const DefaultMaxInFlight = 0

// opKind is the kind of an operation waiting for admission, by priority.
type opKind int

const (
	// opRemove frees VPP work (a Disconnect, the removal of a vWire
	// nobody claimed): served first.
	opRemove opKind = iota
	// opBuild adds VPP work (a Connect, a refresh's check, a restore's
	// rebuild).
	opBuild
	opKinds
)

func (k opKind) String() string {
	if k == opRemove {
		return "remove"
	}
	return "build"
}

// admission bounds the vWire operations talking to one VPP at once. VPP
// serves its binary API on its main thread, one message at a time:
// operations past a few gain nothing there, and on a host that starves
// that thread each one queued in VPP waits behind all the others, runs
// past its deadline, and is retried with a sweep that lists every
// interface, for a caller already gone (the full soak's "VPP not
// answering": README.md, soak-vpp). Past the bound, operations wait here,
// in Go, where a caller that gives up costs VPP nothing.
//
// Removals go before builds: a removal frees VPP objects, its caller has
// already forgotten the vWire (it cannot usefully give up), and it is
// short (its fast undo is two round trips); builds cannot be starved by
// them for long, since every removal takes away a vWire a build made.
// Within a kind, first come first served.
type admission struct {
	limit int // 0: no bound
	m     *Metrics

	mu       sync.Mutex
	inFlight int                // operations admitted and not yet done; guarded by mu
	queues   [opKinds][]*waiter // by kind, oldest first; guarded by mu
}

// waiter is one operation waiting for a slot.
type waiter struct {
	ready   chan struct{} // closed when granted
	granted bool          // guarded by admission.mu
}

func newAdmission(limit int, m *Metrics) *admission {
	return &admission{limit: limit, m: m}
}

// admit returns once op may talk to VPP, with the func that gives its slot
// back, or ctx's error (wrapped) when ctx ends first: the operation must
// then not call VPP at all. A slot that is free is taken even when ctx
// has ended (an operation that starts runs to its end; see Connect).
func (a *admission) admit(ctx context.Context, op opKind) (release func(), err error) {
	start := time.Now()
	a.mu.Lock()
	if a.free(op) {
		a.inFlight++
		a.mu.Unlock()
		a.m.admitted(op, 0)
		return a.releaser(), nil
	}
	w := &waiter{ready: make(chan struct{})}
	a.queues[op] = append(a.queues[op], w)
	ahead := a.inFlight
	for k := range op + 1 {
		ahead += len(a.queues[k]) - 1
	}
	a.m.waiting(op, 1)
	a.mu.Unlock()

	select {
	case <-w.ready:
		a.m.admitted(op, time.Since(start))
		return a.releaser(), nil
	case <-ctx.Done():
	}
	a.mu.Lock()
	if w.granted {
		// Granted as ctx ended: handed on, unused.
		a.releaseLocked()
	} else {
		a.queues[op] = removeWaiter(a.queues[op], w)
		a.m.waiting(op, -1)
	}
	a.mu.Unlock()
	a.m.abandoned(op)
	return nil, fmt.Errorf("vpp dataplane: gave up waiting for VPP after %v (%d operations in VPP or ahead): %w",
		time.Since(start).Round(time.Millisecond), ahead, ctx.Err())
}

// free reports whether op may start now (a.mu held): a slot is free and no
// operation of its kind or before waits.
func (a *admission) free(op opKind) bool {
	if a.limit <= 0 {
		return true
	}
	if a.inFlight >= a.limit {
		return false
	}
	for k := range op + 1 {
		if len(a.queues[k]) > 0 {
			return false
		}
	}
	return true
}

func (a *admission) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			a.m.released()
			a.mu.Lock()
			a.releaseLocked()
			a.mu.Unlock()
		})
	}
}

// releaseLocked gives one slot back and grants it to the first waiter
// (a.mu held).
func (a *admission) releaseLocked() {
	a.inFlight--
	for a.limit <= 0 || a.inFlight < a.limit {
		var w *waiter
		for k := range a.queues {
			if len(a.queues[k]) > 0 {
				w = a.queues[k][0]
				a.queues[k] = a.queues[k][1:]
				a.m.waiting(opKind(k), -1)
				break
			}
		}
		if w == nil {
			return
		}
		w.granted = true
		a.inFlight++
		close(w.ready)
	}
}

func removeWaiter(q []*waiter, w *waiter) []*waiter {
	for i, x := range q {
		if x == w {
			return append(q[:i:i], q[i+1:]...)
		}
	}
	return q
}

// busy reports the operations in VPP and those waiting (for tests).
func (a *admission) busy() (inFlight, waiting int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, q := range a.queues {
		waiting += len(q)
	}
	return a.inFlight, waiting
}
