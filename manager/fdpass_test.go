package manager_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edwarnicke/grpcfd"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vwire/vwire/internal/token"
	"github.com/vwire/vwire/test/sandbox"
	"github.com/vwire/vwire/workload/nse"
	"github.com/vwire/vwire/workload/nse/icmpresponder"
)

// TestNetNSByDescriptor: an NSM client names its network namespace as
// inode://dev/ino and passes the descriptor beside the Request over the
// unix socket (grpcfd); the forwarder is given a path that opens the same
// namespace.
func TestNetNSByDescriptor(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	cli := n.Client("nsc")
	ctx := ctxT(t)

	const netns = "/proc/self/ns/net"
	u, err := grpcfd.FilenameToURL(netns)
	if err != nil {
		t.Fatal(err)
	}
	req := request("icmp", nil)
	req.MechanismPreferences[0].Parameters[common.InodeURL] = u.String()
	creds := grpcfd.PerRPCCredentials(nil)
	sender, _ := grpcfd.FromPerRPCCredentials(creds)
	sent := sender.SendFilename(netns)
	conn, err := cli.Request(ctx, req, grpc.PerRPCCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("send descriptor: %v", err)
	}
	live := n.Dataplane.Live()
	if len(live) != 1 {
		t.Fatalf("%d vWires", len(live))
	}
	var path string
	for _, v := range live {
		path = strings.TrimPrefix(v.In.GetMechanism().GetParameters()[common.InodeURL], "file://")
	}
	if !strings.HasPrefix(path, "/proc/") {
		t.Fatalf("forwarder got %q, want a /proc/<pid>/fd path", path)
	}
	want, _ := os.Stat(netns)
	got, err := os.Stat(path)
	if err != nil {
		t.Fatalf("forwarder's path does not open: %v", err)
	}
	if got.Sys().(*syscall.Stat_t).Ino != want.Sys().(*syscall.Stat_t).Ino {
		t.Fatal("the path names another namespace")
	}
	// The reply names the namespace as the client did: NSM's sendfd client
	// maps that URL back to its own path.
	if got := conn.GetMechanism().GetParameters()[common.InodeURL]; got != u.String() {
		t.Fatalf("reply names %q, want the client's %q", got, u)
	}
	// A refresh passes the descriptor again; the forwarder keeps its path.
	creds = grpcfd.PerRPCCredentials(nil)
	sender, _ = grpcfd.FromPerRPCCredentials(creds)
	sent = sender.SendFilename(netns)
	refresh := request("icmp", nil)
	refresh.Connection = conn
	refresh.MechanismPreferences[0].Parameters[common.InodeURL] = u.String()
	if conn, err = cli.Request(ctx, refresh, grpc.PerRPCCredentials(creds)); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("send descriptor: %v", err)
	}
	for _, v := range n.Dataplane.Live() {
		if p := strings.TrimPrefix(v.In.GetMechanism().GetParameters()[common.InodeURL], "file://"); p != path {
			t.Fatalf("after a refresh the forwarder has %q, before %q", p, path)
		}
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// The descriptor's number may already name another file the process
	// opened since (a probe's socket): kept means it still is the netns.
	if st, err := os.Stat(path); err == nil && os.SameFile(st, want) {
		t.Fatal("the manager kept the descriptor after Close")
	}

	// Without the descriptor (on a connection that never passed it; grpcfd
	// keeps what arrived per connection), the request is refused, clearly.
	req = request("icmp", nil)
	req.MechanismPreferences[0].Parameters[common.InodeURL] = u.String()
	if _, err := n.Client("nsc-2").Request(ctx, req); err == nil || !strings.Contains(err.Error(), "did not arrive") {
		t.Fatalf("request without the descriptor: %v", err)
	}
}

