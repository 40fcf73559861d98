package vpp

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/mock"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/core"
)

// asyncVPP is the fake VPP answering from a goroutine of its own, as
// govpp's socket adapter hands on VPP's replies from its reader: the caller
// of SendMsg does not wait for them, so a dump's details arrive whether or
// not the dump's reader is ready (the fake alone answers inside SendMsg).
type asyncVPP struct {
	*fakeVPP
	queue chan func()
	done  chan struct{}
}

func newAsyncVPP(t *testing.T, f *fakeVPP) *asyncVPP {
	a := &asyncVPP{fakeVPP: f, queue: make(chan func(), 1024), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for send := range a.queue {
			send()
		}
	}()
	t.Cleanup(func() { close(a.queue); <-a.done })
	return a
}

func (a *asyncVPP) SendMsg(clientID uint32, data []byte) error {
	data = bytes.Clone(data)
	a.queue <- func() { _ = a.fakeVPP.SendMsg(clientID, data) }
	return nil
}

// TestDumpWaitsForLateReader: a listing longer than govpp's reply buffer
// (100) whose reader is not scheduled for a while (a loaded host) comes back
// whole. With govpp's default (a reply dropped when its reader is not ready
// within 100 ms) it came back short, with no error, or not at all (its
// control_ping_reply dropped too); the soak on VPP logged such a drop.
func TestDumpWaitsForLateReader(t *testing.T) {
	f := newFakeVPP()
	const n = 300
	for i := uint32(1); i <= n; i++ {
		f.ifaces[i] = &fakeIface{idx: i, name: fmt.Sprintf("loop%d", i), kind: "loopback", tag: fmt.Sprintf("vwire/in/%d", i)}
	}
	conn, err := core.Connect(newAsyncVPP(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Disconnect()
	c := NewClient(conn, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var once sync.Once
	got := 0
	err = dump(ctx, c, &interfaces.SwInterfaceDump{SwIfIndex: NoInterface.api()}, func(*interfaces.SwInterfaceDetails) {
		// The reader is late once, long past govpp's default 100 ms,
		// while the rest of the listing arrives.
		once.Do(func() { time.Sleep(500 * time.Millisecond) })
		got++
	})
	if err != nil {
		t.Fatalf("dump: %v (%d of %d interfaces read)", err, got, n+1)
	}
	if got != n+1 { // and local0
		t.Fatalf("dump read %d interfaces, VPP has %d", got, n+1)
	}
}

// unmappedStats is the mock stats segment, counting reads after Disconnect
// (which, on a real segment, unmaps it: such a read faults).
type unmappedStats struct {
	*mock.StatsAdapter
	gone      atomic.Bool
	readAfter atomic.Int32
}

func (s *unmappedStats) Disconnect() error { s.gone.Store(true); return s.StatsAdapter.Disconnect() }

func (s *unmappedStats) read() {
	if s.gone.Load() {
		s.readAfter.Add(1)
	}
}

func (s *unmappedStats) ListStats(p ...string) ([]adapter.StatIdentifier, error) {
	s.read()
	return s.StatsAdapter.ListStats(p...)
}

func (s *unmappedStats) DumpStats(p ...string) ([]adapter.StatEntry, error) {
	s.read()
	return s.StatsAdapter.DumpStats(p...)
}

func (s *unmappedStats) PrepareDir(p ...string) (*adapter.StatDir, error) {
	s.read()
	return s.StatsAdapter.PrepareDir(p...)
}

func (s *unmappedStats) PrepareDirOnIndex(i ...uint32) (*adapter.StatDir, error) {
	s.read()
	return s.StatsAdapter.PrepareDirOnIndex(i...)
}

func (s *unmappedStats) UpdateDir(d *adapter.StatDir) error {
	s.read()
	return s.StatsAdapter.UpdateDir(d)
}

// TestMetricsAfterCloseReadNoStats: once the dataplane is closed (its
// stats segment unmapped), a vWire's metrics (a scrape during shutdown)
// read nothing from the segment. Before, a scrape then faulted the
// forwarder in the soak on VPP.
func TestMetricsAfterCloseReadNoStats(t *testing.T) {
	st := &unmappedStats{StatsAdapter: mock.NewStatsAdapter()}
	st.MockDir(&adapter.StatDir{})
	n := newTestNode(t, "192.0.2.1", func(c *Config) { c.StatsAdapter = st })
	if err := n.dp.Connect(context.Background(), "c", conn(kernelMech(nsClient, "nsm-c"), ""), conn(kernelMech(nsServer, "nsm-e"), "")); err != nil {
		t.Fatal(err)
	}
	n.dp.Metrics("c")
	n.dp.Close()
	n.dp.Metrics("c")
	if r := st.readAfter.Load(); r > 0 {
		t.Fatalf("%d reads of the stats segment after it was unmapped", r)
	}
}
