// Package backoff spaces out retries of the example workloads: waits that
// double from an initial value up to a cap, with jitter so that many
// workloads restarted together do not retry in lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields growing waits. The zero value waits 100ms, then doubles up
// to 5s. It is not safe for concurrent use: each retry loop owns one.
type Backoff struct {
	Initial time.Duration // first wait; 100ms when zero
	Max     time.Duration // cap; 5s when zero

	cur time.Duration
}

// Next is the wait before the next attempt: the current step ±20%.
func (b *Backoff) Next() time.Duration {
	initial, maxWait := b.Initial, b.Max
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Second
	}
	if initial > maxWait {
		initial = maxWait
	}
	switch {
	case b.cur == 0:
		b.cur = initial
	case b.cur < maxWait:
		b.cur = min(2*b.cur, maxWait)
	}
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(b.cur))
	return b.cur + jitter
}

// Reset starts the sequence again after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d, or less when ctx ends first; it reports whether the full
// wait passed (false: ctx ended).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
