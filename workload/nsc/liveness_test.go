package nsc_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/workload/nsc"
)

// TestLivenessReselects: the client asks for another endpoint after the
// configured number of lost probes in a row, and only then.
func TestLivenessReselects(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Hour})
	c := e.client(t, nsc.Config{LivenessInterval: 10 * time.Millisecond, LivenessFailures: 3})
	// Lost, lost, answered, lost, lost, answered, lost, lost, lost (a
	// reselection), then answered for good.
	pattern := []bool{false, false, true, false, false, true, false, false, false}
	var (
		mu    sync.Mutex
		calls int
		dsts  = map[netip.Addr]bool{}
	)
	c.SetProbe(func(_ context.Context, nsPath string, dst netip.Addr, _, _ int, _ time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		dsts[dst] = true
		calls++
		if calls <= len(pattern) && !pattern[calls-1] {
			return errors.New("lost")
		}
		return nil
	})
	stop, _ := run(t, c, targets(t, "kernel://icmp-responder/nsm-1"))
	waitFor(t, "the probes to go past the pattern", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls > len(pattern)+20
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	reqs, _ := e.mgr.snapshot()
	var reselects int
	for _, r := range reqs {
		if r.req.GetConnection().GetState() == networkservice.State_RESELECT_REQUESTED {
			reselects++
		}
	}
	if reselects != 1 {
		t.Fatalf("%d RESELECT_REQUESTED requests, want 1", reselects)
	}
	if want := netip.MustParseAddr("169.254.0.0"); len(dsts) != 1 || !dsts[want] {
		t.Fatalf("probed %v, want only the endpoint's address %s", dsts, want)
	}
}

// TestLivenessOnlyKernel: a memif connection has no interface in the
// client's namespace to ping through: no probe is sent.
func TestLivenessOnlyKernel(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Hour})
	c := e.client(t, nsc.Config{LivenessInterval: 5 * time.Millisecond})
	probed := make(chan struct{}, 1)
	c.SetProbe(func(context.Context, string, netip.Addr, int, int, time.Duration) error {
		select {
		case probed <- struct{}{}:
		default:
		}
		return nil
	})
	stop, _ := run(t, c, targets(t, "memif://icmp-responder/sock"))
	waitFor(t, "a connection", func() bool { return len(e.out.lines("connected ")) == 1 })
	// The check would have started with the connection: give it ticks.
	time.Sleep(50 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-probed:
		t.Fatal("a memif connection was probed")
	default:
	}
}
