package nsc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/workload/nsc"
)

// seen is one Request the fake manager received, and when.
type seen struct {
	at  time.Time
	req *networkservice.NetworkServiceRequest
}

// fakeManager answers Requests as a manager would (its own path segment
// after the client's, an endpoint's addresses), records Requests and
// Closes, and streams monitor events.
type fakeManager struct {
	segTTL time.Duration // how far ahead the manager's segment expires

	mu            sync.Mutex // guards the fields below
	requests      []seen
	replies       map[string]*networkservice.Connection // last reply by connection id
	closes        []*networkservice.Connection
	refuse        error  // every Request fails with it
	refuseService string // Requests for this service fail with InvalidArgument
	failFirst     int    // the first failFirst Requests fail with Unavailable
	failRefresh   bool   // Requests for known ids fail with Unavailable
	endpoint      string
	monitors      []chan *networkservice.ConnectionEvent
}

func (f *fakeManager) Request(_ context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, seen{at: time.Now(), req: req})
	conn := req.GetConnection().Clone()
	switch {
	case f.refuse != nil:
		return nil, f.refuse
	case conn.GetNetworkService() == f.refuseService:
		return nil, status.Errorf(codes.InvalidArgument, "service %s: no such service", f.refuseService)
	case f.failFirst > 0:
		f.failFirst--
		return nil, status.Error(codes.Unavailable, "no forwarder yet")
	case f.failRefresh && f.replies[conn.GetId()] != nil:
		return nil, status.Error(codes.Unavailable, "forwarder gone")
	}
	segs := conn.GetPath().GetPathSegments()
	idx := conn.GetPath().GetIndex()
	if int(idx)+1 >= len(segs) || segs[idx+1].GetName() != "fake-mgr" {
		conn.Path.PathSegments = append(segs[:idx+1], &networkservice.PathSegment{Name: "fake-mgr", Id: "mgr-" + conn.GetId()})
	}
	conn.Path.PathSegments[idx+1].Expires = timestamppb.New(time.Now().Add(f.segTTL))
	m := req.GetMechanismPreferences()[0].Clone()
	conn.Mechanism = m
	conn.NetworkServiceEndpointName = f.endpoint
	conn.Context = &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{
		SrcIpAddrs: []string{"169.254.0.1/32"},
		DstIpAddrs: []string{"169.254.0.0/32"},
		SrcRoutes:  []*networkservice.Route{{Prefix: "169.254.0.0/32"}},
		DstRoutes:  []*networkservice.Route{{Prefix: "169.254.0.1/32"}},
	}}
	conn.State = networkservice.State_UP
	if f.replies == nil {
		f.replies = map[string]*networkservice.Connection{}
	}
	f.replies[conn.GetId()] = conn.Clone()
	return conn, nil
}

func (f *fakeManager) Close(_ context.Context, conn *networkservice.Connection) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes = append(f.closes, conn.Clone())
	delete(f.replies, conn.GetId())
	return &emptypb.Empty{}, nil
}

func (f *fakeManager) MonitorConnections(sel *networkservice.MonitorScopeSelector, s networkservice.MonitorConnection_MonitorConnectionsServer) error {
	f.mu.Lock()
	initial := &networkservice.ConnectionEvent{Type: networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER,
		Connections: networkservice.FilterMapOnManagerScopeSelector(f.replies, sel)}
	events := make(chan *networkservice.ConnectionEvent, 8)
	f.monitors = append(f.monitors, events)
	f.mu.Unlock()
	if err := s.Send(initial); err != nil {
		return err
	}
	for {
		select {
		case <-s.Context().Done():
			return nil
		case ev := <-events:
			if err := s.Send(ev); err != nil {
				return err
			}
		}
	}
}

// deleteAll sends a DELETE of every connection to every monitor.
func (f *fakeManager) deleteAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := &networkservice.ConnectionEvent{Type: networkservice.ConnectionEventType_DELETE, Connections: map[string]*networkservice.Connection{}}
	for id, c := range f.replies {
		ev.Connections[id] = c
	}
	for _, m := range f.monitors {
		m <- ev
	}
}

func (f *fakeManager) set(fn func(f *fakeManager)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeManager) snapshot() ([]seen, []*networkservice.Connection) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.requests...), append([]*networkservice.Connection(nil), f.closes...)
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is the client's output, written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) lines(prefix string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is a fake manager served over mTLS on a unix socket, and a client
// connection to it with the client's identity.
type env struct {
	mgr *fakeManager
	cc  *grpc.ClientConn
	out *syncBuffer
}

