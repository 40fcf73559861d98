// Package clock is the time that connection expiry runs on in the manager
// and the forwarder: the real one, or in tests one that also moves forward
// when told, so that a test of expiry and refresh waits on events, not on
// a lifetime passing on a loaded machine.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and runs functions after a while.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether
	// it did.
	Stop() bool
}

// Real is the system clock.
type Real struct{}

// Now is time.Now.
func (Real) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Or returns c, or the real clock when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Offset is the real time plus an offset that only Advance changes (and
// only forward): time goes on as usual and jumps when a test says so.
// Times it gives are never before the real time, so tokens signed with
// expiries from it are valid for verifiers on the real clock.
type Offset struct {
	mu     sync.Mutex // guards offset and timers
	offset time.Duration
	timers map[*offsetTimer]struct{}
}

// NewOffset returns an Offset clock at the real time.
func NewOffset() *Offset { return &Offset{timers: map[*offsetTimer]struct{}{}} }

// Now is the real time plus the offset.
func (c *Offset) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// AfterFunc calls f when d has passed, in real time or through Advance,
// whichever comes first.
func (c *Offset) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &offsetTimer{c: c, at: time.Now().Add(c.offset + d), f: f}
	t.real = time.AfterFunc(d, t.fire)
	c.timers[t] = struct{}{}
	return t
}

// Advance moves the clock forward by d (not back: a negative d does
// nothing) and starts every call that is due.
func (c *Offset) Advance(d time.Duration) {
	d = max(d, 0)
	c.mu.Lock()
	c.offset += d
	now := time.Now().Add(c.offset)
	var due []*offsetTimer
	for t := range c.timers {
		if !t.at.After(now) {
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		if t.real.Stop() {
			go t.fire()
		}
	}
}

type offsetTimer struct {
	c    *Offset
	at   time.Time // on c's clock
	f    func()
	real *time.Timer // fires at the same time on the real clock
}

func (t *offsetTimer) fire() {
	t.c.mu.Lock()
	delete(t.c.timers, t)
	t.c.mu.Unlock()
	t.f()
}

func (t *offsetTimer) Stop() bool {
	t.c.mu.Lock()
	delete(t.c.timers, t)
	t.c.mu.Unlock()
	return t.real.Stop()
}
