package manager_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/vxlan"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/clock"
	"github.com/vwire/vwire/manager"
	"github.com/vwire/vwire/registry/manifest"
	"github.com/vwire/vwire/test/sandbox"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/icmpresponder"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// request is what an NSM client sends: its own path segment and a KERNEL
// mechanism preference.
func request(service string, labels map[string]string) *networkservice.NetworkServiceRequest {
	id := uuid.NewString()
	return &networkservice.NetworkServiceRequest{
		Connection: &networkservice.Connection{
			Id: id, NetworkService: service, Labels: labels,
			Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{{
				Name: "nsc", Id: id, Expires: timestamppb.New(time.Now().Add(10 * time.Minute)),
			}}},
		},
		MechanismPreferences: []*networkservice.Mechanism{{
			Cls: cls.LOCAL, Type: kernel.MECHANISM,
			Parameters: map[string]string{kernel.InterfaceNameKey: "nsm-1", kernel.NetNSURL: "file:///proc/self/ns/net"},
		}},
	}
}

func pathNames(c *networkservice.Connection) string {
	var n []string
	for _, s := range c.GetPath().GetPathSegments() {
		n = append(n, s.GetName())
	}
	return strings.Join(n, " > ")
}

func TestLocalRequest(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	cli := n.Client("nsc")
	ctx := ctxT(t)

	req := request("icmp", nil)
	conn, err := cli.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := pathNames(conn); got != "nsc > manager-node1 > forwarder-node1 > icmp-1" {
		t.Fatalf("path %s", got)
	}
	if conn.GetId() != req.Connection.Id || conn.GetPath().GetIndex() != 0 {
		t.Fatalf("reply not in the client's view: id %s index %d", conn.GetId(), conn.GetPath().GetIndex())
	}
	if conn.GetMechanism().GetType() != kernel.MECHANISM || conn.GetNetworkServiceEndpointName() != "icmp-1" {
		t.Fatalf("mechanism %v endpoint %q", conn.GetMechanism(), conn.GetNetworkServiceEndpointName())
	}
	ip := conn.GetContext().GetIpContext()
	if len(ip.GetSrcIpAddrs()) != 1 || len(ip.GetDstIpAddrs()) != 1 {
		t.Fatalf("ip context %v", ip)
	}
	if conn.GetLabels()["nodeName"] != "node1" {
		t.Fatalf("nodeName label not filled: %v", conn.GetLabels())
	}
	live := n.Dataplane.Live()
	if len(live) != 1 {
		t.Fatalf("dataplane has %d vWires", len(live))
	}
	for _, v := range live {
		if v.In.GetMechanism().GetType() != kernel.MECHANISM || v.Out.GetMechanism().GetType() != kernel.MECHANISM {
			t.Fatalf("local vWire %s -> %s", v.In.GetMechanism().GetType(), v.Out.GetMechanism().GetType())
		}
		if v.In.GetMechanism().GetParameters()[kernel.InterfaceNameKey] != "nsm-1" {
			t.Fatalf("client's interface name lost: %v", v.In.GetMechanism())
		}
	}

	// Close tears down every hop; a second Close and a Close of an unknown
	// connection are not errors.
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := cli.Close(ctx, request("icmp", nil).Connection); err != nil {
		t.Fatalf("close of unknown: %v", err)
	}
	if len(n.Dataplane.Live()) != 0 || len(n.Manager.Connections()) != 0 || len(n.Forwarder.Connections()) != 0 {
		t.Fatal("state left after close")
	}
}

