package nse_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/icmpresponder"
)

// registration is one Register call the fake manager saw.
type registration struct {
	at  time.Time
	nse *regapi.NetworkServiceEndpoint
}

// fakeManager is the registry API of a manager: it records what endpoints
// register and fails the first failFirst Register calls.
type fakeManager struct {
	failFirst int

	mu           sync.Mutex // guards the fields below
	registers    []registration
	unregistered []*regapi.NetworkServiceEndpoint
	services     map[string]*regapi.NetworkService
	nsRegisters  int
}

type fakeNSE struct{ *fakeManager }
type fakeNS struct{ *fakeManager }

func (f fakeNSE) Register(_ context.Context, in *regapi.NetworkServiceEndpoint) (*regapi.NetworkServiceEndpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failFirst > 0 {
		f.failFirst--
		return nil, status.Error(codes.Unavailable, "registry not ready")
	}
	f.registers = append(f.registers, registration{at: time.Now(), nse: proto.Clone(in).(*regapi.NetworkServiceEndpoint)})
	return in, nil
}

func (f fakeNSE) Find(*regapi.NetworkServiceEndpointQuery, regapi.NetworkServiceEndpointRegistry_FindServer) error {
	return status.Error(codes.Unimplemented, "not in the fake")
}

func (f fakeNSE) Unregister(_ context.Context, in *regapi.NetworkServiceEndpoint) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unregistered = append(f.unregistered, proto.Clone(in).(*regapi.NetworkServiceEndpoint))
	return &emptypb.Empty{}, nil
}

func (f fakeNS) Register(_ context.Context, in *regapi.NetworkService) (*regapi.NetworkService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services[in.GetName()] = proto.Clone(in).(*regapi.NetworkService)
	f.nsRegisters++
	return in, nil
}

func (f fakeNS) Find(q *regapi.NetworkServiceQuery, s regapi.NetworkServiceRegistry_FindServer) error {
	f.mu.Lock()
	ns := f.services[q.GetNetworkService().GetName()]
	f.mu.Unlock()
	if ns != nil {
		return s.Send(&regapi.NetworkServiceResponse{NetworkService: ns})
	}
	return nil
}

func (f fakeNS) Unregister(context.Context, *regapi.NetworkService) (*emptypb.Empty, error) {
	return nil, status.Error(codes.Unimplemented, "not in the fake")
}

func (f *fakeManager) snapshot() ([]registration, []*regapi.NetworkServiceEndpoint, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registration(nil), f.registers...), append([]*regapi.NetworkServiceEndpoint(nil), f.unregistered...), f.nsRegisters
}

// serveFakeManager serves f over mTLS on a unix socket and returns its URL.
func serveFakeManager(t *testing.T, src identity.Source, f *fakeManager) string {
	t.Helper()
	if f.services == nil {
		f.services = map[string]*regapi.NetworkService{}
	}
	addr := socketPath(t, "nsm.io.sock")
	l, err := grpcutil.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(src, identity.AuthorizeTrustDomain(src), testLogger(t))
	regapi.RegisterNetworkServiceEndpointRegistryServer(gs, fakeNSE{f})
	regapi.RegisterNetworkServiceRegistryServer(gs, fakeNS{f})
	done := make(chan struct{})
	go func() { gs.Serve(l); close(done) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return addr
}

func TestRunRegisters(t *testing.T) {
	t.Setenv(nse.EnvNodeName, "node-7")
	ids := newIDs(t)
	mgr := &fakeManager{failFirst: 2}
	mgrURL := serveFakeManager(t, ids.source(t, "manager"), mgr)
	svc, _ := icmpresponder.New("10.0.0.0/24")

	const lifetime = 1500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listen := socketPath(t, "nse.sock")
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- nse.Run(ctx, nse.Options{
			Services:             []string{"icmp-responder", "ping"},
			Labels:               map[string]string{"app": "icmp"},
			RegisterService:      true,
			Listen:               listen,
			ConnectTo:            mgrURL,
			RegistrationLifetime: lifetime,
			Source:               ids.source(t, "nse"),
			Logger:               testLogger(t),
			Ready:                func(name, url string) { ready <- name },
		}, svc)
	}()
	var name string
	select {
	case name = <-ready:
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	}

	// Registered (after two failures), then refreshed before each expiry.
	deadline := time.Now().Add(10 * time.Second)
	var regs []registration
	for len(regs) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d registrations in 10s", len(regs))
		}
		time.Sleep(50 * time.Millisecond)
		regs, _, _ = mgr.snapshot()
	}
	first := regs[0].nse
	if first.GetName() != name || first.GetUrl() != listen {
		t.Fatalf("registered %s at %s, want %s at %s", first.GetName(), first.GetUrl(), name, listen)
	}
	if len(name) < len("icmp-responder-x-abcd") || name[:len("icmp-responder-")] != "icmp-responder-" {
		t.Fatalf("default name %q", name)
	}
	if got := first.GetNetworkServiceNames(); len(got) != 2 || got[0] != "icmp-responder" || got[1] != "ping" {
		t.Fatalf("services %v", got)
	}
	for _, s := range []string{"icmp-responder", "ping"} {
		l := first.GetNetworkServiceLabels()[s].GetLabels()
		if l["app"] != "icmp" || l["nodeName"] != "node-7" {
			t.Fatalf("labels of %s: %v", s, l)
		}
	}
	for i, r := range regs {
		exp := r.nse.GetExpirationTime().AsTime()
		if d := exp.Sub(r.at); d < lifetime-500*time.Millisecond || d > lifetime {
			t.Fatalf("registration %d expires %s after it was made, want about %s", i, d, lifetime)
		}
		if i > 0 && !r.at.Before(regs[i-1].nse.GetExpirationTime().AsTime()) {
			t.Fatalf("registration %d came at %s, after the previous one expired at %s", i, r.at, regs[i-1].nse.GetExpirationTime().AsTime())
		}
	}
	// The services were registered once, with the default payload.
	_, _, nsRegs := mgr.snapshot()
	mgr.mu.Lock()
	payload := mgr.services["ping"].GetPayload()
	mgr.mu.Unlock()
	if nsRegs != 2 || payload != nse.DefaultPayload {
		t.Fatalf("%d service registrations, payload %q", nsRegs, payload)
	}

	// The registered URL serves the endpoint.
	client := ids.source(t, "forwarder")
	cc, err := grpcutil.DialPeer(first.GetUrl(), client, identity.AuthorizeTrustDomain(client))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// The endpoint checks path tokens: sign the caller's segment for it.
	req := request("c1", time.Minute, kernelMech(""))
	aud, err := cc.PeerID(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	svid, _ := client.GetX509SVID()
	seg := req.Connection.Path.PathSegments[req.Connection.Path.Index]
	rctx, err := token.Stamp(ctxT(t), seg, svid, aud, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := networkservice.NewNetworkServiceClient(cc).Request(rctx, req); err != nil {
		t.Fatalf("request at the registered url: %v", err)
	}
	// An unsigned one is refused.
	if _, err := networkservice.NewNetworkServiceClient(cc).Request(ctxT(t), request("c2", time.Minute, kernelMech(""))); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unsigned request: %v", err)
	}

	// Shutdown unregisters.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	_, unreg, _ := mgr.snapshot()
	if len(unreg) != 1 || unreg[0].GetName() != name {
		t.Fatalf("unregistered %v", unreg)
	}
}

