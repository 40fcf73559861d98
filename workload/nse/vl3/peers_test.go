package vl3

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeMesh stands for the manager and the peer endpoints behind it: each
// Request pinned to a peer is answered by that peer's Service.
type fakeMesh struct {
	mu      sync.Mutex
	peers   map[string]*Service
	refuse  map[string]int    // Requests to refuse per peer before answering
	live    map[string]string // connection id -> peer
	calls   []string
	doubled int // new vWires requested while one to the same peer was live
	updates chan *regapi.NetworkServiceEndpointResponse
	names   []string // what a list answers
}

func newFakeMesh(t *testing.T, subnets map[string]string) *fakeMesh {
	f := &fakeMesh{peers: map[string]*Service{}, refuse: map[string]int{}, live: map[string]string{},
		updates: make(chan *regapi.NetworkServiceEndpointResponse, 16)}
	for name, subnet := range subnets {
		s, err := New(Config{Prefix: "172.16.0.0/16", Subnet: subnet, PeerService: "vl3-peers"})
		if err != nil {
			t.Fatal(err)
		}
		f.peers[name] = s
		f.names = append(f.names, name)
	}
	return f
}

func (f *fakeMesh) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	conn := req.GetConnection().Clone()
	peer := conn.GetNetworkServiceEndpointName()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "request "+peer+" "+conn.GetId())
	if f.refuse[peer] > 0 {
		f.refuse[peer]--
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	svc := f.peers[peer]
	if svc == nil {
		return nil, status.Errorf(codes.NotFound, "no endpoint %s", peer)
	}
	if conn.GetNetworkService() != "vl3-peers" {
		return nil, status.Errorf(codes.InvalidArgument, "service %s", conn.GetNetworkService())
	}
	if _, refresh := f.live[conn.GetId()]; !refresh {
		for _, p := range f.live {
			if p == peer {
				f.doubled++
			}
		}
	}
	conn.Mechanism = req.GetMechanismPreferences()[0]
	if len(conn.Path.PathSegments) == 1 {
		conn.Path.PathSegments = append(conn.Path.PathSegments, &networkservice.PathSegment{Name: peer, Id: conn.GetId() + "-nse"})
	}
	conn.Path.PathSegments[1].Expires = conn.Path.PathSegments[0].GetExpires()
	if err := svc.Request(ctx, conn); err != nil {
		return nil, err
	}
	f.live[conn.GetId()] = peer
	conn.Path.Index = 0
	return conn, nil
}

func (f *fakeMesh) Close(ctx context.Context, conn *networkservice.Connection) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	peer := f.live[conn.GetId()]
	f.calls = append(f.calls, "close "+peer+" "+conn.GetId())
	delete(f.live, conn.GetId())
	if svc := f.peers[peer]; svc != nil {
		return svc.Close(ctx, conn)
	}
	return nil
}

// liveTo are the live connections to peer.
func (f *fakeMesh) liveTo(peer string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.live {
		if p == peer {
			n++
		}
	}
	return n
}

func (f *fakeMesh) requestsTo(peer string) int { return f.count("request", peer) }

func (f *fakeMesh) closesOf(peer string) int { return f.count("close", peer) }

func (f *fakeMesh) count(what, peer string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		var verb, p, id string
		fmt.Sscan(c, &verb, &p, &id)
		if verb == what && p == peer {
			n++
		}
	}
	return n
}

// Registry: a list answers the names; a watch sends what the test puts
// on updates.
func (f *fakeMesh) Register(context.Context, *regapi.NetworkServiceEndpoint, ...grpc.CallOption) (*regapi.NetworkServiceEndpoint, error) {
	return nil, status.Error(codes.Unimplemented, "")
}

func (f *fakeMesh) Unregister(context.Context, *regapi.NetworkServiceEndpoint, ...grpc.CallOption) (*emptypb.Empty, error) {
	return nil, status.Error(codes.Unimplemented, "")
}

func (f *fakeMesh) Find(ctx context.Context, q *regapi.NetworkServiceEndpointQuery, _ ...grpc.CallOption) (regapi.NetworkServiceEndpointRegistry_FindClient, error) {
	if !slices.Equal(q.GetNetworkServiceEndpoint().GetNetworkServiceNames(), []string{"vl3-peers"}) {
		return nil, status.Errorf(codes.InvalidArgument, "query %v", q)
	}
	s := &findStream{ctx: ctx}
	if !q.GetWatch() {
		f.mu.Lock()
		for _, n := range f.names {
			s.list = append(s.list, &regapi.NetworkServiceEndpointResponse{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: n}})
		}
		f.mu.Unlock()
		return s, nil
	}
	s.updates = f.updates
	return s, nil
}

type findStream struct {
	grpc.ClientStream
	ctx     context.Context
	list    []*regapi.NetworkServiceEndpointResponse
	updates chan *regapi.NetworkServiceEndpointResponse
}

