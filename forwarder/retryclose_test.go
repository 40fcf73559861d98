package forwarder_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/test/sandbox"
)

// signalHandler closes seen at the first record whose message is msg.
type signalHandler struct {
	msg  string
	once *sync.Once
	seen chan struct{}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// TestRetryWaitsForTheFailedTrysClose: a Request whose Connect fails here
// after the next hop built its part closes that part (closeNextAsync, not
// waited for). The caller's retry has the same connection ids at every
// hop; it must not reach the next hop before that Close does, or the
// Close takes down the retry's vWire there while this node keeps its own
// (remote WireGuard vWires on VPP with no far side after Connects gave up
// in the admission queue). node2's manager holds the Close of the failed
// try back until the retry has either reached it (the fault) or waits for
// that Close at node1's forwarder (the fix).
func TestRetryWaitsForTheFailedTrysClose(t *testing.T) {
	waiting := make(chan struct{})
	var armed, retrying atomic.Bool // the failed try's Close, the retry's Request
	closeHeld, release, closeDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	retryAtNext := make(chan struct{})
	var mu sync.Mutex
	var order []string // node2 manager's calls from forwarder-node1, as they start
	fromForwarder1 := func(req any) bool {
		var c *networkservice.Connection
		switch r := req.(type) {
		case *networkservice.NetworkServiceRequest:
			c = r.GetConnection()
		case *networkservice.Connection:
			c = r
		}
		segs, i := c.GetPath().GetPathSegments(), int(c.GetPath().GetIndex())
		return i < len(segs) && segs[i].GetName() == "forwarder-node1"
	}
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !fromForwarder1(req) {
			return handler(ctx, req)
		}
		if strings.HasSuffix(info.FullMethod, "/Close") && armed.CompareAndSwap(true, false) {
			close(closeHeld)
			<-release
			mu.Lock()
			order = append(order, "close")
			mu.Unlock()
			defer close(closeDone)
			return handler(ctx, req)
		}
		if strings.HasSuffix(info.FullMethod, "/Request") && retrying.CompareAndSwap(true, false) {
			mu.Lock()
			order = append(order, "request")
			mu.Unlock()
			close(retryAtNext)
		}
		return handler(ctx, req)
	}
	log := slog.New(signalHandler{msg: "waiting for the Close of an earlier try at the next hop", once: &sync.Once{}, seen: waiting})
	n1, n2, client, req := remoteFailingOnce(t, sandbox.Options{Logger: log, ManagerInterceptor: intercept})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	armed.Store(true)
	if _, err := client.Request(ctx, proto.Clone(req).(*networkservice.NetworkServiceRequest)); err == nil {
		t.Fatal("the first try succeeded; its Connect should have failed")
	}
	if len(n2.Dataplane.Live()) != 1 {
		t.Fatalf("node2 has %d vWires before the failed try's Close, want its one", len(n2.Dataplane.Live()))
	}
	select {
	case <-closeHeld:
	case <-ctx.Done():
		t.Fatal("the failed try's part at node2 was never closed")
	}
	type result struct {
		conn *networkservice.Connection
		err  error
	}
	retried := make(chan result, 1)
	retrying.Store(true)
	go func() {
		c, err := client.Request(ctx, proto.Clone(req).(*networkservice.NetworkServiceRequest))
		retried <- result{c, err}
	}()
	var r result
	select {
	case <-retryAtNext:
		// The fault: let the retry finish first, then the held Close.
		t.Error("the retry reached node2 before the failed try's Close")
		r = <-retried
		close(release)
	case <-waiting:
		close(release)
		r = <-retried
	case <-ctx.Done():
		t.Fatal("the retry neither reached node2 nor waited for the failed try's Close")
	}
	if r.err != nil {
		t.Fatalf("retry: %v", r.err)
	}
	<-closeDone
	mu.Lock()
	got := strings.Join(order, ",")
	mu.Unlock()
	if got != "close,request" {
		t.Errorf("node2's manager served %s from forwarder-node1, want close,request", got)
	}
	if live := n2.Dataplane.Live(); len(live) != 1 {
		t.Errorf("node2 has %d vWires after the retry, want the retry's one", len(live))
	}
	if live := n1.Dataplane.Live(); len(live) != 1 {
		t.Errorf("node1 has %d vWires after the retry, want the retry's one", len(live))
	}
}

// remoteFailingOnce is a two-node sandbox made with opts (Nodes set
// here), an icmp-responder on node2, node1's first dataplane Connect
// failing (as one that gave up waiting for VPP), and a client on node1
// with the Request that reaches the responder.
func remoteFailingOnce(t *testing.T, opts sandbox.Options) (n1, n2 *sandbox.Node, client *sandbox.Client, req *networkservice.NetworkServiceRequest) {
	t.Helper()
	opts.Nodes = 2
	sb := sandbox.New(t, opts)
	n1, n2 = sb.Nodes[0], sb.Nodes[1]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n2.ServeICMPResponder("icmp-remote", nil, "icmp")
	var failed atomic.Bool
	n1.Dataplane.FailConnect = func(string) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("gave up waiting for VPP")
		}
		return nil
	}
	req = &networkservice.NetworkServiceRequest{
		Connection: &networkservice.Connection{Id: "c1", NetworkService: "icmp",
			Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{{Name: "nsc", Id: "c1"}}}},
		MechanismPreferences: []*networkservice.Mechanism{{Cls: "LOCAL", Type: "KERNEL",
			Parameters: map[string]string{"name": "nsm-1", "inodeURL": "file:///proc/self/ns/net"}}},
	}
	return n1, n2, n1.Client("nsc"), req
}
