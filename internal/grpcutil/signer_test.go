package grpcutil_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
)

// rotating is a Source whose SVID the test replaces, as a rotation would.
type rotating struct {
	identity.Source
	cur atomic.Pointer[x509svid.SVID]
}

func (r *rotating) GetX509SVID() (*x509svid.SVID, error) { return r.cur.Load(), nil }

// A token signed just before the SVID rotated reaches the next hop on the
// connection that presented the certificate it was signed with, so the
// next hop can verify it; calls after the rotation use a connection that
// presents the new certificate.
func TestCallGoesWhereItsSignerWasPresented(t *testing.T) {
	ca, err := identity.OpenCA(t.TempDir(), "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	source := func(name string) identity.Source {
		id, _ := ca.ComponentID(name)
		s, err := identity.NewCASource(ca, id, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	server, a, b := source("manager"), source("forwarder"), source("forwarder")
	svidA, _ := a.GetX509SVID()
	svidB, _ := b.GetX509SVID()
	client := &rotating{Source: a}
	client.cur.Store(svidA)

	var mu sync.Mutex
	var seen *x509.Certificate // the client certificate of the last call
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		cert, err := token.PeerCert(ctx)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		seen = cert
		mu.Unlock()
		return h(ctx, req)
	}
	addr := "unix://" + filepath.Join(t.TempDir(), "m.sock")
	l, err := grpcutil.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(server, identity.AuthorizeTrustDomain(server), slog.New(slog.DiscardHandler), grpc.ChainUnaryInterceptor(record))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(l)
	defer gs.Stop()
	cc, err := grpcutil.DialPeer(addr, client, identity.AuthorizeTrustDomain(client))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aud, err := cc.PeerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(svid *x509svid.SVID) context.Context {
		ctx, err := token.Stamp(ctx, &networkservice.PathSegment{}, svid, aud, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return ctx
	}
	call := func(ctx context.Context, want *x509svid.SVID, what string) {
		t.Helper()
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen.Equal(want.Certificates[0]) {
			t.Fatalf("%s: the server saw the other certificate", what)
		}
	}

	call(signed(svidA), svidA, "before the rotation")
	client.cur.Store(svidB)
	call(signed(svidA), svidA, "signed before the rotation, sent after")
	call(ctx, svidB, "a call without a token after the rotation")
	call(signed(svidB), svidB, "signed after the rotation")
	call(signed(svidA), svidA, "signed before the rotation, sent after the redial")
}