func newEnv(t *testing.T, mgr *fakeManager) *env {
	t.Helper()
	ca, err := identity.OpenCA(t.TempDir(), "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	source := func(name string) identity.Source {
		id, _ := ca.ComponentID(name)
		src, err := identity.NewCASource(ca, id, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	server, client := source("manager"), source("nsc")
	if mgr.endpoint == "" {
		mgr.endpoint = "icmp-responder-node-abcd"
	}
	addr := "unix://" + filepath.Join(t.TempDir(), "nsm.io.sock")
	l, err := grpcutil.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(server, identity.AuthorizeTrustDomain(server), testLogger())
	networkservice.RegisterNetworkServiceServer(gs, mgr)
	networkservice.RegisterMonitorConnectionServer(gs, mgr)
	served := make(chan struct{})
	go func() { gs.Serve(l); close(served) }()
	cc, err := grpcutil.Dial(addr, client, identity.AuthorizeTrustDomain(client))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		<-served
	})
	return &env{mgr: mgr, cc: cc, out: &syncBuffer{}}
}

func (e *env) client(t *testing.T, cfg nsc.Config) *nsc.Client {
	t.Helper()
	if cfg.Output == nil {
		cfg.Output = e.out
	}
	cfg.Logger = testLogger()
	c, err := nsc.New(e.cc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func targets(t *testing.T, urls ...string) []nsc.Target {
	t.Helper()
	var out []nsc.Target
	for _, u := range urls {
		tg, err := nsc.ParseTarget(u)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tg)
	}
	return out
}

// run starts c.Run and returns a func that cancels it and returns its error.
func run(t *testing.T, c *nsc.Client, tg []nsc.Target) (stop func() error, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- c.Run(ctx, tg) }()
	stop = func() error {
		cancel()
		select {
		case err := <-ch:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { cancel() })
	return stop, ch
}

func TestFirstRequestAndCloseOnCancel(t *testing.T) {
	t.Setenv(nsc.EnvNodeName, "node-1")
	t.Setenv(nsc.EnvPodName, "pod-1")
	e := newEnv(t, &fakeManager{segTTL: time.Minute})
	c := e.client(t, nsc.Config{Name: "nsc-test", Labels: map[string]string{"app": "web", "color": "red"}, MaxTokenLifetime: 2 * time.Minute})
	stop, _ := run(t, c, targets(t, "kernel://icmp-responder/nsm-1?color=blue"))
	waitFor(t, "a request", func() bool { r, _ := e.mgr.snapshot(); return len(r) > 0 })

	reqs, _ := e.mgr.snapshot()
	first := reqs[0]
	conn := first.req.GetConnection()
	if conn.GetId() == "" || conn.GetNetworkService() != "icmp-responder" {
		t.Fatalf("connection %v", conn)
	}
	wantLabels := map[string]string{"app": "web", "color": "blue", "nodeName": "node-1", "podName": "pod-1"}
	if fmt.Sprint(conn.GetLabels()) != fmt.Sprint(wantLabels) {
		t.Fatalf("labels %v, want %v", conn.GetLabels(), wantLabels)
	}
	segs := conn.GetPath().GetPathSegments()
	if conn.GetPath().GetIndex() != 0 || len(segs) != 1 || segs[0].GetName() != "nsc-test" || segs[0].GetId() != conn.GetId() {
		t.Fatalf("path %v", conn.GetPath())
	}
	if d := segs[0].GetExpires().AsTime().Sub(first.at); d < 2*time.Minute-5*time.Second || d > 2*time.Minute {
		t.Fatalf("own segment expires in %s, want the max token lifetime", d)
	}
	prefs := first.req.GetMechanismPreferences()
	if len(prefs) != 1 || prefs[0].GetType() != kernel.MECHANISM ||
		prefs[0].GetParameters()[common.InterfaceNameKey] != "nsm-1" ||
		prefs[0].GetParameters()[common.InodeURL] != fmt.Sprintf("file:///proc/%d/ns/net", os.Getpid()) {
		t.Fatalf("mechanism preferences %v", prefs)
	}
	waitFor(t, "the connected report", func() bool { return len(e.out.lines("connected ")) == 1 })
	line := e.out.lines("connected ")[0]
	for _, want := range []string{"kernel://icmp-responder/nsm-1", "endpoint=icmp-responder-node-abcd", "mechanism=KERNEL{", "name=nsm-1",
		"src=169.254.0.1/32", "dst=169.254.0.0/32", "src_routes=169.254.0.0/32", "dst_routes=169.254.0.1/32"} {
		if !strings.Contains(line, want) {
			t.Fatalf("report %q lacks %q", line, want)
		}
	}
	// The monitor stream reports the connection it starts with.
	waitFor(t, "the monitor's initial state", func() bool { return len(e.out.lines("monitor INITIAL_STATE_TRANSFER")) > 0 })

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, closes := e.mgr.snapshot()
	if len(closes) != 1 || closes[0].GetId() != conn.GetId() || closes[0].GetPath().GetPathSegments()[1].GetName() != "fake-mgr" {
		t.Fatalf("closes %v", closes)
	}
	if len(e.out.lines("closed ")) != 1 {
		t.Fatalf("output:\n%s", e.out)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	const ttl = 2 * time.Second
	e := newEnv(t, &fakeManager{segTTL: ttl})
	c := e.client(t, nsc.Config{})
	stop, _ := run(t, c, targets(t, "kernel://icmp-responder"))
	waitFor(t, "three refreshes", func() bool { r, _ := e.mgr.snapshot(); return len(r) >= 4 })
	e.mgr.set(func(f *fakeManager) { f.endpoint = "another-endpoint" })
	waitFor(t, "a change report", func() bool { return len(e.out.lines("changed ")) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	reqs, _ := e.mgr.snapshot()
	id := reqs[0].req.GetConnection().GetId()
	for i, r := range reqs[1:] {
		conn := r.req.GetConnection()
		if conn.GetId() != id {
			t.Fatalf("refresh %d for connection %s, want %s", i+1, conn.GetId(), id)
		}
		segs := conn.GetPath().GetPathSegments()
		if len(segs) != 2 || segs[1].GetName() != "fake-mgr" || segs[1].GetId() != "mgr-"+id {
			t.Fatalf("refresh %d does not carry the returned path: %v", i+1, conn.GetPath())
		}
		// Before the manager's segment of the previous reply expired.
		prevExpiry := reqs[i].at.Add(ttl)
		if !r.at.Before(prevExpiry) {
			t.Fatalf("refresh %d at %s, the previous reply expired at %s", i+1, r.at, prevExpiry)
		}
		if gap := r.at.Sub(reqs[i].at); gap < ttl/6 {
			t.Fatalf("refresh %d only %s after the previous request", i+1, gap)
		}
	}
	if n := len(e.out.lines("connected ")); n != 1 {
		t.Fatalf("%d connected reports:\n%s", n, e.out)
	}
	if !strings.Contains(e.out.lines("changed ")[0], "endpoint=another-endpoint") {
		t.Fatalf("change report %q", e.out.lines("changed ")[0])
	}
}

func TestRetriesUntilServed(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Minute, failFirst: 2})
	stop, _ := run(t, e.client(t, nsc.Config{}), targets(t, "kernel://icmp-responder"))
	waitFor(t, "a connection", func() bool { return len(e.out.lines("connected ")) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	reqs, _ := e.mgr.snapshot()
	if len(reqs) != 3 || reqs[0].req.GetConnection().GetId() != reqs[2].req.GetConnection().GetId() {
		t.Fatalf("%d requests, want 3 for one connection id", len(reqs))
	}
}

func TestExpiredConnectionRequestedAnew(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: 600 * time.Millisecond})
	stop, _ := run(t, e.client(t, nsc.Config{}), targets(t, "kernel://icmp-responder"))
	waitFor(t, "a connection", func() bool { return len(e.out.lines("connected ")) == 1 })
	e.mgr.set(func(f *fakeManager) { f.failRefresh = true })
	waitFor(t, "a new connection", func() bool { return len(e.out.lines("connected ")) == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(e.out.lines("expired ")) != 1 {
		t.Fatalf("output:\n%s", e.out)
	}
	reqs, _ := e.mgr.snapshot()
	if reqs[0].req.GetConnection().GetId() == reqs[len(reqs)-1].req.GetConnection().GetId() {
		t.Fatal("requested anew under the expired connection's id")
	}
}

func TestMonitorDeleteRefreshesAtOnce(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Hour})
	stop, _ := run(t, e.client(t, nsc.Config{}), targets(t, "kernel://icmp-responder"))
	waitFor(t, "a monitor stream", func() bool {
		e.mgr.mu.Lock()
		defer e.mgr.mu.Unlock()
		return len(e.mgr.monitors) > 0
	})
	e.mgr.deleteAll()
	waitFor(t, "a refresh", func() bool { r, _ := e.mgr.snapshot(); return len(r) == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(e.out.lines("monitor DELETE ")) != 1 {
		t.Fatalf("output:\n%s", e.out)
	}
}

func TestSeveralTargets(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Minute})
	stop, _ := run(t, e.client(t, nsc.Config{}), targets(t, "kernel://a/nsm-a", "memif://b@example.org/sock-b?x=y"))
	waitFor(t, "two connections", func() bool { return len(e.out.lines("connected ")) == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	reqs, closes := e.mgr.snapshot()
	byService := map[string]*networkservice.NetworkServiceRequest{}
	for _, r := range reqs {
		byService[r.req.GetConnection().GetNetworkService()] = r.req
	}
	m := byService["b@example.org"].GetMechanismPreferences()[0]
	if m.GetType() != memif.MECHANISM || m.GetParameters()[memif.SocketFilename] != "sock-b" || byService["b@example.org"].GetConnection().GetLabels()["x"] != "y" {
		t.Fatalf("memif request %v", byService["b@example.org"])
	}
	if len(closes) != 2 {
		t.Fatalf("%d closes", len(closes))
	}
}

func TestOnce(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Minute})
	c := e.client(t, nsc.Config{Format: "json"})
	if err := c.Once(context.Background(), targets(t, "kernel://icmp-responder/nsm-1")); err != nil {
		t.Fatal(err)
	}
	reqs, closes := e.mgr.snapshot()
	if len(reqs) != 1 || len(closes) != 1 || closes[0].GetId() != reqs[0].req.GetConnection().GetId() {
		t.Fatalf("%d requests, %d closes", len(reqs), len(closes))
	}
	var events []string
	for _, l := range strings.Split(strings.TrimSpace(e.out.String()), "\n") {
		var r nsc.Report
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		events = append(events, r.Event)
		if r.Event == "connected" && (r.Endpoint != "icmp-responder-node-abcd" || r.Mechanism != kernel.MECHANISM || r.SrcIPs[0] != "169.254.0.1/32") {
			t.Fatalf("report %+v", r)
		}
	}
	if strings.Join(events, ",") != "connected,closed" {
		t.Fatalf("events %v", events)
	}
}

func TestRefused(t *testing.T) {
	refusal := status.Error(codes.NotFound, "no endpoint of service icmp-responder\nmatches labels {app: web}")
	e := newEnv(t, &fakeManager{segTTL: time.Minute, refuse: refusal})
	c := e.client(t, nsc.Config{})
	err := c.Once(context.Background(), targets(t, "kernel://icmp-responder"))
	if err == nil || strings.Contains(err.Error(), "\n") ||
		err.Error() != "request kernel://icmp-responder: NotFound: no endpoint of service icmp-responder matches labels {app: web}" {
		t.Fatalf("err = %q", err)
	}
	_, closes := e.mgr.snapshot()
	if len(closes) != 0 {
		t.Fatal("closed a connection it never had")
	}

	// Run gives up at once on a request refused for good.
	e.mgr.set(func(f *fakeManager) { f.refuse = status.Error(codes.PermissionDenied, "policy says no") })
	_, done := run(t, c, targets(t, "kernel://icmp-responder", "kernel://other"))
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "PermissionDenied: policy says no") {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept retrying a refused request")
	}
}

func TestOnceClosesWhatItHadOnFailure(t *testing.T) {
	e := newEnv(t, &fakeManager{segTTL: time.Minute, refuseService: "b"})
	c := e.client(t, nsc.Config{})
	err := c.Once(context.Background(), targets(t, "kernel://a", "kernel://b", "kernel://c"))
	if err == nil || !strings.HasPrefix(err.Error(), "request kernel://b: InvalidArgument") {
		t.Fatalf("err = %v", err)
	}
	reqs, closes := e.mgr.snapshot()
	if len(reqs) != 2 || len(closes) != 1 || closes[0].GetNetworkService() != "a" {
		t.Fatalf("%d requests, closes %v", len(reqs), closes)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		url     string
		service string
		mech    string
		ifname  string
		wantErr bool
	}{
		{url: "kernel://icmp-responder/nsm-1?app=web", service: "icmp-responder", mech: kernel.MECHANISM, ifname: "nsm-1"},
		{url: "kernel://svc@example.org", service: "svc@example.org", mech: kernel.MECHANISM},
		{url: "memif://svc/sock", service: "svc", mech: memif.MECHANISM, ifname: "sock"},
		{url: "vxlan://svc", wantErr: true},
		{url: "kernel://svc/this-name-is-far-too-long", wantErr: true},
		{url: "icmp-responder", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := nsc.ParseTarget(tt.url)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if err != nil || got.NetworkService != tt.service || got.Mechanism != tt.mech || got.InterfaceName != tt.ifname || got.URL != tt.url {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestNewRejectsFormat(t *testing.T) {
	if _, err := nsc.New(nil, nsc.Config{Format: "yaml"}); err == nil {
		t.Fatal("format yaml accepted")
	}
}