// TestEndpointSocketByDescriptor: an NSM endpoint registers its URL as
// inode://dev/ino and passes its socket's descriptor; the manager reaches
// it through that descriptor.
func TestEndpointSocketByDescriptor(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	ep := n.ServeICMPResponder("icmp-real", nil, "icmp")
	ctx := ctxT(t)

	// Register a second name for the same endpoint socket, by descriptor.
	sockPath := strings.TrimPrefix(ep.URL, "unix://")
	u, err := grpcfd.FilenameToURL(sockPath)
	if err != nil {
		t.Fatal(err)
	}
	reg := n.Client("nse-icmp-real")
	creds := grpcfd.PerRPCCredentials(nil)
	sender, _ := grpcfd.FromPerRPCCredentials(creds)
	sent := sender.SendFilename(sockPath)
	if _, err := reg.Registry.Register(ctx, &regapi.NetworkServiceEndpoint{
		Name: "icmp-by-fd", Url: u.String(), NetworkServiceNames: []string{"icmp"},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"icmp": {Labels: map[string]string{"via": "fd"}}},
	}, grpc.PerRPCCredentials(creds)); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	req := request("icmp", nil)
	req.Connection.NetworkServiceEndpointName = "icmp-by-fd"
	conn, err := n.Client("nsc").Request(ctx, req)
	if err != nil {
		t.Fatalf("request through the passed descriptor: %v", err)
	}
	if conn.GetNetworkServiceEndpointName() != "icmp-by-fd" {
		t.Fatalf("landed on %s", conn.GetNetworkServiceEndpointName())
	}
}

// fdEndpoint answers as NSM's endpoints do: its namespace as
// inode://<dev>/<ino>, its descriptor beside the reply when send is set
// (NSM's sendfd). On Close it reports whether the descriptor came beside
// the call (what NSM's recvfd waits for).
type fdEndpoint struct {
	networkservice.NetworkServiceServer
	send        bool
	closes      chan bool
	closeTokens chan bool // whether a Close carried the caller's token (when set)
}

const selfNetNS = "/proc/self/ns/net"

func (e *fdEndpoint) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	conn, err := e.NetworkServiceServer.Request(ctx, req)
	if err != nil {
		return nil, err
	}
	u, err := grpcfd.FilenameToURL(selfNetNS)
	if err != nil {
		return nil, err
	}
	conn.GetMechanism().GetParameters()[common.InodeURL] = u.String()
	if e.send {
		sender, ok := grpcfd.FromContext(ctx)
		if !ok {
			return nil, fmt.Errorf("no descriptor passing on this connection")
		}
		sender.SendFilename(selfNetNS)
	}
	return conn, nil
}

func (e *fdEndpoint) Close(ctx context.Context, conn *networkservice.Connection) (*emptypb.Empty, error) {
	if e.closeTokens != nil {
		// NSM's endpoints read the previous hop's token from the metadata
		// on Close as on Request. The path comes as the caller sent it:
		// its index is the caller's segment.
		prev := conn.GetPath().GetPathSegments()[conn.GetPath().GetIndex()].GetToken()
		toks := metadata.ValueFromIncomingContext(ctx, token.MDToken)
		e.closeTokens <- len(toks) == 1 && toks[0] == prev && prev != ""
	}
	got := false
	if recv, ok := grpcfd.FromContext(ctx); ok {
		if ch, err := recv.RecvFileByURL(conn.GetMechanism().GetParameters()[common.InodeURL]); err == nil {
			select {
			case f := <-ch:
				got = f != nil
				if f != nil {
					f.Close()
				}
			case <-time.After(2 * time.Second):
			}
		}
	}
	e.closes <- got
	return e.NetworkServiceServer.Close(ctx, conn)
}

// icmpNode is a one-node sandbox serving "icmp", and an icmp-responder
// endpoint named name for a test to wrap and serve.
func icmpNode(t *testing.T, name string) (*sandbox.Node, networkservice.NetworkServiceServer) {
	t.Helper()
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	svc, err := icmpresponder.New()
	if err != nil {
		t.Fatal(err)
	}
	inner, err := nse.New(nse.Config{Name: name, Service: svc, Source: sb.Source("nse-" + name)})
	if err != nil {
		t.Fatal(err)
	}
	return sb.Nodes[0], inner
}

