package manager_test

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/edwarnicke/grpcfd"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/test/sandbox"
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
	if _, err := os.Stat(path); err == nil {
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
