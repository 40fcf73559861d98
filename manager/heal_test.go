package manager_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/manager"
	"github.com/vwire/vwire/test/sandbox"
)

// events collects a MonitorConnections stream in the background.
type events struct {
	mu  sync.Mutex
	got []string // "TYPE/STATE/endpoint"
}

func watch(t *testing.T, cli *sandbox.Client) *events {
	t.Helper()
	s, err := cli.MonitorConnections(ctxT(t), &networkservice.MonitorScopeSelector{})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	go func() {
		for {
			e, err := s.Recv()
			if err != nil {
				return
			}
			for _, c := range e.GetConnections() {
				ev.mu.Lock()
				ev.got = append(ev.got, e.GetType().String()+"/"+c.GetState().String()+"/"+c.GetNetworkServiceEndpointName())
				ev.mu.Unlock()
			}
		}
	}()
	return ev
}

func (e *events) has(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, g := range e.got {
		if g == s {
			return true
		}
	}
	return false
}

// TestHealEndpointLoss: when an endpoint's process goes away, its manager
// moves the connection to another endpoint without waiting for the client,
// and the client sees it DOWN, then UP on the new endpoint.
func TestHealEndpointLoss(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1, Logger: testLog(t)})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	eps := map[string]*sandbox.Endpoint{
		"icmp-a": n.ServeICMPResponder("icmp-a", nil, "icmp"),
		"icmp-b": n.ServeICMPResponder("icmp-b", nil, "icmp"),
	}
	cli := n.Client("nsc")
	ev := watch(t, cli)
	conn, err := cli.Request(ctxT(t), request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	first := conn.GetNetworkServiceEndpointName()
	other := map[string]string{"icmp-a": "icmp-b", "icmp-b": "icmp-a"}[first]
	eps[first].Stop()
	waitFor(t, "the connection to move to "+other, func() bool {
		cs := n.Manager.Connections()
		return len(cs) == 1 && cs[0].GetNetworkServiceEndpointName() == other && cs[0].GetState() == networkservice.State_UP
	})
	waitFor(t, "DOWN then UP events", func() bool {
		return ev.has("UPDATE/DOWN/"+first) && ev.has("UPDATE/UP/"+other)
	})
	if live := n.Dataplane.Live(); len(live) != 1 {
		t.Fatalf("%d vWires after heal", len(live))
	}
	// The client refreshes with what it last got, the old endpoint's
	// addresses among it: the reply carries only the new endpoint's.
	healed := n.Manager.Connections()[0].GetContext().GetIpContext()
	req := request("icmp", nil)
	req.Connection = conn.Clone()
	reply, err := cli.Request(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := reply.GetContext().GetIpContext(); len(healed.GetSrcIpAddrs()) != 1 || !slices.Equal(got.GetSrcIpAddrs(), healed.GetSrcIpAddrs()) ||
		!slices.Equal(got.GetDstIpAddrs(), healed.GetDstIpAddrs()) {
		t.Fatalf("after the client's refresh: %v -> %v; want what the heal made, %v -> %v",
			got.GetSrcIpAddrs(), got.GetDstIpAddrs(), healed.GetSrcIpAddrs(), healed.GetDstIpAddrs())
	}
	if reply.GetNetworkServiceEndpointName() != other {
		t.Fatalf("after the client's refresh: endpoint %s, want %s", reply.GetNetworkServiceEndpointName(), other)
	}
}

// TestHealNoticedBySocket: with probes an hour apart, a local endpoint that
// stops serving is still replaced: its socket watch (sockwatch.go) notices.
func TestHealNoticedBySocket(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1, ProbeInterval: time.Hour, Logger: testLog(t)})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	eps := map[string]*sandbox.Endpoint{
		"icmp-a": n.ServeICMPResponder("icmp-a", nil, "icmp"),
		"icmp-b": n.ServeICMPResponder("icmp-b", nil, "icmp"),
	}
	cli := n.Client("nsc")
	conn, err := cli.Request(ctxT(t), request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	first := conn.GetNetworkServiceEndpointName()
	other := map[string]string{"icmp-a": "icmp-b", "icmp-b": "icmp-a"}[first]
	eps[first].Stop()
	waitFor(t, "the connection to move to "+other+" without a periodic probe", func() bool {
		cs := n.Manager.Connections()
		return len(cs) == 1 && cs[0].GetNetworkServiceEndpointName() == other && cs[0].GetState() == networkservice.State_UP
	})
}

// TestHealForwarderRestart: a forwarder that dies and comes back gets the
// connections it carried back from its manager, before any client refresh.
func TestHealForwarderRestart(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1, Logger: testLog(t)})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-a", nil, "icmp")
	cli := n.Client("nsc")
	ev := watch(t, cli)
	if _, err := cli.Request(ctxT(t), request("icmp", nil)); err != nil {
		t.Fatal(err)
	}
	n.StopForwarder()
	waitFor(t, "the connection to be reported DOWN", func() bool { return ev.has("UPDATE/DOWN/icmp-a") })
	n.StartForwarder()
	waitFor(t, "the new forwarder to carry the connection", func() bool { return len(n.Forwarder.Connections()) == 1 })
	waitFor(t, "the connection back UP", func() bool {
		cs := n.Manager.Connections()
		return len(cs) == 1 && cs[0].GetState() == networkservice.State_UP
	})
}

// supplier is an endpoint that, on a Request, starts an endpoint on the
// client's node and tells the manager to look again.
type supplier struct {
	networkservice.UnimplementedNetworkServiceServer
	start func()
	once  sync.Once
}

func (s *supplier) Request(context.Context, *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	s.once.Do(s.start)
	return nil, status.Error(codes.Unavailable, manager.SupplierStarting+" an endpoint on this node")
}

func (s *supplier) Close(context.Context, *networkservice.Connection) (*empty.Empty, error) {
	return &empty.Empty{}, nil
}

// TestScaleFromZero: the client's node has no endpoint; the supplier
// starts one and the same Request lands on it.
func TestScaleFromZero(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1, Logger: testLog(t)})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "local-vl3", Matches: []*regapi.Match{
		{Fallthrough: true, Routes: []*regapi.Destination{{DestinationSelector: map[string]string{"nodeName": "{{ .nodeName }}"}}}},
		{Routes: []*regapi.Destination{{DestinationSelector: map[string]string{"supplier": "true"}}}},
	}})
	s := &supplier{start: func() {
		go n.ServeICMPResponder("vl3-"+n.Name, map[string]string{"nodeName": n.Name}, "local-vl3")
	}}
	n.ServeEndpoint("supplier", s, map[string]string{"supplier": "true"}, "local-vl3")
	conn, err := n.Client("nsc").Request(ctxT(t), request("local-vl3", nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.GetNetworkServiceEndpointName(); got != "vl3-node1" {
		t.Fatalf("landed on %s, want the endpoint the supplier started", got)
	}
}

var _ = time.Second

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("VWIRE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
