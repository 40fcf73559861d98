package manager

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestProbeKeepsLoadedForwarder: a probe whose dial runs out of time before
// the forwarder's socket answers (what a loaded node does to a 200ms probe)
// neither hides the forwarder from selection nor drops it, nor a local
// endpoint; a forwarder whose socket is gone is still dropped after two
// probes.
func TestProbeKeepsLoadedForwarder(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fwd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &Manager{
		ctx: ctx, log: slog.New(slog.DiscardHandler),
		conns: map[string]*connection{},
		endpoints: map[string]*localEndpoint{"nse": {
			url: "unix://" + sock, expires: time.Now().Add(time.Hour),
		}},
		forwarders: map[string]*localForwarder{"fwd": {
			name: "fwd", url: "unix://" + sock, expires: time.Now().Add(time.Hour), labels: map[string]string{"p2p": "true"},
		}},
		// A deadline that has passed before the dial starts: the dial
		// fails with a timeout although the listener is there.
		probeEvery: time.Nanosecond,
	}
	sel := map[string]string{"p2p": "true"}
	for i := range 2 {
		if suspect := m.probe(ctx); suspect {
			t.Fatalf("probe %d: a slow dial made the live forwarder a suspect", i)
		}
		if got := m.forwardersMatching(sel); len(got) != 1 {
			t.Fatalf("probe %d: %d forwarders selectable, want the live one", i, len(got))
		}
		if ep := m.localEndpoint("nse"); ep == nil || ep.failures != 0 {
			t.Fatalf("probe %d: live endpoint dropped or suspect: %+v", i, ep)
		}
	}
	delete(m.endpoints, "nse") // dropping one unregisters it: not this test's business

	// Its process is gone: the socket file with it.
	l.Close()
	m.probeEvery = 5 * time.Second
	if suspect := m.probe(ctx); !suspect || len(m.forwardersMatching(sel)) != 0 {
		t.Fatalf("first probe of a closed socket: suspect %v, selectable %d", suspect, len(m.forwardersMatching(sel)))
	}
	m.probe(ctx)
	if m.forwarderByName("fwd") != nil {
		t.Fatal("a forwarder whose socket is gone was kept after two probes")
	}
}