func TestRemoteRequest(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 2})
	n1, n2 := sb.Nodes[0], sb.Nodes[1]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n2.ServeICMPResponder("icmp-remote", nil, "icmp")
	cli := n1.Client("nsc")
	ctx := ctxT(t)

	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	want := "nsc > manager-node1 > forwarder-node1 > manager-node2 > forwarder-node2 > icmp-remote"
	if got := pathNames(conn); got != want {
		t.Fatalf("path %s, want %s", got, want)
	}
	check := func(n *sandbox.Node, in, out string) {
		t.Helper()
		live := n.Dataplane.Live()
		if len(live) != 1 {
			t.Fatalf("%s: %d vWires", n.Name, len(live))
		}
		for _, v := range live {
			if v.In.GetMechanism().GetType() != in || v.Out.GetMechanism().GetType() != out {
				t.Fatalf("%s: %s -> %s, want %s -> %s", n.Name, v.In.GetMechanism().GetType(), v.Out.GetMechanism().GetType(), in, out)
			}
		}
	}
	check(n1, kernel.MECHANISM, vxlan.MECHANISM)
	check(n2, vxlan.MECHANISM, kernel.MECHANISM)
	for _, v := range n1.Dataplane.Live() {
		p := v.Out.GetMechanism().GetParameters()
		if p[vxlan.SrcIP] == "" || p[vxlan.DstIP] == "" || p[vxlan.VNI] == "" {
			t.Fatalf("vxlan parameters not negotiated: %v", p)
		}
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
	for _, n := range sb.Nodes {
		if len(n.Dataplane.Live()) != 0 || len(n.Manager.Connections()) != 0 {
			t.Fatalf("%s: state left after close", n.Name)
		}
	}
}

// TestTopologyAware: with an endpoint on each node and a nodeName route,
// every client lands on the endpoint of its own node.
func TestTopologyAware(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 2})
	sb.RegisterService(&regapi.NetworkService{Name: "local-vl3", Matches: []*regapi.Match{{
		Routes: []*regapi.Destination{{DestinationSelector: map[string]string{"nodeName": "{{  .nodeName }}"}}},
	}}})
	for _, n := range sb.Nodes {
		n.ServeICMPResponder("vl3-"+n.Name, map[string]string{"nodeName": n.Name}, "local-vl3")
	}
	ctx := ctxT(t)
	for _, n := range sb.Nodes {
		for range 3 {
			conn, err := n.Client("nsc").Request(ctx, request("local-vl3", nil))
			if err != nil {
				t.Fatal(err)
			}
			if conn.GetNetworkServiceEndpointName() != "vl3-"+n.Name {
				t.Fatalf("client on %s got %s", n.Name, conn.GetNetworkServiceEndpointName())
			}
		}
	}
}

func TestErrors(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	sb.RegisterService(&regapi.NetworkService{Name: "zoned", Matches: []*regapi.Match{{
		Routes: []*regapi.Destination{{DestinationSelector: map[string]string{"zone": "{{ .zone }}"}}},
	}}})
	sb.RegisterService(&regapi.NetworkService{Name: "empty"})
	n.ServeICMPResponder("icmp-1", map[string]string{"color": "red"}, "icmp", "zoned")
	cli := n.Client("nsc")
	ctx := ctxT(t)
	tests := []struct {
		name    string
		mutate  func(*networkservice.NetworkServiceRequest)
		code    codes.Code
		mention string
	}{
		{name: "no network service", mutate: func(r *networkservice.NetworkServiceRequest) { r.Connection.NetworkService = "" }, code: codes.InvalidArgument, mention: "network_service"},
		{name: "no connection", mutate: func(r *networkservice.NetworkServiceRequest) { r.Connection = nil }, code: codes.InvalidArgument, mention: "connection"},
		{name: "unknown mechanism", mutate: func(r *networkservice.NetworkServiceRequest) { r.MechanismPreferences[0].Type = "CARRIER_PIGEON" }, code: codes.InvalidArgument, mention: "CARRIER_PIGEON"},
		{name: "no mechanism", mutate: func(r *networkservice.NetworkServiceRequest) { r.MechanismPreferences = nil }, code: codes.InvalidArgument, mention: "mechanism"},
		{name: "interface name too long", mutate: func(r *networkservice.NetworkServiceRequest) {
			r.MechanismPreferences[0].Parameters[kernel.InterfaceNameKey] = "a-very-long-interface-name"
		}, code: codes.InvalidArgument, mention: "name"},
		{name: "malformed label", mutate: func(r *networkservice.NetworkServiceRequest) {
			r.Connection.Labels = map[string]string{"bad key!": "x"}
		}, code: codes.InvalidArgument, mention: "labels"},
		{name: "template that does not execute", mutate: func(r *networkservice.NetworkServiceRequest) { r.Connection.NetworkService = "zoned" }, code: codes.InvalidArgument, mention: "zone"},
		{name: "unknown service", mutate: func(r *networkservice.NetworkServiceRequest) { r.Connection.NetworkService = "nope" }, code: codes.NotFound, mention: `"nope"`},
		{name: "no endpoint", mutate: func(r *networkservice.NetworkServiceRequest) { r.Connection.NetworkService = "empty" }, code: codes.NotFound, mention: `"empty"`},
		{name: "named endpoint unknown", mutate: func(r *networkservice.NetworkServiceRequest) { r.Connection.NetworkServiceEndpointName = "ghost" }, code: codes.NotFound, mention: "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request("icmp", nil)
			tt.mutate(req)
			_, err := cli.Request(ctx, req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.mention) {
				t.Fatalf("err = %v, want %s mentioning %q", err, tt.code, tt.mention)
			}
		})
	}
	if len(n.Manager.Connections()) != 0 || len(n.Dataplane.Calls("Connect")) != 0 {
		t.Fatal("bad requests left state or reached the dataplane")
	}
}

