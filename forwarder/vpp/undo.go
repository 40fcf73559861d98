package vpp

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.fd.io/govpp/binapi/wireguard"
)

// undoFunc removes one object that a Connect made; cl is the Client of
// whoever runs the stack.
type undoFunc func(ctx context.Context, cl *Client) error

type undoStep struct {
	what string
	fn   undoFunc
	// A step that is one VPP request has it here (fn is nil): run sends
	// the requests of steps next to each other on one stream, one round
	// trip for all (Client.pipelineEach).
	call *pipelined
	// again: the step finds its object by what the vWire holds (ids
	// vwire chose, its tunnel's parameters or key), not by an index VPP
	// may give to another's object meanwhile, so it may run again later
	// should it fail (see Dataplane.leftovers).
	again bool
	// intent is the journal key of the create whose object the step
	// removes (see intents.go), 0 if none.
	intent uint64
}

// undoStack records, after each successful create, how to remove what was
// created (after a create whose outcome is unknown, how to look for what it
// may have made and remove it); run removes it all in reverse order when a
// later step fails.
type undoStack struct {
	steps []undoStep
	// left are the steps that may run again (again) and failed in the
	// last run, in push order.
	left []undoStep
	// intents are the journal keys of the creates the stack's build
	// recorded (Dataplane.intend); stuck, those of steps that failed in
	// the last run (their objects may still be in VPP).
	intents, stuck []uint64
	// ifaces are the interfaces whose create VPP answered, whatever
	// became of them since: the indexes a narrow sweep looks at (see
	// Dataplane.placed).
	ifaces []SwIfIndex
}

// made records that VPP answered the create of interface idx.
func (u *undoStack) made(idx SwIfIndex) { u.ifaces = append(u.ifaces, idx) }

// push records fn, which removes what; what names it in errors and logs.
func (u *undoStack) push(what string, fn undoFunc) {
	u.steps = append(u.steps, undoStep{what: what, fn: fn})
}

// pushCall records call, the one request to VPP that removes what.
func (u *undoStack) pushCall(what string, call pipelined) {
	u.steps = append(u.steps, undoStep{what: what, call: &call})
}

// pushAgain is push for a step that may run again later (undoStep.again).
func (u *undoStack) pushAgain(what string, fn undoFunc) {
	u.steps = append(u.steps, undoStep{what: what, fn: fn, again: true})
}

// pushCallAgain is pushCall for a step that may run again later.
func (u *undoStack) pushCallAgain(what string, call pipelined) {
	u.steps = append(u.steps, undoStep{what: what, call: &call, again: true})
}

// markLast gives the step pushed last the journal key of the create it
// undoes.
func (u *undoStack) markLast(key uint64) {
	if n := len(u.steps); n > 0 {
		u.steps[n-1].intent = key
	}
}

// len reports how many steps are recorded.
func (u *undoStack) len() int { return len(u.steps) }

// run removes everything recorded, last first, and empties the stack. It
// goes on past failures and returns them all; what is gone already (VPP
// answers not found) is no failure. Requests next to each other go
// pipelined: VPP serves them in the stack's order, and each runs whatever
// the one before it answered, as it would one at a time. cl sends them
// and logs.
func (u *undoStack) run(ctx context.Context, cl *Client) error {
	var errs []error
	u.left, u.stuck = nil, nil
	keep := func(s undoStep, err error) {
		if err != nil && !IsNotFound(err) {
			cl.log.Error("undo failed", "step", s.what, "err", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", s.what, err))
			if s.again {
				u.left = append(u.left, s)
			}
			if s.intent != 0 {
				u.stuck = append(u.stuck, s.intent)
			}
		}
	}
	for i := len(u.steps) - 1; i >= 0; {
		s := u.steps[i]
		if s.call == nil {
			keep(s, s.fn(ctx, cl))
			i--
			continue
		}
		var calls []pipelined
		j := i
		for ; j >= 0 && u.steps[j].call != nil; j-- {
			calls = append(calls, *u.steps[j].call)
		}
		for k, err := range cl.pipelineEach(ctx, calls...) {
			keep(u.steps[i-k], err)
		}
		i = j
	}
	slices.Reverse(u.left)
	u.steps = nil
	return errors.Join(errs...)
}

// rollbackOn runs the stack, on a context of its own (the caller's may be
// what failed), when *err is set, and adds what the rollback could not
// remove to *err. Use it deferred.
func (u *undoStack) rollbackOn(ctx context.Context, cl *Client, err *error) {
	if *err == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if uerr := u.run(cctx, cl); uerr != nil {
		*err = fmt.Errorf("%w (and rolling back: %w)", *err, uerr)
	}
}

// peerStep is the stack's first WireGuard peer removal (the in side's:
// it is built first), nil if none.
func (u *undoStack) peerStep() *undoStep {
	for i := range u.steps {
		if s := &u.steps[i]; s.call != nil {
			if _, ok := s.call.req.(*wireguard.WireguardPeerRemove); ok {
				return s
			}
		}
	}
	return nil
}
