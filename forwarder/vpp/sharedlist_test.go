package vpp

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedFetch is a listing whose every call blocks until released, and
// counts its calls.
type gatedFetch struct {
	calls   atomic.Int32
	started chan int             // call number, when a call begins
	release chan []int           // what the call returns
	ctxs    chan context.Context // each call's context
}

func newGatedFetch() *gatedFetch {
	return &gatedFetch{started: make(chan int, 100), release: make(chan []int), ctxs: make(chan context.Context, 100)}
}

func (g *gatedFetch) fetch(ctx context.Context) ([]int, error) {
	n := int(g.calls.Add(1))
	g.ctxs <- ctx
	g.started <- n
	select {
	case v := <-g.release:
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func waitStarted(t *testing.T, g *gatedFetch, want int) {
	t.Helper()
	select {
	case n := <-g.started:
		if n != want {
			t.Fatalf("listing %d began, want %d", n, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("listing %d did not begin", want)
	}
}

// TestSharedListJoinsNextRound: callers that ask while a listing is under
// way share the next one, begun after they asked; one caller gets the
// listing it started. Eleven callers, two listings (each caller listing on
// its own made eleven: the dumps that swamped node2's VPP in the soak).
func TestSharedListJoinsNextRound(t *testing.T) {
	g := newGatedFetch()
	s := newSharedList(g.fetch)
	ctx := context.Background()
	first := make(chan []int, 1)
	go func() {
		v, err := s.get(ctx)
		if err != nil {
			t.Error(err)
		}
		first <- v
	}()
	waitStarted(t, g, 1)
	const late = 10
	var wg sync.WaitGroup
	got := make([][]int, late)
	for i := range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.get(ctx)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	// Let the late callers join before the first listing ends.
	eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.next == nil || s.next.waiters != late {
			return errors.New("late callers not all waiting")
		}
		return nil
	})
	g.release <- []int{1}
	if v := <-first; len(v) != 1 || v[0] != 1 {
		t.Fatalf("first caller got %v, want the first listing", v)
	}
	waitStarted(t, g, 2)
	g.release <- []int{2, 2}
	wg.Wait()
	for i, v := range got {
		if len(v) != 2 || v[0] != 2 {
			t.Errorf("late caller %d got %v, want the second listing (begun after it asked)", i, v)
		}
	}
	got[0][0] = 99
	if got[1][0] != 2 {
		t.Error("callers share one slice: one caller's change shows in another's")
	}
	if n := g.calls.Load(); n != 2 {
		t.Errorf("%d listings for %d callers, want 2", n, late+1)
	}
	// Idle again: the next caller starts a listing of its own at once.
	go func() { _, _ = s.get(ctx) }()
	waitStarted(t, g, 3)
	g.release <- nil
}

// TestSharedListOutlivesCallers: a listing runs on its own context, not
// its caller's: a caller that gives up gets its context's error at once,
// and the listing goes on for the callers still waiting. A round every
// caller gave up on before it began is not made.
func TestSharedListOutlivesCallers(t *testing.T) {
	g := newGatedFetch()
	s := newSharedList(g.fetch)
	short, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.get(short)
		errc <- err
	}()
	waitStarted(t, g, 1)
	fctx := <-g.ctxs
	if dl, ok := fctx.Deadline(); !ok || time.Until(dl) < callTimeout/2 {
		t.Errorf("listing's context: deadline %v (set: %v), want about callTimeout from now", dl, ok)
	}
	// A second caller joins the next round and gives up too.
	short2, cancel2 := context.WithCancel(context.Background())
	go func() {
		_, err := s.get(short2)
		errc <- err
	}()
	eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.next == nil || s.next.waiters != 1 {
			return errors.New("second caller not waiting")
		}
		return nil
	})
	cancel()
	cancel2()
	for range 2 {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("a caller that gave up got %v", err)
		}
	}
	if fctx.Err() != nil {
		t.Fatal("the listing was cancelled with its caller")
	}
	g.release <- []int{1}
	// The second round had nobody left: not made.
	eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.running {
			return errors.New("still running")
		}
		return nil
	})
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d listings, want 1 (the abandoned round made anyway)", n)
	}
}

// TestListInterfacesShared: the Client's interface listings go through
// one sharedList, shared by its WithLogger copies, and return VPP's
// interfaces.
func TestListInterfacesShared(t *testing.T) {
	n := newTestNode(t, "192.0.2.1")
	c := n.dp.vpp
	if c.WithLogger(c.log).ifaces != c.ifaces {
		t.Fatal("a WithLogger copy lists on its own")
	}
	ifaces, err := c.ListInterfaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ifaces) == 0 {
		t.Fatal("no interfaces listed (the fake has its uplink)")
	}
}
