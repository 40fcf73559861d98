package grpcutil_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
)

// A peer that restarts on the same socket is reported once it serves
// again; a connection that never dropped is not.
func TestReconnected(t *testing.T) {
	srcs := grpcutil.TestSources(t, "manager", "forwarder")
	server, client := srcs[0], srcs[1]
	addr := "unix://" + filepath.Join(t.TempDir(), "m.sock")
	serve := func() func() {
		l, err := grpcutil.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		gs := grpcutil.NewServer(server, identity.AuthorizeTrustDomain(server), slog.New(slog.DiscardHandler))
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go gs.Serve(l)
		return gs.Stop
	}
	stop := serve()
	cc, err := grpcutil.DialPeer(addr, client, identity.AuthorizeTrustDomain(client))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	back := cc.Reconnected(ctx)
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-back:
		t.Fatal("reported a reconnection before the peer went away")
	case <-time.After(200 * time.Millisecond):
	}
	stop()
	time.Sleep(100 * time.Millisecond)
	defer serve()()
	select {
	case <-back:
	case <-ctx.Done():
		t.Fatal("the peer serves again, but no reconnection was reported")
	}
}
