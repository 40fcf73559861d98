package manager_test

import (
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"

	"github.com/vwire/vwire/test/sandbox"
)

// refreshOf is the request an NSM client sends to refresh conn.
func refreshOf(conn *networkservice.Connection) *networkservice.NetworkServiceRequest {
	return &networkservice.NetworkServiceRequest{Connection: conn, MechanismPreferences: request("", nil).MechanismPreferences}
}

// benchRequest measures Request→reply (and the Close after it) through a
// manager and forwarder on the recording dataplane to an icmp-responder.
func benchRequest(b *testing.B, remote bool) {
	sb := sandbox.New(b, sandbox.Options{Nodes: 2})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	node := sb.Nodes[0]
	if remote {
		node = sb.Nodes[1]
	}
	node.ServeICMPResponder("icmp", nil, "icmp")
	cli := sb.Nodes[0].Client("nsc")
	ctx := ctxT(b)
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			conn, err := cli.Request(ctx, request("icmp", nil))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cli.Close(ctx, conn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				conn, err := cli.Request(ctx, request("icmp", nil))
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := cli.Close(ctx, conn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("refresh", func(b *testing.B) {
		conn, err := cli.Request(ctx, request("icmp", nil))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if conn, err = cli.Request(ctx, refreshOf(conn)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLocalRequest(b *testing.B)  { benchRequest(b, false) }
func BenchmarkRemoteRequest(b *testing.B) { benchRequest(b, true) }