func (s *findStream) Recv() (*regapi.NetworkServiceEndpointResponse, error) {
	if s.updates == nil {
		if len(s.list) == 0 {
			return nil, io.EOF
		}
		r := s.list[0]
		s.list = s.list[1:]
		return r, nil
	}
	select {
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	case r := <-s.updates:
		if r == nil {
			return nil, status.Error(codes.Unavailable, "the watch broke")
		}
		return r, nil
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Peers asks only the peers that sort after it, refreshes, closes a peer
// the registry deletes, connects again when it comes back, retries a
// refused request, and closes everything when stopped.
func TestPeers(t *testing.T) {
	f := newFakeMesh(t, map[string]string{
		"vl3-a": "172.16.1.0/24", "vl3-c": "172.16.3.0/24", "vl3-d": "172.16.4.0/24",
	})
	f.names = append(f.names, "vl3-b")
	f.refuse["vl3-d"] = 2
	me, err := New(Config{Prefix: "172.16.0.0/16", Subnet: "172.16.2.0/24", PeerService: "vl3-peers"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPeers(me, PeersConfig{Name: "vl3-b", Manager: f, Registry: f, Lifetime: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()

	eventually(t, "vWires to vl3-c and vl3-d", func() bool { return f.liveTo("vl3-c") == 1 && f.liveTo("vl3-d") == 1 })
	got := p.Connected()
	if len(got) != 2 || got[0].Peer != "vl3-c" || got[0].Subnet.String() != "172.16.3.0/24" || got[1].Peer != "vl3-d" {
		t.Fatalf("connected %+v", got)
	}
	if n := f.requestsTo("vl3-a"); n != 0 {
		t.Errorf("%d requests to vl3-a, which sorts first and asks us", n)
	}
	if n := f.requestsTo("vl3-b"); n != 0 {
		t.Errorf("%d requests to itself", n)
	}
	// The far end recorded the route back to us.
	if r := f.peers["vl3-c"].Routes(); len(r) != 1 || r[0].Peer != "vl3-b" || r[0].Subnet.String() != "172.16.2.0/24" {
		t.Errorf("vl3-c's routes %+v", r)
	}
	// Refreshes keep the same vWire.
	before := f.requestsTo("vl3-c")
	eventually(t, "refreshes", func() bool { return f.requestsTo("vl3-c") >= before+2 })
	if n := f.liveTo("vl3-c"); n != 1 {
		t.Fatalf("%d vWires to vl3-c after refreshes", n)
	}

	// vl3-c leaves the registry: its vWire and route go.
	f.updates <- &regapi.NetworkServiceEndpointResponse{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: "vl3-c"}, Deleted: true}
	eventually(t, "vl3-c closed", func() bool { return f.liveTo("vl3-c") == 0 })
	eventually(t, "vl3-c's route gone", func() bool { return len(p.Connected()) == 1 })
	if r := f.peers["vl3-c"].Routes(); len(r) != 0 {
		t.Errorf("vl3-c still routes %+v", r)
	}
	// It comes back.
	f.updates <- &regapi.NetworkServiceEndpointResponse{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: "vl3-c"}}
	eventually(t, "vl3-c again", func() bool { return f.liveTo("vl3-c") == 1 && len(p.Connected()) == 2 })
	// It leaves and comes back at once: the old vWire is closed before
	// the new one is asked for.
	closed := f.closesOf("vl3-c")
	f.updates <- &regapi.NetworkServiceEndpointResponse{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: "vl3-c"}, Deleted: true}
	f.updates <- &regapi.NetworkServiceEndpointResponse{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: "vl3-c"}}
	eventually(t, "vl3-c a third time", func() bool {
		return f.closesOf("vl3-c") > closed && f.liveTo("vl3-c") == 1 && len(p.Connected()) == 2
	})
	f.mu.Lock()
	doubled := f.doubled
	f.mu.Unlock()
	if doubled != 0 {
		t.Errorf("%d vWires asked for while another to the same peer was live", doubled)
	}

	cancel()
	<-done
	if f.liveTo("vl3-c") != 0 || f.liveTo("vl3-d") != 0 || len(me.Routes()) != 0 {
		t.Fatalf("after stop: %d, %d live, routes %+v", f.liveTo("vl3-c"), f.liveTo("vl3-d"), me.Routes())
	}
}

// A peer that answers with our own subnet is refused and its vWire closed.
func TestPeersRefuseOverlap(t *testing.T) {
	f := newFakeMesh(t, map[string]string{"vl3-z": "172.16.2.0/25"})
	me, _ := New(Config{Prefix: "172.16.0.0/16", Subnet: "172.16.2.0/24", PeerService: "vl3-peers"})
	p, _ := NewPeers(me, PeersConfig{Name: "vl3-b", Manager: f, Registry: f})
	// vl3-z's own Service refuses our offer (our subnet overlaps its own);
	// either way nothing stays up.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	eventually(t, "two attempts", func() bool { return f.requestsTo("vl3-z") >= 2 })
	cancel()
	<-done
	if n := f.liveTo("vl3-z"); n != 0 || len(me.Routes()) != 0 {
		t.Fatalf("%d live vWires, routes %+v", n, me.Routes())
	}
}

// When the watch breaks, Peers lists again: a peer that left meanwhile is
// dropped, one that arrived is connected.
func TestPeersResync(t *testing.T) {
	f := newFakeMesh(t, map[string]string{"vl3-c": "172.16.3.0/24", "vl3-d": "172.16.4.0/24"})
	f.names = []string{"vl3-c"}
	me, _ := New(Config{Prefix: "172.16.0.0/16", Subnet: "172.16.2.0/24", PeerService: "vl3-peers"})
	p, _ := NewPeers(me, PeersConfig{Name: "vl3-b", Manager: f, Registry: f})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	eventually(t, "vWire to vl3-c", func() bool { return f.liveTo("vl3-c") == 1 })

	f.mu.Lock()
	f.names = []string{"vl3-d"}
	f.mu.Unlock()
	f.updates <- nil
	eventually(t, "vl3-c dropped, vl3-d connected", func() bool {
		c := p.Connected()
		return f.liveTo("vl3-c") == 0 && f.liveTo("vl3-d") == 1 && len(c) == 1 && c[0].Peer == "vl3-d"
	})
	cancel()
	<-done
}
