package forwarder_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/test/sandbox"
)

// TestStaleCloseAfterRetryIgnored: the Close of a failed try can reach
// the next hop's forwarder after the retry rebuilt the connection there:
// node1 gives up waiting for it (closeNextTimeout) and retries, node2's
// manager answers it once its own call gave up, while node2's forwarder
// has yet to serve it (under load: behind a Request, for the lock). Held
// back here at node2's forwarder until the retry has been built there,
// it must not take the retry's vWire down (the soak on VPP: remote
// WireGuard vWires whose far side was gone while both forwarders' last
// builds agreed).
func TestStaleCloseAfterRetryIgnored(t *testing.T) {
	var armed atomic.Bool
	held, release, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		c, ok := req.(*networkservice.Connection)
		if !ok || !strings.HasSuffix(info.FullMethod, "/Close") || !strings.Contains(c.GetPath().GetPathSegments()[c.GetPath().GetIndex()].GetName(), "manager-node2") || !armed.CompareAndSwap(true, false) {
			return handler(ctx, req)
		}
		close(held)
		<-release
		defer close(closed)
		// Its caller gave up long ago: served on a context of its own, as
		// a handler that outlives a cancelled call is.
		return handler(context.WithoutCancel(ctx), req)
	}
	n1, n2, client, req := remoteFailingOnce(t, sandbox.Options{ForwarderInterceptor: intercept})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	armed.Store(true)
	if _, err := client.Request(ctx, proto.Clone(req).(*networkservice.NetworkServiceRequest)); err == nil {
		t.Fatal("the first try succeeded; its Connect should have failed")
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the failed try's Close never reached node2's forwarder")
	}
	first := n2.Dataplane.Live()
	if len(first) != 1 {
		t.Fatalf("node2 has %d vWires before the retry, want the failed try's", len(first))
	}
	// The retry goes on once node1 has given up on that Close (node2's
	// manager holds the connection's lock until its call here gives up).
	// It offers its side anew, as a WireGuard retry offers a new key (the
	// failed try's Disconnect freed the old one): here another address.
	n1.Dataplane.TunnelIP = "127.0.0.2"
	if _, err := client.Request(ctx, proto.Clone(req).(*networkservice.NetworkServiceRequest)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	retried := n2.Dataplane.Live()
	if len(retried) != 1 {
		t.Fatalf("node2 has %d vWires after the retry, want its one", len(retried))
	}
	for id, v := range retried {
		if proto.Equal(v.In.GetMechanism(), first[id].In.GetMechanism()) {
			t.Fatalf("the retry kept the failed try's mechanism %v: the test needs one offered anew", v.In.GetMechanism())
		}
	}
	close(release)
	<-closed
	if live := n2.Dataplane.Live(); len(live) != 1 {
		t.Errorf("node2 has %d vWires after the failed try's late Close, want the retry's one", len(live))
	}
	if live := n1.Dataplane.Live(); len(live) != 1 {
		t.Errorf("node1 has %d vWires after the retry, want the retry's one", len(live))
	}
}