func TestRunWithoutServiceRegistration(t *testing.T) {
	ids := newIDs(t)
	mgr := &fakeManager{}
	mgrURL := serveFakeManager(t, ids.source(t, "manager"), mgr)
	svc, _ := icmpresponder.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nse.Run(ctx, nse.Options{Name: "nse-1", Services: []string{"s"}, Listen: socketPath(t, "nse.sock"),
			ConnectTo: mgrURL, Source: ids.source(t, "nse")}, svc)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		regs, _, nsRegs := mgr.snapshot()
		if nsRegs != 0 {
			t.Fatal("service registered without RegisterService")
		}
		if len(regs) > 0 {
			if regs[0].nse.GetName() != "nse-1" {
				t.Fatalf("name %q", regs[0].nse.GetName())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not registered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRegistrarKeepsExistingService(t *testing.T) {
	ids := newIDs(t)
	existing := &regapi.NetworkService{Name: "s", Payload: "ETHERNET", Matches: []*regapi.Match{{Fallthrough: true}}}
	mgr := &fakeManager{services: map[string]*regapi.NetworkService{"s": existing}}
	mgrURL := serveFakeManager(t, ids.source(t, "manager"), mgr)
	src := ids.source(t, "nse")
	cc, err := grpcutil.Dial(mgrURL, src, identity.AuthorizeTrustDomain(src))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	reg, err := nse.NewRegistrar(cc, nse.Registration{
		Endpoint: nse.EndpointRegistration("nse-1", "tcp://10.0.0.1:5003", []string{"s"}, nil),
		Services: []*regapi.NetworkService{{Name: "s", Payload: "IP"}},
		Lifetime: 600 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := reg.Run(ctx); err != nil {
		t.Fatal(err)
	}
	regs, unreg, nsRegs := mgr.snapshot()
	mgr.mu.Lock()
	got := mgr.services["s"]
	mgr.mu.Unlock()
	if nsRegs != 0 || !proto.Equal(got, existing) {
		t.Fatalf("existing service overwritten: %v", got)
	}
	if len(regs) < 2 || len(unreg) != 1 {
		t.Fatalf("%d registrations, %d unregistrations", len(regs), len(unreg))
	}
}

func TestNewRegistrarRejects(t *testing.T) {
	for _, e := range []*regapi.NetworkServiceEndpoint{
		nil,
		nse.EndpointRegistration("", "unix:///x", []string{"s"}, nil),
		nse.EndpointRegistration("n", "", []string{"s"}, nil),
		nse.EndpointRegistration("n", "unix:///x", nil, nil),
	} {
		if _, err := nse.NewRegistrar(nil, nse.Registration{Endpoint: e}); err == nil {
			t.Errorf("NewRegistrar(%v) accepted", e)
		}
	}
}
