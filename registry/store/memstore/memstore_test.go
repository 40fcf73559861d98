package memstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/storetest"
)

// TestMain fails the package if any goroutine outlives the tests: expiry
// callbacks and context hooks must all end once stores are closed and
// watches cancelled.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New() })
}

func TestLaggedWatcherIsEnded(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := t.Context()

	_, slow, err := s.ListAndWatch(ctx, store.KindEndpoint, store.All)
	if err != nil {
		t.Fatalf("ListAndWatch: %v", err)
	}
	// One more change than the buffer holds; none of the Puts may block.
	for i := range watchBuffer + 1 {
		if err := s.Put(ctx, store.KindEndpoint, fmt.Sprintf("r%d", i), []byte("v"), 0); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}

	read := 0
	for range slow.Events {
		read++
	}
	if read != watchBuffer {
		t.Errorf("lagged watcher read %d events before the end, want the %d buffered", read, watchBuffer)
	}
	if err := slow.Err(); !errors.Is(err, store.ErrWatchLagged) {
		t.Errorf("Err() = %v, want ErrWatchLagged", err)
	}

	// The store and new watchers carry on.
	_, fresh, err := s.ListAndWatch(ctx, store.KindEndpoint, store.All)
	if err != nil {
		t.Fatalf("ListAndWatch after lag: %v", err)
	}
	if err := s.Put(ctx, store.KindEndpoint, "after", []byte("v"), 0); err != nil {
		t.Fatalf("Put after lag: %v", err)
	}
	if ev := <-fresh.Events; ev.Name != "after" {
		t.Errorf("fresh watcher got %q, want %q", ev.Name, "after")
	}
}

func TestCloseStopsExpiryAndWatches(t *testing.T) {
	s := New()
	ctx := t.Context()
	for i := range 10 {
		if err := s.Put(ctx, store.KindService, fmt.Sprint(i), []byte("v"), time.Hour); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	var watches []*store.Watch
	for range 3 {
		_, w, err := s.ListAndWatch(ctx, store.KindService, store.All)
		if err != nil {
			t.Fatalf("ListAndWatch: %v", err)
		}
		watches = append(watches, w)
	}
	timers := make([]*time.Timer, 0, 10)
	for _, rec := range s.records[store.KindService] {
		timers = append(timers, rec.expiry)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, timer := range timers {
		if timer.Stop() {
			t.Errorf("timer %d still running after Close", i)
		}
	}
	for i, w := range watches {
		if _, ok := <-w.Events; ok {
			t.Errorf("watch %d: event after Close", i)
		}
		if err := w.Err(); !errors.Is(err, ErrClosed) {
			t.Errorf("watch %d: Err() = %v, want ErrClosed", i, err)
		}
	}
	goleak.VerifyNone(t)
}