// TestEndpointAnswersByDescriptor: the forwarder takes the namespace an
// endpoint names inode:// in its reply from the descriptor beside it, and
// sends that descriptor back beside its Close.
func TestEndpointAnswersByDescriptor(t *testing.T) {
	n, inner := icmpNode(t, "fd-nse")
	ep := &fdEndpoint{NetworkServiceServer: inner, send: true, closes: make(chan bool, 4), closeTokens: make(chan bool, 4)}
	n.ServeEndpoint("fd-nse", ep, nil, "icmp")
	cli := n.Client("nsc")
	ctx := ctxT(t)

	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.Stat(selfNetNS)
	for _, v := range n.Dataplane.Live() {
		p := strings.TrimPrefix(v.Out.GetMechanism().GetParameters()[common.InodeURL], "file://")
		got, err := os.Stat(p)
		if err != nil || !strings.HasPrefix(p, "/proc/") {
			t.Fatalf("the dataplane got %q (%v), want a /proc/<pid>/fd path", p, err)
		}
		if got.Sys().(*syscall.Stat_t).Ino != want.Sys().(*syscall.Stat_t).Ino {
			t.Fatal("the path names another namespace")
		}
	}
	if _, err := cli.Close(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if !<-ep.closeTokens {
		t.Error("the endpoint's Close came without the forwarder's token in nsm-client-token")
	}
	if !<-ep.closes {
		t.Fatal("the endpoint's Close came without the descriptor its reply named")
	}
}

// TestEndpointAnswerWithoutDescriptor: a reply that names inode:// without
// the descriptor fails the Request with a status naming the endpoint and
// the reason, and the connection the endpoint made is closed beside it.
func TestEndpointAnswerWithoutDescriptor(t *testing.T) {
	n, inner := icmpNode(t, "nofd-nse")
	ep := &fdEndpoint{NetworkServiceServer: inner, closes: make(chan bool, 4)}
	n.ServeEndpoint("nofd-nse", ep, nil, "icmp")
	expectRefusedAndClosed(t, n, ep.closes, "nofd-nse", "did not come with the reply")
}

// expectRefusedAndClosed requests the icmp service from n and wants a
// refusal naming endpoint nse and why, what the endpoint made closed
// (closes) and no vWire left.
func expectRefusedAndClosed(t *testing.T, n *sandbox.Node, closes <-chan bool, nse, why string) {
	t.Helper()
	_, err := n.Client("nsc").Request(ctxT(t), request("icmp", nil))
	if err == nil || status.Code(err) == codes.DeadlineExceeded ||
		!strings.Contains(err.Error(), "endpoint "+nse) || !strings.Contains(err.Error(), why) {
		t.Fatalf("Request: %v; want a refusal naming endpoint %s and %q", err, nse, why)
	}
	select {
	case <-closes:
	case <-time.After(30 * time.Second):
		t.Fatal("the endpoint's connection was not closed")
	}
	if live := n.Dataplane.Live(); len(live) != 0 {
		t.Fatalf("%d vWires left", len(live))
	}
}

// shortPathEndpoint answers with a path cut before the forwarder's segment.
type shortPathEndpoint struct {
	networkservice.NetworkServiceServer
	closes chan bool
}

func (e *shortPathEndpoint) Request(ctx context.Context, req *networkservice.NetworkServiceRequest) (*networkservice.Connection, error) {
	conn, err := e.NetworkServiceServer.Request(ctx, req)
	if err == nil {
		conn.Path.PathSegments = conn.Path.PathSegments[:1]
		conn.Path.Index = 0
	}
	return conn, err
}

func (e *shortPathEndpoint) Close(ctx context.Context, conn *networkservice.Connection) (*emptypb.Empty, error) {
	e.closes <- true
	return e.NetworkServiceServer.Close(ctx, conn)
}

// TestEndpointAnswerWithoutForwarderSegment: a reply whose path has no
// segment for the forwarder fails the Request with a status that says so
// (the forwarder does not index past the path), and what the endpoint made
// is closed.
func TestEndpointAnswerWithoutForwarderSegment(t *testing.T) {
	n, inner := icmpNode(t, "short-nse")
	ep := &shortPathEndpoint{NetworkServiceServer: inner, closes: make(chan bool, 4)}
	n.ServeEndpoint("short-nse", ep, nil, "icmp")
	expectRefusedAndClosed(t, n, ep.closes, "short-nse", "none for this hop")
}
