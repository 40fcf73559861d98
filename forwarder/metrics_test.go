package forwarder_test

import (
	"context"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vwire/vwire/test/sandbox"
)

// TestCollector: the forwarder reports its live vWires and, when the
// dataplane counts per vWire, each one's counters.
func TestCollector(t *testing.T) {
	sb := sandbox.New(t, sandbox.Options{Nodes: 1})
	n := sb.Nodes[0]
	n.Dataplane.Counters = map[string]string{"rx_packets": "7", "tx_bytes": "1500"}
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	n.ServeICMPResponder("icmp-1", nil, "icmp")
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Forwarder.Collector())
	req := &networkservice.NetworkServiceRequest{
		Connection: &networkservice.Connection{Id: "c1", NetworkService: "icmp",
			Path: &networkservice.Path{PathSegments: []*networkservice.PathSegment{{Name: "nsc", Id: "c1"}}}},
		MechanismPreferences: []*networkservice.Mechanism{{Cls: "LOCAL", Type: "KERNEL",
			Parameters: map[string]string{"name": "nsm-1", "inodeURL": "file:///proc/self/ns/net"}}},
	}
	conn, err := n.Client("nsc").Request(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	fwdSeg := conn.GetPath().GetPathSegments()[2]
	if fwdSeg.GetMetrics()["rx_packets"] != "7" {
		t.Fatalf("forwarder segment metrics %v", fwdSeg.GetMetrics())
	}
	want := `
# HELP vwire_forwarder_vwires Live vWires on this forwarder.
# TYPE vwire_forwarder_vwires gauge
vwire_forwarder_vwires 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vwire_forwarder_vwires"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "vwire_forwarder_vwire_counter"); err != nil || n != 2 {
		t.Fatalf("%d counter series (%v), want 2", n, err)
	}
}
