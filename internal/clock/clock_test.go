package clock

import (
	"testing"
	"time"
)

func TestOffsetAdvanceFiresDueTimersOnly(t *testing.T) {
	c := NewOffset()
	before := time.Now()
	fired := make(chan string, 3)
	c.AfterFunc(time.Hour, func() { fired <- "hour" })
	c.AfterFunc(3*time.Hour, func() { fired <- "3h" })
	stopped := c.AfterFunc(time.Hour, func() { fired <- "stopped" })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	c.Advance(2 * time.Hour)
	select {
	case got := <-fired:
		if got != "hour" {
			t.Fatalf("fired %q, want the 1h timer", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the due timer did not fire")
	}
	// Nothing else is due: a second Advance by less than an hour must not
	// fire the 3h one, and the stopped one never fires.
	c.Advance(30 * time.Minute)
	if got := c.Now().Sub(before); got < 150*time.Minute {
		t.Fatalf("Now moved %v, want at least 2h30m", got)
	}
	c.Advance(31 * time.Minute)
	if got := <-fired; got != "3h" {
		t.Fatalf("fired %q, want the 3h timer", got)
	}
	select {
	case got := <-fired:
		t.Fatalf("%q fired as well", got)
	default:
	}
}

func TestOffsetRealTimeStillFires(t *testing.T) {
	c := NewOffset()
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a timer did not fire in real time")
	}
	if tm := c.AfterFunc(time.Millisecond, func() {}); tm == nil {
		t.Fatal("nil timer")
	}
}

func TestOffsetFiresOnce(t *testing.T) {
	c := NewOffset()
	n := make(chan struct{}, 2)
	c.AfterFunc(time.Minute, func() { n <- struct{}{} })
	c.Advance(time.Minute)
	c.Advance(time.Minute)
	<-n
	select {
	case <-n:
		t.Fatal("fired twice")
	case <-time.After(50 * time.Millisecond):
	}
}
