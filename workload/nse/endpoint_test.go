package nse_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/vxlan"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	vkernel "github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/icmpresponder"
)

const testService = "icmp-responder"

// ids are one trust domain's identities for a test.
type ids struct {
	ca *identity.CA
}

func newIDs(t *testing.T) ids {
	t.Helper()
	ca, err := identity.OpenCA(t.TempDir(), "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	return ids{ca: ca}
}

func (i ids) source(t *testing.T, component string) identity.Source {
	t.Helper()
	id, err := i.ca.ComponentID(component)
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewCASource(i.ca, id, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// socketPath is a unix socket in a fresh temporary directory.
func socketPath(t *testing.T, name string) string {
	return "unix://" + filepath.Join(t.TempDir(), name)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is an icmp-responder endpoint served over mTLS on a unix socket, and
// a client of it.
type env struct {
	ep   *nse.Endpoint
	svc  *icmpresponder.Service
	ns   networkservice.NetworkServiceClient
	mon  networkservice.MonitorConnectionClient
	stop func()
}

func newEnv(t *testing.T, cidr string, maxLifetime time.Duration) *env {
	t.Helper()
	ids := newIDs(t)
	server, client := ids.source(t, "nse"), ids.source(t, "forwarder")
	svc, err := icmpresponder.New(cidr)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := nse.New(nse.Config{Name: "icmp-nse", Service: svc, MaxTokenLifetime: maxLifetime, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr := socketPath(t, "nse.sock")
	l, err := grpcutil.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(server, identity.AuthorizeTrustDomain(server), testLogger(t))
	ep.Register(gs)
	served := make(chan struct{})
	go func() { gs.Serve(l); close(served) }()
	cc, err := grpcutil.Dial(addr, client, identity.AuthorizeTrustDomain(client))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cc.Close()
			gs.Stop()
			<-served
			ep.Stop()
		})
	}
	t.Cleanup(stop)
	return &env{ep: ep, svc: svc, ns: networkservice.NewNetworkServiceClient(cc), mon: networkservice.NewMonitorConnectionClient(cc), stop: stop}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func kernelMech(name string) *networkservice.Mechanism {
	m := &networkservice.Mechanism{Cls: cls.LOCAL, Type: kernel.MECHANISM, Parameters: map[string]string{}}
	if name != "" {
		m.Parameters[common.InterfaceNameKey] = name
	}
	return m
}

func memifMech() *networkservice.Mechanism {
	return &networkservice.Mechanism{Cls: cls.LOCAL, Type: memif.MECHANISM}
}

// request is what a previous hop sends: its own segment, expiring in ttl.
func request(id string, ttl time.Duration, prefs ...*networkservice.Mechanism) *networkservice.NetworkServiceRequest {
	return &networkservice.NetworkServiceRequest{
		Connection: &networkservice.Connection{
			Id:             id,
			NetworkService: testService,
			Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{
				{Name: "forwarder", Id: id, Expires: timestamppb.New(time.Now().Add(ttl))},
			}},
		},
		MechanismPreferences: prefs,
	}
}

// refresh is the request a previous hop sends to keep conn.
func refresh(conn *networkservice.Connection, ttl time.Duration, prefs ...*networkservice.Mechanism) *networkservice.NetworkServiceRequest {
	conn = conn.Clone()
	conn.Path.PathSegments[conn.Path.Index].Expires = timestamppb.New(time.Now().Add(ttl))
	return &networkservice.NetworkServiceRequest{Connection: conn, MechanismPreferences: prefs}
}

func addrs(c *networkservice.Connection) string {
	ipc := c.GetContext().GetIpContext()
	return fmt.Sprintf("src=%v dst=%v", ipc.GetSrcIpAddrs(), ipc.GetDstIpAddrs())
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("err = %v, want %s mentioning %q", err, code, substr)
	}
}

func TestRequestKernel(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 0)
	conn, err := e.ns.Request(ctxT(t), request("c1", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	m := conn.GetMechanism()
	if m.GetType() != kernel.MECHANISM || m.GetParameters()[common.InodeURL] != nse.OwnNetNSURL() {
		t.Fatalf("mechanism %v, want KERNEL in %s", m, nse.OwnNetNSURL())
	}
	epID := conn.GetPath().GetPathSegments()[1].GetId()
	if name := m.GetParameters()[common.InterfaceNameKey]; name != vkernel.DefaultName(epID) || len(name) > kernel.LinuxIfMaxLength {
		t.Fatalf("default interface name %q, want %q", name, vkernel.DefaultName(epID))
	}
	if conn.GetState() != networkservice.State_UP {
		t.Fatalf("state %v", conn.GetState())
	}
	ipc := conn.GetContext().GetIpContext()
	if fmt.Sprint(ipc.GetSrcIpAddrs(), ipc.GetDstIpAddrs(), ipc.GetSrcRoutes(), ipc.GetDstRoutes()) !=
		fmt.Sprint([]string{"10.0.0.1/32"}, []string{"10.0.0.0/32"},
			[]*networkservice.Route{{Prefix: "10.0.0.0/32"}}, []*networkservice.Route{{Prefix: "10.0.0.1/32"}}) {
		t.Fatalf("ip context %v", ipc)
	}
	// The reply is in the caller's view, with the endpoint's segment after it.
	segs := conn.GetPath().GetPathSegments()
	if conn.GetId() != "c1" || conn.GetPath().GetIndex() != 0 || len(segs) != 2 {
		t.Fatalf("reply id %s path %v", conn.GetId(), conn.GetPath())
	}
	if segs[1].GetName() != "icmp-nse" || segs[1].GetId() == "" || segs[1].GetId() == "c1" ||
		time.Until(segs[1].GetExpires().AsTime()) < 9*time.Minute {
		t.Fatalf("endpoint segment %v", segs[1])
	}

	// A name the caller asks for is kept.
	conn, err = e.ns.Request(ctxT(t), request("c2", time.Minute, kernelMech("nsm-7")))
	if err != nil || conn.GetMechanism().GetParameters()[common.InterfaceNameKey] != "nsm-7" {
		t.Fatalf("asked name: %v %v", conn.GetMechanism(), err)
	}
	_, err = e.ns.Request(ctxT(t), request("c3", time.Minute, kernelMech("much-too-long-name")))
	wantCode(t, err, codes.InvalidArgument, "at most 15 allowed")
}

func TestRequestMemif(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 0)
	unknown := &networkservice.Mechanism{Cls: cls.LOCAL, Type: "SRIOV"}
	conn, err := e.ns.Request(ctxT(t), request("c1", time.Minute, unknown, memifMech(), kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	m := conn.GetMechanism()
	if m.GetType() != memif.MECHANISM || m.GetParameters()[memif.SocketFilename] == "" ||
		m.GetParameters()[common.InodeURL] != nse.OwnNetNSURL() {
		t.Fatalf("mechanism %v", m)
	}
}

func TestRequestRefused(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 0)
	tests := []struct {
		name   string
		req    *networkservice.NetworkServiceRequest
		substr string
	}{
		{"unknown mechanism", request("c1", time.Minute, &networkservice.Mechanism{Cls: cls.REMOTE, Type: vxlan.MECHANISM}), "offered REMOTE/VXLAN"},
		{"no mechanism", request("c1", time.Minute), "offers no mechanism"},
		{"malformed offer", request("c1", time.Minute, &networkservice.Mechanism{Cls: cls.LOCAL, Type: memif.MECHANISM,
			Parameters: map[string]string{memif.SocketFilename: "a/b"}}), "socketfile"},
		{"wrong class", request("c1", time.Minute, &networkservice.Mechanism{Cls: cls.REMOTE, Type: kernel.MECHANISM}), "class"},
		{"no connection", &networkservice.NetworkServiceRequest{MechanismPreferences: []*networkservice.Mechanism{kernelMech("")}}, "no connection"},
		{"no id", func() *networkservice.NetworkServiceRequest {
			r := request("c1", time.Minute, kernelMech(""))
			r.Connection.Id = ""
			return r
		}(), "no id"},
		{"no service", func() *networkservice.NetworkServiceRequest {
			r := request("c1", time.Minute, kernelMech(""))
			r.Connection.NetworkService = ""
			return r
		}(), "no network service"},
		{"expired path", request("c1", -time.Second, kernelMech("")), "expired"},
		{"bad path index", func() *networkservice.NetworkServiceRequest {
			r := request("c1", time.Minute, kernelMech(""))
			r.Connection.Path.Index = 4
			return r
		}(), "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.ns.Request(ctxT(t), tt.req)
			wantCode(t, err, codes.InvalidArgument, tt.substr)
		})
	}
	if e.ep.Len() != 0 || e.svc.Pools()[0].Len() != 0 {
		t.Fatal("a refused request left state behind")
	}
}

func TestRefreshKeepsAddresses(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 0)
	a, err := e.ns.Request(ctxT(t), request("a", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.ns.Request(ctxT(t), request("b", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	if addrs(a) == addrs(b) {
		t.Fatalf("two connections share %s", addrs(a))
	}
	for range 3 {
		again, err := e.ns.Request(ctxT(t), refresh(a, time.Minute, kernelMech("")))
		if err != nil {
			t.Fatal(err)
		}
		if addrs(again) != addrs(a) || again.GetPath().GetPathSegments()[1].GetId() != a.GetPath().GetPathSegments()[1].GetId() ||
			again.GetMechanism().GetParameters()[common.InterfaceNameKey] != a.GetMechanism().GetParameters()[common.InterfaceNameKey] {
			t.Fatalf("refresh changed the connection:\n%v\n%v", a, again)
		}
		if n := len(again.GetContext().GetIpContext().GetSrcIpAddrs()); n != 1 {
			t.Fatalf("refresh duplicated addresses: %v", again.GetContext().GetIpContext())
		}
	}
	if e.ep.Len() != 2 || e.svc.Pools()[0].Len() != 2 {
		t.Fatalf("%d connections, %d pairs", e.ep.Len(), e.svc.Pools()[0].Len())
	}
}

func TestCloseReleases(t *testing.T) {
	e := newEnv(t, "10.0.0.0/30", 0) // two pairs
	a, err := e.ns.Request(ctxT(t), request("a", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ns.Request(ctxT(t), request("b", time.Minute, kernelMech(""))); err != nil {
		t.Fatal(err)
	}
	_, err = e.ns.Request(ctxT(t), request("c", time.Minute, kernelMech("")))
	wantCode(t, err, codes.ResourceExhausted, "10.0.0.0/30")

	if _, err := e.ns.Close(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ns.Close(ctxT(t), a); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := e.ns.Close(ctxT(t), request("never", time.Minute).Connection); err != nil {
		t.Fatalf("close of an unknown connection: %v", err)
	}
	c, err := e.ns.Request(ctxT(t), request("c", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	if addrs(c) != addrs(a) {
		t.Fatalf("released pair not reused: %s, had %s", addrs(c), addrs(a))
	}
}

func TestExpiryReleases(t *testing.T) {
	e := newEnv(t, "10.0.0.0/31", 0) // one pair
	ctx := ctxT(t)
	sel := &networkservice.MonitorScopeSelector{PathSegments: []*networkservice.PathSegment{{Id: "a"}}}
	events, err := e.mon.MonitorConnections(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := events.Recv(); err != nil || ev.GetType() != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER || len(ev.GetConnections()) != 0 {
		t.Fatalf("initial state: %v %v", ev, err)
	}

	a, err := e.ns.Request(ctx, request("a", time.Second, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	// Refreshed before its expiry, it lives on past the first one.
	time.Sleep(400 * time.Millisecond)
	if a, err = e.ns.Request(ctx, refresh(a, 2500*time.Millisecond, kernelMech(""))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if e.ep.Len() != 1 {
		t.Fatal("a refreshed connection expired on its first expiry")
	}
	// Then left alone, it is released.
	deadline := time.Now().Add(10 * time.Second)
	for e.ep.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection not released at expiry")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := e.ns.Request(ctx, request("b", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatalf("pair of the expired connection not free: %v", err)
	}
	if addrs(b) != addrs(a) {
		t.Fatalf("got %s, the expired connection had %s", addrs(b), addrs(a))
	}

	// The monitor saw the connection come, refresh and go.
	var types []string
	for len(types) < 3 {
		ev, err := events.Recv()
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.GetType().String())
	}
	if strings.Join(types, ",") != "UPDATE,UPDATE,DELETE" {
		t.Fatalf("monitor events %v", types)
	}
}

func TestExpiryWithoutCallerExpiry(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 300*time.Millisecond)
	req := request("a", 0, kernelMech(""))
	req.Connection.Path.PathSegments[0].Expires = nil
	if _, err := e.ns.Request(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.ep.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection not released after the endpoint's max token lifetime")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParallelRequests(t *testing.T) {
	e := newEnv(t, "10.0.0.0/16", 0)
	const n = 100
	replies := make([]*networkservice.Connection, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := e.ns.Request(ctxT(t), request(fmt.Sprint("conn-", i), time.Minute, kernelMech("")))
			if err != nil {
				t.Error(err)
				return
			}
			replies[i] = c
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i, c := range replies {
		if c == nil {
			t.FailNow()
		}
		ipc := c.GetContext().GetIpContext()
		for _, a := range append(ipc.GetSrcIpAddrs(), ipc.GetDstIpAddrs()...) {
			if other, ok := seen[a]; ok {
				t.Fatalf("%s given to conn-%d and %s", a, i, other)
			}
			seen[a] = fmt.Sprint("conn-", i)
		}
	}
	if len(seen) != 2*n || e.ep.Len() != n {
		t.Fatalf("%d addresses, %d connections", len(seen), e.ep.Len())
	}
	// And the same in parallel with refreshes and closes of the same ids.
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := e.ns.Request(ctxT(t), refresh(replies[i], time.Minute, kernelMech(""))); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := e.ns.Close(ctxT(t), replies[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if held := e.svc.Pools()[0].Len(); held != e.ep.Len() {
		t.Fatalf("%d pairs held for %d connections", held, e.ep.Len())
	}
}

func TestMonitorScope(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 0)
	ctx := ctxT(t)
	a, err := e.ns.Request(ctx, request("a", time.Minute, kernelMech("")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ns.Request(ctx, request("b", time.Minute, kernelMech(""))); err != nil {
		t.Fatal(err)
	}
	events, err := e.mon.MonitorConnections(ctx, &networkservice.MonitorScopeSelector{
		PathSegments: []*networkservice.PathSegment{{Id: "a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Recv()
	if err != nil {
		t.Fatal(err)
	}
	epID := a.GetPath().GetPathSegments()[1].GetId()
	if ev.GetType() != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER || len(ev.GetConnections()) != 1 || ev.GetConnections()[epID] == nil {
		t.Fatalf("initial state %v", ev)
	}
	if _, err := e.ns.Close(ctx, a); err != nil {
		t.Fatal(err)
	}
	ev, err = events.Recv()
	if err != nil || ev.GetType() != networkservice.ConnectionEventType_DELETE || ev.GetConnections()[epID] == nil {
		t.Fatalf("after close: %v %v", ev, err)
	}
}

func TestStop(t *testing.T) {
	svc, _ := icmpresponder.New("10.0.0.0/24")
	ep, err := nse.New(nse.Config{Name: "x", Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ep.Request(ctxT(t), request("a", time.Minute, kernelMech(""))); err != nil {
		t.Fatal(err)
	}
	ep.Stop()
	ep.Stop()
	if ep.Len() != 0 || svc.Pools()[0].Len() != 0 {
		t.Fatal("Stop did not release the connections")
	}
	_, err = ep.Request(ctxT(t), request("b", time.Minute, kernelMech("")))
	wantCode(t, err, codes.Unavailable, "stopping")
}

func TestNewRejects(t *testing.T) {
	svc, _ := icmpresponder.New()
	for _, cfg := range []nse.Config{
		{Service: svc},
		{Name: "x"},
		{Name: "x", Service: svc, Mechanisms: []string{vxlan.MECHANISM}},
	} {
		if _, err := nse.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestReplyIsTheCallers: an in-process caller may modify the reply and the
// request it sent; the connection the endpoint keeps (and its monitors
// stream) is a copy of its own and stays as established.
func TestReplyIsTheCallers(t *testing.T) {
	e := newEnv(t, "10.0.0.0/24", 0)
	ctx := ctxT(t)
	req := request("a", time.Minute, kernelMech(""))
	reply, err := e.ep.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := addrs(reply)
	epID := reply.GetPath().GetPathSegments()[1].GetId()
	for _, c := range []*networkservice.Connection{reply, req.GetConnection()} {
		c.State = networkservice.State_DOWN
		c.Context = &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{SrcIpAddrs: []string{"192.0.2.1/32"}}}
		c.GetPath().GetPathSegments()[0].Name = "changed"
	}
	events, err := e.mon.MonitorConnections(ctx, &networkservice.MonitorScopeSelector{
		PathSegments: []*networkservice.PathSegment{{Id: "a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Recv()
	if err != nil {
		t.Fatal(err)
	}
	kept := ev.GetConnections()[epID]
	if kept == nil {
		t.Fatalf("initial state %v", ev)
	}
	if got := addrs(kept); got != want || kept.GetState() != networkservice.State_UP || kept.GetPath().GetPathSegments()[0].GetName() != "forwarder" {
		t.Fatalf("kept connection changed with the caller's: %s %v %q, want %s UP forwarder", got, kept.GetState(), kept.GetPath().GetPathSegments()[0].GetName(), want)
	}
	if _, err := e.ns.Close(ctx, kept); err != nil {
		t.Fatal(err)
	}
}
