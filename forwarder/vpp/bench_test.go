package vpp

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"

	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// BenchmarkRequestToReply measures, per mechanism, the dataplane's share of
// a forwarder Request until its reply can go back: Accept of the incoming
// side, Offer onward, and Connect (every VPP call answered by govpp's mock
// adapter). Disconnect runs outside the timer.
func BenchmarkRequestToReply(b *testing.B) {
	for _, tc := range []struct {
		name    string
		in      func() *networkservice.Mechanism // the previous hop's preference
		remote  bool
		payload string
	}{
		{"kernel", func() *networkservice.Mechanism { return kernelMech(nsClient, "nsm-c") }, false, payload.IP},
		{"memif", func() *networkservice.Mechanism { return memif.New(memif.Params{}) }, false, payload.Ethernet},
		{"vxlan", nil, true, payload.Ethernet},
		{"wireguard", nil, true, payload.IP},
		{"ipsec", nil, true, payload.IP},
	} {
		b.Run(tc.name, func(b *testing.B) {
			server := newTestNode(b, "192.0.2.2")
			client := newTestNode(b, "192.0.2.1")
			ctx := context.Background()
			typ := map[string]string{"vxlan": vxlan.Type, "wireguard": wireguard.Type, "ipsec": ipsec.Type}[tc.name]
			c := &networkservice.Connection{Payload: tc.payload}
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("bench-%d", i)
				var pref *networkservice.Mechanism
				if tc.remote {
					b.StopTimer()
					offers, err := client.dp.Offer(ctx, id, c, true)
					if err != nil {
						b.Fatal(err)
					}
					pref = offers[slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == typ })]
					b.StartTimer()
				} else {
					pref = tc.in()
				}
				in, err := server.dp.Accept(ctx, id, c, []*networkservice.Mechanism{pref})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := server.dp.Offer(ctx, id, c, false); err != nil {
					b.Fatal(err)
				}
				ep := kernel.New(kernel.Params{Name: "nsm-e", NetNSURL: "file://" + nsServer})
				if err := server.dp.Connect(ctx, id, conn(in, tc.payload), conn(ep, tc.payload)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := server.dp.Disconnect(ctx, id); err != nil {
					b.Fatal(err)
				}
				if tc.remote {
					_ = client.dp.Disconnect(ctx, id)
				}
				server.vpp.requests(true)
				client.vpp.requests(true)
				b.StartTimer()
			}
		})
	}
}

var rxPackets = regexp.MustCompile(`rx packets\s+(\d+)`)

// BenchmarkMemif2Memif measures packets/s from one memif workload to another
// through a vWire the forwarder built, and through VPP's own memif l2xc made
// by hand on the same VPP: the two should match (the vWire is that l2xc).
// It needs a real VPP (VPP_BIN); each run sends for two seconds with VPP's
// packet generator.
func BenchmarkMemif2Memif(b *testing.B) {
	needVPP(b)
	ns := newNS(b, "node")
	dp := startNode(b, ns, "")
	for _, mode := range []string{"vwire", "vpp-l2xc"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			src, dst := newWorkload(b, "memif", "nsc", "172.16.250.1"), newWorkload(b, "memif", "nse", "172.16.250.2")
			srcFile, dstFile := "bench-src-"+mode, "bench-dst-"+mode
			srcSock := "abstract:" + srcFile + ",netns_name=" + src.ns.path
			dstSock := "abstract:" + dstFile + ",netns_name=" + dst.ns.path
			switch mode {
			case "vwire":
				in := memif.New(memif.Params{SocketFile: srcFile, NetNSURL: "file://" + src.ns.path})
				out := memif.New(memif.Params{SocketFile: dstFile, NetNSURL: "file://" + dst.ns.path})
				if err := dp.Connect(ctx, "bench", conn(in, payload.Ethernet), conn(out, payload.Ethernet)); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = dp.Disconnect(ctx, "bench") })
			case "vpp-l2xc":
				var ifs []SwIfIndex
				for _, s := range []string{srcSock, dstSock} {
					sock, err := dp.vpp.CreateMemifSocket(ctx, s)
					if err != nil {
						b.Fatal(err)
					}
					idx, err := dp.vpp.CreateMemif(ctx, MemifSpec{SocketID: sock})
					if err != nil {
						b.Fatal(err)
					}
					if err := dp.vpp.SetInterfaceUp(ctx, idx); err != nil {
						b.Fatal(err)
					}
					ifs = append(ifs, idx)
					b.Cleanup(func() { _ = dp.vpp.DeleteMemif(ctx, idx); _ = dp.vpp.DeleteMemifSocket(ctx, sock) })
				}
				_ = dp.vpp.CreateL2XC(ctx, L2XC{Rx: ifs[0], Tx: ifs[1]})
				_ = dp.vpp.CreateL2XC(ctx, L2XC{Rx: ifs[1], Tx: ifs[0]})
			}
			src.memif.attach(b, srcFile, false, src.addr, dst.addr)
			dst.memif.attach(b, dstFile, false, dst.addr, src.addr)
			eventually(b, 20*time.Second, func() error { return src.memif.ping(b, dst.addr) })
			src.memif.cli(b, `packet-generator new {
  name bench
  limit -1
  size 64-64
  node memif1/0-output
  data {
    IP4: 02:fe:00:00:00:01 -> ff:ff:ff:ff:ff:ff
    UDP: 172.16.250.1 -> 172.16.250.2
    UDP: 1234 -> 5678
    length 22
    incrementing 1
  }
}`)
			rx := func() uint64 {
				m := rxPackets.FindStringSubmatch(dst.memif.cli(b, "show interface memif1/0"))
				if m == nil {
					return 0
				}
				v, _ := strconv.ParseUint(m[1], 10, 64)
				return v
			}
			b.ResetTimer()
			var total uint64
			var elapsed time.Duration
			for range b.N {
				start, t0 := rx(), time.Now()
				src.memif.cli(b, "packet-generator enable-stream bench")
				time.Sleep(2 * time.Second)
				src.memif.cli(b, "packet-generator disable-stream bench")
				time.Sleep(100 * time.Millisecond)
				total += rx() - start
				elapsed += time.Since(t0)
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "pkts/s")
		})
	}
}