// TestNotFoundNamesTheMatch: with the architecture document's scale from
// zero as written (no fallthrough on its first match) and no endpoint on
// the client's node, the client's NotFound names the match that applied,
// what it looked for, and the supplier match fallthrough would have reached;
// the supplier is never asked (NSM's semantics: no implicit fallthrough).
func TestNotFoundNamesTheMatch(t *testing.T) {
	data, err := os.ReadFile("../deployments/examples/architecture/networkservices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Decode("networkservices.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	scale := objs[len(objs)-1].Service
	if len(scale.GetMatches()) != 2 || scale.GetMatches()[0].GetFallthrough() {
		t.Fatalf("the last example is not scale from zero as written: %v", scale)
	}
	scale.Name, _, _ = strings.Cut(scale.GetName(), "@")

	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(scale)
	started := make(chan struct{}, 1)
	n.ServeEndpoint("supplier", &supplier{start: func() { started <- struct{}{} }}, map[string]string{"supplier": "true"}, "local-vl3")
	n.ServeICMPResponder("vl3-elsewhere", map[string]string{"nodeName": "node9"}, "local-vl3")

	_, err = n.Client("nsc").Request(ctxT(t), request("local-vl3", nil))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	msg := status.Convert(err).Message()
	t.Logf("NotFound: %s", msg)
	for _, want := range []string{
		`network service "local-vl3": no endpoint matches labels {nodeName=node1} (2 registered)`,
		"matches[0] (source_selector {}) applies and selects no endpoint with destination selectors {nodeName=node1}",
		"matches[1] (source_selector {}, destination selectors {supplier=true}) was not tried",
		`set "fallthrough: true" on matches[0]`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("NotFound message lacks %q:\n%s", want, msg)
		}
	}
	select {
	case <-started:
		t.Error("the supplier was asked although matches[0] has no fallthrough")
	default:
	}
}

// TestDeadEndpointReselect: an endpoint that is registered but does not
// answer is passed over within the same Request.
func TestDeadEndpointReselect(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 2})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	sb.Nodes[1].ServeICMPResponder("alive", nil, "icmp")
	// "dead" is registered at a manager URL where nothing listens.
	ctx := ctxT(t)
	_, err := regapi.NewNetworkServiceEndpointRegistryClient(sb.RegConn).Register(ctx, &regapi.NetworkServiceEndpoint{
		Name: "dead", Url: "tcp://127.0.0.1:1", NetworkServiceNames: []string{"icmp"},
		ExpirationTime: timestamppb.New(time.Now().Add(time.Hour)),
	})
	if err != nil {
		t.Fatal(err)
	}
	cli := sb.Nodes[0].Client("nsc")
	for i := range 4 { // round robin starts at each of the two in turn
		conn, err := cli.Request(ctx, request("icmp", nil))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if conn.GetNetworkServiceEndpointName() != "alive" {
			t.Fatalf("request %d landed on %s", i, conn.GetNetworkServiceEndpointName())
		}
	}
	// With only the dead one left, the error names what was tried.
	for _, e := range sb.Nodes[1].Endpoints() {
		e.Stop()
	}
	waitFor(t, "alive's registration to go", func() bool { return len(findEndpoints(t, sb, "alive")) == 0 })
	_, err = cli.Request(ctx, request("icmp", nil))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "dead") {
		t.Fatalf("err = %v, want Unavailable naming the dead candidate", err)
	}
}

