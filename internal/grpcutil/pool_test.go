package grpcutil_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
)

func testSources(t *testing.T, names ...string) []identity.Source {
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

// healthServer serves the gRPC health service on addr until the returned
// stop is called.
func healthServer(t *testing.T, src identity.Source, addr string) (stop func()) {
	t.Helper()
	l, err := grpcutil.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(src, identity.AuthorizeTrustDomain(src), slog.New(slog.DiscardHandler))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(l) }()
	return func() { gs.Stop(); <-done }
}

// TestPoolResetWhileConnectionsChurn is the manager's heal path at its
// busiest: many callers reset the connection to a next hop while calls
// run on it, the peer restarts, and the channel keeps making and dropping
// subchannels (a one-millisecond idle timeout, and Forget). grpc-go's
// ResetConnectBackoff walks the channel's subchannel map outside its lock,
// so calling it here killed the process with "concurrent map iteration and
// map write", with or without the race detector; Reset must never race
// with the channel's own bookkeeping.
func TestPoolResetWhileConnectionsChurn(t *testing.T) {
	srcs := testSources(t, "forwarder", "manager")
	server, client := srcs[0], srcs[1]
	addr := "unix://" + filepath.Join(t.TempDir(), "f.sock")
	pool := grpcutil.NewPool(client, identity.AuthorizeTrustDomain(client), grpc.WithIdleTimeout(time.Millisecond))
	defer pool.Close()

	var mu sync.Mutex // guards stop
	stop := healthServer(t, server, addr)
	defer func() { mu.Lock(); stop(); mu.Unlock() }()

	const rounds = 500
	var wg sync.WaitGroup
	check := func() error {
		cc, err := pool.Get(addr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	for range 4 {
		wg.Add(2)
		go func() { // callers
			defer wg.Done()
			for range rounds {
				_ = check() // the peer restarts meanwhile: failures are expected
			}
		}()
		go func() { // heals
			defer wg.Done()
			for range rounds * 10 {
				pool.Reset(addr)
			}
		}()
	}
	wg.Add(1)
	go func() { // the peer restarts, and the pool forgets it now and then
		defer wg.Done()
		for i := range 20 {
			time.Sleep(5 * time.Millisecond)
			if i%2 == 0 {
				pool.Forget(addr)
				continue
			}
			mu.Lock()
			stop()
			stop = healthServer(t, server, addr)
			mu.Unlock()
		}
	}()
	wg.Wait()

	// After the storm the next hop is reachable through the same pool.
	pool.Reset(addr)
	if err := check(); err != nil {
		t.Fatalf("after the churn the pool cannot reach the peer: %v", err)
	}
}
