package grpcutil

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vwire/vwire/internal/identity"
)

// TestRetryKeepsWaitingCalls: a call waiting for a channel that is down
// (wait for ready) is still waiting, and then answered by the peer, after
// Retry replaced that channel. Closing the old channel at once failed it
// with "the client connection is closing" (Canceled), which a manager took
// for its next hop's answer and reselected for.
func TestRetryKeepsWaitingCalls(t *testing.T) {
	srcs := testSources(t, "forwarder", "manager")
	server, client := srcs[0], srcs[1]
	addr := "unix://" + filepath.Join(t.TempDir(), "f.sock")
	c, err := DialPeer(addr, client, identity.AuthorizeTrustDomain(client))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		done <- err
	}()
	old := c.current()
	for st := old.GetState(); st != connectivity.TransientFailure; st = old.GetState() {
		if !old.WaitForStateChange(ctx, st) {
			t.Fatal("the channel to a socket nobody serves never failed")
		}
	}
	for {
		c.mu.Lock()
		c.ch.mu.Lock()
		waiting := c.ch.calls
		c.ch.mu.Unlock()
		c.mu.Unlock()
		if waiting == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	c.Retry()
	if c.current() == old {
		t.Fatal("Retry kept a channel in TRANSIENT_FAILURE")
	}
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := NewServer(server, identity.AuthorizeTrustDomain(server), slog.New(slog.DiscardHandler))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(l)
	defer gs.Stop()
	if err := <-done; err != nil {
		t.Fatalf("the call waiting on the replaced channel: %v", err)
	}
	// The replaced channel is closed once that call has returned.
	for st := old.GetState(); st != connectivity.Shutdown; st = old.GetState() {
		if !old.WaitForStateChange(ctx, st) {
			t.Fatal("the replaced channel was never closed")
		}
	}
}

// testSources returns an identity for each name, from a new development CA.
func testSources(t testing.TB, names ...string) []identity.Source {
	t.Helper()
	ca, err := identity.OpenCA(t.TempDir(), "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	var out []identity.Source
	for _, name := range names {
		id, _ := ca.ComponentID(name)
		s, err := identity.NewCASource(ca, id, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}
