package connpath

import (
	"testing"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// benchConn is a connection as a remote chain's second forwarder answers
// it: six segments with tokens and expiries, a mechanism, an IP context.
func benchConn() *networkservice.Connection {
	c := &networkservice.Connection{Id: "id", NetworkService: "icmp", Labels: map[string]string{"nodeName": "node1"},
		Mechanism: &networkservice.Mechanism{Cls: "LOCAL", Type: "KERNEL", Parameters: map[string]string{"inodeURL": "file:///proc/self/ns/net", "name": "nsm-1"}},
		Context: &networkservice.ConnectionContext{IpContext: &networkservice.IPContext{SrcIpAddrs: []string{"169.254.0.1/32"}, DstIpAddrs: []string{"169.254.0.0/32"},
			SrcRoutes: []*networkservice.Route{{Prefix: "169.254.0.0/32"}}, DstRoutes: []*networkservice.Route{{Prefix: "169.254.0.1/32"}}}},
		Path: &networkservice.Path{Index: 2}, NetworkServiceEndpointName: "icmp", Payload: "IP"}
	for _, n := range []string{"nsc", "manager-node1", "forwarder-node1", "manager-node2", "forwarder-node2", "icmp"} {
		c.Path.PathSegments = append(c.Path.PathSegments, &networkservice.PathSegment{Name: n, Id: "0354246d-b6a2-5402-bb2f-370ddae0c892", Token: "token", Expires: timestamppb.Now()})
	}
	return c
}

func BenchmarkView(b *testing.B) {
	c := benchConn()
	b.Run("View", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = View(c)
		}
	})
	b.Run("proto.Clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = proto.Clone(c)
		}
	})
	b.Run("Shallow path", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Shallow(c.GetPath())
		}
	})
	b.Run("proto.Clone path", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = proto.Clone(c.GetPath())
		}
	})
}
