package grpcutil_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
)

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
// subchannels (a one-millisecond idle timeout, and Retry's new channels). grpc-go's
// ResetConnectBackoff walks the channel's subchannel map outside its lock,
// so calling it here killed the process with "concurrent map iteration and
// map write", with or without the race detector; Reset must never race
// with the channel's own bookkeeping. Nor may it close a channel under the
// calls waiting on it: they would fail with "the client connection is
// closing" (Canceled), which a manager took for its next hop's answer.
func TestPoolResetWhileConnectionsChurn(t *testing.T) {
	srcs := grpcutil.TestSources(t, "forwarder", "manager")
	server, client := srcs[0], srcs[1]
	addr := "unix://" + filepath.Join(t.TempDir(), "f.sock")
	pool := grpcutil.NewPool(client, identity.AuthorizeTrustDomain(client), grpc.WithIdleTimeout(time.Millisecond))
	defer pool.Close()

	var mu sync.Mutex // guards stop
	stop := healthServer(t, server, addr)
	defer func() { mu.Lock(); stop(); mu.Unlock() }()

	const rounds = 500
	var wg sync.WaitGroup
	check := func(opts ...grpc.CallOption) error {
		cc, err := pool.Get(addr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
		return err
	}
	errs := make(chan error, 1)
	for i := range 4 {
		wg.Add(2)
		go func() { // callers; half of them wait for the channel to be ready
			defer wg.Done()
			for range rounds {
				err := check(grpc.WaitForReady(i%2 == 0))
				// The peer restarts meanwhile: Unavailable is expected.
				if c := status.Code(err); c == codes.Canceled {
					select {
					case errs <- err:
					default:
					}
				}
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
	go func() { // the peer goes away for a while, ten times
		defer wg.Done()
		for range 10 {
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			stop()
			time.Sleep(30 * time.Millisecond)
			stop = healthServer(t, server, addr)
			mu.Unlock()
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		t.Errorf("a call failed because the pool closed its channel under it: %v", err)
	default:
	}

	// After the storm the next hop is reachable through the same pool.
	pool.Reset(addr)
	if err := check(); err != nil {
		t.Fatalf("after the churn the pool cannot reach the peer: %v", err)
	}
}