func findEndpoints(t *testing.T, sb *sandbox.Sandbox, name string) []*regapi.NetworkServiceEndpoint {
	stream, err := regapi.NewNetworkServiceEndpointRegistryClient(sb.RegConn).Find(ctxT(t), &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: name}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*regapi.NetworkServiceEndpoint
	for {
		r, err := stream.Recv()
		if err != nil {
			return out
		}
		out = append(out, r.NetworkServiceEndpoint)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRefreshAndExpiry: a refreshed connection lives past its first
// expiry; one that is not refreshed is closed on every hop.
//
// Expiry runs on a clock the test moves: nothing depends on a lifetime
// passing in real time, which a starved refresh on a loaded machine
// missed. Lifetimes are 10 minutes and the clock moves by minutes, so
// the real seconds the calls take do not matter.
func TestRefreshAndExpiry(t *testing.T) {
	const lifetime = 10 * time.Minute
	clk := clock.NewOffset()
	sb := sandbox.New(t, sandbox.Options{Nodes: 2, MaxTokenLifetime: lifetime, Clock: clk})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	sb.Nodes[1].ServeICMPResponder("icmp-remote", nil, "icmp")
	cli := sb.Nodes[0].Client("nsc")
	ctx := ctxT(t)
	// A request whose client segment expires a lifetime from the clock's now.
	requestNow := func(conn *networkservice.Connection) *networkservice.NetworkServiceRequest {
		req := request("icmp", nil)
		if conn != nil {
			req.Connection = conn
		}
		req.Connection.GetPath().GetPathSegments()[0].Expires = timestamppb.New(clk.Now().Add(lifetime))
		return req
	}
	hopsHold := func(n int) bool {
		for _, nd := range sb.Nodes {
			if len(nd.Manager.Connections()) != n || len(nd.Dataplane.Live()) != n || len(nd.Forwarder.Connections()) != n {
				return false
			}
		}
		return true
	}

	kept, err := cli.Request(ctx, requestNow(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Request(ctx, requestNow(nil)); err != nil {
		t.Fatal(err)
	}
	firstExpiry := kept.GetPath().GetPathSegments()[1].GetExpires().AsTime()
	addr := kept.GetContext().GetIpContext().GetSrcIpAddrs()[0]
	// Six of ten minutes on: nothing is due yet.
	clk.Advance(6 * time.Minute)
	if !hopsHold(2) {
		t.Fatal("a connection was closed before its expiry")
	}
	kept, err = cli.Request(ctx, &networkservice.NetworkServiceRequest{Connection: requestNow(kept).Connection, MechanismPreferences: request("", nil).MechanismPreferences})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if got := kept.GetPath().GetPathSegments()[1].GetExpires().AsTime(); !got.After(firstExpiry.Add(5 * time.Minute)) {
		t.Fatalf("refresh moved the expiry from %s to %s only", firstExpiry, got)
	}
	if got := kept.GetContext().GetIpContext().GetSrcIpAddrs()[0]; got != addr {
		t.Fatalf("refresh changed the address %s -> %s", addr, got)
	}
	// Past the first expiry (minute 11), before the refreshed one (16).
	clk.Advance(5 * time.Minute)
	if !clk.Now().After(firstExpiry) {
		t.Fatalf("the clock is at %s, not past the first expiry %s", clk.Now(), firstExpiry)
	}
	// Only the refreshed one is left, on every hop.
	waitFor(t, "the unrefreshed connection to be closed everywhere", func() bool { return hopsHold(1) })
	for _, n := range sb.Nodes {
		for _, c := range n.Manager.Connections() {
			if c.GetPath().GetPathSegments()[0].GetId() != kept.GetId() {
				t.Fatalf("%s kept the wrong connection", n.Name)
			}
		}
	}
}

func TestMonitorConnections(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	cli := n.Client("nsc")
	ctx := ctxT(t)

	before, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	mine := request("icmp", nil)
	stream, err := cli.MonitorConnections(ctx, &networkservice.MonitorScopeSelector{
		PathSegments: []*networkservice.PathSegment{{Id: mine.Connection.Id}},
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := cli.MonitorConnections(ctx, &networkservice.MonitorScopeSelector{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetType() != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER || len(ev.GetConnections()) != 0 {
		t.Fatalf("first event %v %v", ev, err)
	}
	ev, _ = all.Recv()
	if ev.GetType() != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER || len(ev.GetConnections()) != 1 {
		t.Fatalf("initial state of everything: %v", ev)
	}
	conn, err := cli.Request(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Close(ctx, before); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range ev.GetConnections() {
			if c.GetPath().GetPathSegments()[0].GetId() != mine.Connection.Id {
				t.Fatalf("selector leaked another connection: %v", c)
			}
		}
		got = append(got, ev.GetType().String())
	}
	if strings.Join(got, ",") != "UPDATE,DELETE" {
		t.Fatalf("events %v", got)
	}
	var types []string
	for range 3 {
		ev, _ := all.Recv()
		types = append(types, ev.GetType().String())
	}
	if strings.Join(types, ",") != "UPDATE,DELETE,DELETE" {
		t.Fatalf("all events %v", types)
	}
}

// TestMonitorLostOnly: a MonitorConnections stream that asks for losses
// only (as one vwire manager watching another does) gets the initial
// state and every DELETE, trimmed to ids, state and path names, and no
// UPDATE of a connection that is UP; a stream beside it that does not ask
// gets everything in full.
func TestMonitorLostOnly(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	cli := n.Client("nsc")
	ctx := ctxT(t)

	before, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	lost, err := cli.MonitorConnections(metadata.AppendToOutgoingContext(ctx, manager.MDLostOnly, "true"), &networkservice.MonitorScopeSelector{})
	if err != nil {
		t.Fatal(err)
	}
	full, err := cli.MonitorConnections(ctx, &networkservice.MonitorScopeSelector{})
	if err != nil {
		t.Fatal(err)
	}
	trimmed := func(c *networkservice.Connection, state networkservice.State) {
		t.Helper()
		want := &networkservice.Connection{Id: c.GetId(), State: state, Path: &networkservice.Path{Index: c.GetPath().GetIndex()}}
		for _, s := range c.GetPath().GetPathSegments() {
			if s.GetName() == "" || s.GetId() == "" {
				t.Fatalf("segment without name or id: %v", s)
			}
			want.Path.PathSegments = append(want.Path.PathSegments, &networkservice.PathSegment{Name: s.GetName(), Id: s.GetId()})
		}
		if len(want.Path.PathSegments) < 2 || !proto.Equal(c, want) {
			t.Fatalf("lost-only view %v, want %v", c, want)
		}
	}
	ev, err := lost.Recv()
	if err != nil || ev.GetType() != networkservice.ConnectionEventType_INITIAL_STATE_TRANSFER || len(ev.GetConnections()) != 1 {
		t.Fatalf("lost-only initial state %v %v", ev, err)
	}
	for _, c := range ev.GetConnections() {
		trimmed(c, networkservice.State_UP)
	}
	if ev, err := full.Recv(); err != nil || len(ev.GetConnections()) != 1 {
		t.Fatalf("full initial state %v %v", ev, err)
	}
	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*networkservice.Connection{conn, before} {
		if _, err := cli.Close(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var types []string
	for range 3 {
		ev, err := full.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range ev.GetConnections() {
			if c.GetMechanism() == nil || c.GetPath().GetPathSegments()[0].GetToken() == "" {
				t.Fatalf("full event without mechanism or token: %v", c)
			}
		}
		types = append(types, ev.GetType().String())
	}
	if strings.Join(types, ",") != "UPDATE,DELETE,DELETE" {
		t.Fatalf("full stream events %v", types)
	}
	types = nil
	for range 2 {
		ev, err := lost.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range ev.GetConnections() {
			trimmed(c, networkservice.State_DOWN)
		}
		types = append(types, ev.GetType().String())
	}
	if strings.Join(types, ",") != "DELETE,DELETE" {
		t.Fatalf("lost-only stream events %v, want the two DELETEs only", types)
	}
}

// TestParallel: 200 Requests at once, local and remote, all connect with
// distinct addresses; after they are closed the managers' goroutines are
// back to their baseline.
func TestParallel(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 2})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	sb.Nodes[0].ServeICMPResponder("icmp-local", nil, "icmp")
	sb.Nodes[1].ServeICMPResponder("icmp-remote", nil, "icmp")
	cli := sb.Nodes[0].Client("nsc")
	// The 200 calls of a burst start together and take, together, what a
	// loaded machine gives them: one deadline for all (60 s) expired under
	// -race at a load of 30, and so does a deadline per call counted from
	// its start (30 s at a load of 27), since the burst's calls are served
	// side by side. What must not happen is a call that hangs: a burst
	// fails when no call of it has ended for stall, and each call has its
	// own deadline besides.
	const stall = 30 * time.Second
	call := func(p *progress) (context.Context, context.CancelFunc) {
		return context.WithTimeout(p.ctx, 5*time.Minute)
	}
	warm := newProgress(t, stall)
	ctx, cancel := call(warm) // the four warm-up calls, one after the other
	defer cancel()
	// Warm up connections and pools, then take the baseline.
	c, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*networkservice.Connection{c, c2} {
		if _, err := cli.Close(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	warm.finish()
	time.Sleep(200 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	const n = 200
	conns := make([]*networkservice.Connection, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	reqs := newProgress(t, stall)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := call(reqs)
			defer cancel()
			defer reqs.ended()
			conn, err := cli.Request(ctx, request("icmp", nil))
			if err != nil {
				errs <- fmt.Errorf("request %d: %w", i, reqs.why(err))
				return
			}
			conns[i] = conn
		}()
	}
	wg.Wait()
	reqs.finish()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, c := range conns {
		key := c.GetNetworkServiceEndpointName() + "/" + c.GetContext().GetIpContext().GetSrcIpAddrs()[0]
		if other, dup := seen[key]; dup {
			t.Fatalf("%s given to %s and %s", key, other, c.GetId())
		}
		seen[key] = c.GetId()
	}
	if got := len(sb.Nodes[0].Manager.Connections()); got != n {
		t.Fatalf("manager holds %d connections, want %d", got, n)
	}
	closes := newProgress(t, stall)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := call(closes)
			defer cancel()
			defer closes.ended()
			if _, err := cli.Close(ctx, c); err != nil {
				t.Error(closes.why(err))
			}
		}()
	}
	wg.Wait()
	closes.finish()
	for _, node := range sb.Nodes {
		if conns, live := node.Manager.Connections(), node.Dataplane.Live(); len(conns) != 0 || len(live) != 0 {
			var ids []string
			for _, c := range conns {
				ids = append(ids, c.GetId())
			}
			t.Fatalf("%s: state left after closing all: manager %v, dataplane %v", node.Name, ids, slices.Collect(maps.Keys(live)))
		}
	}
	waitFor(t, fmt.Sprintf("goroutines back to %d", baseline), func() bool { return runtime.NumGoroutine() <= baseline+2 })
}

// progress is the context of a burst of calls: cancelled when stall passes
// without a call of the burst ending (a hang, not a slow machine). Its
// watcher stops at finish, or when the test ends.
type progress struct {
	ctx    context.Context
	last   atomic.Int64 // unix nanoseconds of the last end
	finish func()       // stops the watcher; safe to call twice
}

func newProgress(t *testing.T, stall time.Duration) *progress {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := make(chan struct{})
	done := make(chan struct{})
	var once sync.Once
	p := &progress{ctx: ctx, finish: func() {
		once.Do(func() { close(stop); <-done; cancel(nil) })
	}}
	p.last.Store(time.Now().UnixNano())
	t.Cleanup(p.finish)
	go func() {
		defer close(done)
		tick := time.NewTicker(stall / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if time.Since(time.Unix(0, p.last.Load())) > stall {
					cancel(fmt.Errorf("no call ended for %v", stall))
					return
				}
			}
		}
	}()
	return p
}

func (p *progress) ended() { p.last.Store(time.Now().UnixNano()) }

// why adds the burst's cancel cause, if any, to a call's error.
func (p *progress) why(err error) error {
	if cause := context.Cause(p.ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w (%v)", err, cause)
	}
	return err
}

// slowService starts a one-node sandbox with service "slow" served by an
// icmp-responder endpoint as wrap wraps it, and returns the node.
func slowService(t *testing.T, wrap func(networkservice.NetworkServiceServer) networkservice.NetworkServiceServer) *sandbox.Node {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "slow"})
	svc, err := icmpresponder.New()
	if err != nil {
		t.Fatal(err)
	}
	ep, err := nse.New(nse.Config{Name: "slow-1", Service: svc, Source: sb.Source("nse-slow-1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Stop)
	n.ServeEndpoint("slow-1", wrap(ep), nil, "slow")
	return n
}

// slowFirst is an endpoint whose first Request takes delay.
type slowFirst struct {
	networkservice.NetworkServiceServer
	once  sync.Once
	delay time.Duration
}

func (s *slowFirst) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	s.once.Do(func() { time.Sleep(s.delay) })
	return s.NetworkServiceServer.Request(ctx, req)
}

// slowClose is an endpoint whose Close takes delay, as a hop does when a
// burst of Closes is served side by side on a loaded node.
type slowClose struct {
	networkservice.NetworkServiceServer
	delay  time.Duration
	closed atomic.Bool // its Close has ended
}

func (s *slowClose) Close(ctx context.Context, conn *networkservice.Connection) (*emptypb.Empty, error) {
	time.Sleep(s.delay)
	defer s.closed.Store(true)
	return s.NetworkServiceServer.Close(ctx, conn)
}

// TestCloseWaitsForSlowPath: a Close whose caller waits long enough
// returns only once the path behind it is closed, even when that takes
// longer than the managers' and forwarders' own cleanup bound (15 s).
// The manager's Close used to give up on its forwarder after that bound
// and answer while the forwarder was still closing the vWire: TestParallel
// then found it in the dataplane after every Close had returned.
func TestCloseWaitsForSlowPath(t *testing.T) {
	slow := &slowClose{delay: 16 * time.Second} // beyond the 15 s cleanup bound
	n := slowService(t, func(ep networkservice.NetworkServiceServer) networkservice.NetworkServiceServer {
		slow.NetworkServiceServer = ep
		return slow
	})
	cli := n.Client("nsc")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := cli.Request(ctx, request("slow", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if !slow.closed.Load() {
		t.Error("Close returned before the endpoint's Close ended")
	}
	if got := n.Manager.Connections(); len(got) != 0 {
		t.Errorf("manager holds %d connections after Close returned", len(got))
	}
	if got := n.Dataplane.Live(); len(got) != 0 {
		t.Errorf("dataplane holds %d vWires after Close returned", len(got))
	}
}

// TestRetriedRequestIsOneConnection: a client that sends its request again
// while the first is still being served (its first try timed out on its
// side) gets the same connection back, not a second vWire for its one
// interface.
func TestRetriedRequestIsOneConnection(t *testing.T) {
	n := slowService(t, func(ep networkservice.NetworkServiceServer) networkservice.NetworkServiceServer {
		return &slowFirst{NetworkServiceServer: ep, delay: 500 * time.Millisecond}
	})
	cli := n.Client("nsc")
	ctx := ctxT(t)

	req := request("slow", nil)
	var wg sync.WaitGroup
	replies := make([]*networkservice.Connection, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = cli.Request(ctx, proto.Clone(req).(*networkservice.NetworkServiceRequest))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if a, b := replies[0].GetPath().GetPathSegments()[1].GetId(), replies[1].GetPath().GetPathSegments()[1].GetId(); a != b {
		t.Errorf("the manager made two connections for one client connection: %s and %s", a, b)
	}
	if got := len(n.Manager.Connections()); got != 1 {
		t.Errorf("manager holds %d connections, want 1", got)
	}
	if got := len(n.Dataplane.Live()); got != 1 {
		t.Errorf("dataplane holds %d vWires, want 1", got)
	}
}
