package manager_test

import (
	"strings"
	"testing"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/test/sandbox"
)

// TestEndpointRegistration: a local endpoint is in the registry under its
// manager's URL, and is unregistered when its process goes away.
func TestEndpointRegistration(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	ep := n.ServeICMPResponder("icmp-1", map[string]string{"app": "ping"}, "icmp")
	got := findEndpoints(t, sb, "icmp-1")
	if len(got) != 1 || got[0].GetUrl() != n.ManagerURL {
		t.Fatalf("registry has %v, want url %s", got, n.ManagerURL)
	}
	if got[0].GetNetworkServiceLabels()["icmp"].GetLabels()["app"] != "ping" {
		t.Fatalf("labels lost: %v", got[0].GetNetworkServiceLabels())
	}
	ep.Stop()
	waitFor(t, "the dead endpoint to be unregistered", func() bool { return len(findEndpoints(t, sb, "icmp-1")) == 0 })
}

// TestForwarderLoss: a forwarder that stops answering is dropped from
// selection; when it comes back, it registers again and live connections
// are rebuilt on it by their next refresh.
func TestForwarderLoss(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	cli := n.Client("nsc")
	ctx := ctxT(t)
	conn, err := cli.Request(ctx, request("icmp", nil))
	if err != nil {
		t.Fatal(err)
	}
	n.StopForwarder()
	waitFor(t, "the manager to drop the forwarder", func() bool {
		_, err := cli.Request(ctx, request("icmp", nil))
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "no forwarder")
	})
	n.StartForwarder()
	if len(n.Forwarder.Connections()) != 0 {
		t.Fatal("a new forwarder starts empty")
	}
	// The client refreshes the connection it has: same endpoint, same
	// addresses, and the new forwarder knows it again.
	again, err := cli.Request(ctx, refreshOf(conn))
	if err != nil {
		t.Fatalf("refresh after forwarder restart: %v", err)
	}
	if again.GetContext().GetIpContext().GetSrcIpAddrs()[0] != conn.GetContext().GetIpContext().GetSrcIpAddrs()[0] {
		t.Fatal("refresh after restart changed the addresses")
	}
	if len(n.Forwarder.Connections()) != 1 || len(n.Dataplane.Live()) != 1 {
		t.Fatalf("forwarder has %d connections, dataplane %d", len(n.Forwarder.Connections()), len(n.Dataplane.Live()))
	}
}
