package vpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// undoFunc removes one object that a Connect made.
type undoFunc func(ctx context.Context) error

type undoStep struct {
	what string
	fn   undoFunc
}

// undoStack records, after each successful create, how to remove what was
// created; run removes it all in reverse order when a later step fails.
type undoStack struct {
	steps []undoStep
}

// push records fn, which removes what; what names it in errors and logs.
func (u *undoStack) push(what string, fn undoFunc) {
	u.steps = append(u.steps, undoStep{what: what, fn: fn})
}

// len reports how many steps are recorded.
func (u *undoStack) len() int { return len(u.steps) }

// run calls every recorded func, last first, and empties the stack. It goes
// on past failures and returns them all.
func (u *undoStack) run(ctx context.Context, log *slog.Logger) error {
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.fn(ctx); err != nil && !IsNotFound(err) {
			log.Error("undo failed", "step", s.what, "err", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", s.what, err))
		}
	}
	u.steps = nil
	return errors.Join(errs...)
}

// rollbackOn runs the stack, on a context of its own (the caller's may be
// what failed), when *err is set, and adds what the rollback could not
// remove to *err. Use it deferred.
func (u *undoStack) rollbackOn(ctx context.Context, log *slog.Logger, err *error) {
	if *err == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if uerr := u.run(cctx, log); uerr != nil {
		*err = fmt.Errorf("%w (and rolling back: %w)", *err, uerr)
	}
}
