package vpp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

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

// BenchmarkBurst builds 100 vWires at once on a real VPP (VPP_BIN; else on
// the fake, which measures only vwire's and govpp's share), from
// 20 goroutines, as a node does when its clients all come at once, and
// reports where the time goes: each VPP message's p50 and p99 from
// vwire_vpp_api_seconds (logged per message; reported for the
// mechanism's create message and for the slowest message), each Connect's
// p50 and p99, and the health-check misses, NotResponding events and
// failed Connects the burst caused. Disconnect runs outside the timer.
// memif: VPP-master memifs on socket files; kernel: veth pairs joined to
// the KERNEL trunk, each a VLAN sub-interface of its af_packet (the path
// of issue #16's 100 vWires), all in two namespaces.
func BenchmarkBurst(b *testing.B) {
	const workers = 20
	for _, kind := range []string{"memif", "kernel"} {
		b.Run(kind, func(b *testing.B) {
			m := NewMetrics()
			withMetrics := func(c *Config) { c.Metrics = m }
			var (
				dp       *Dataplane
				nsc, nse = itNS{path: nsClient}, itNS{path: nsServer}
				on       = "govpp's mock adapter (the fake VPP): not VPP's figures"
			)
			vwires := 100
			if os.Getenv("VPP_BIN") == "" {
				// The fake answers inside SendMsg, so a dump of more
				// than govpp's 100-reply buffer stalls it: fewer vWires.
				dp, vwires = newTestNode(b, "192.0.2.1", withMetrics).dp, 40
			} else {
				// The pool reserved for its memifs (memifroom.go).
				reserve := func(c *Config) { c.MemifReserve = 2*vwires + 8 }
				dp, on = startNode(b, newNS(b, "node"), "", withMetrics, reserve), "VPP"
				if kind == "kernel" {
					nsc, nse = newNS(b, "nsc"), newNS(b, "nse")
				}
			}
			mechs := func(i int) (in, out *networkservice.Connection) {
				if kind == "memif" {
					return conn(memifMech(fmt.Sprintf("burst-%d-c.sock", i)), payload.Ethernet),
						conn(memifMech(fmt.Sprintf("burst-%d-e.sock", i)), payload.Ethernet)
				}
				cc := ipCtx(fmt.Sprintf("10.99.%d.1", i), fmt.Sprintf("10.99.%d.2", i))
				in = &networkservice.Connection{Mechanism: kernelMech(nsc.path, fmt.Sprintf("nsm-c%d", i)), Context: cc, Payload: payload.IP}
				out = &networkservice.Connection{Mechanism: kernelMech(nse.path, fmt.Sprintf("nsm-e%d", i)), Context: proto.Clone(cc).(*networkservice.ConnectionContext), Payload: payload.IP}
				return in, out
			}
			misses0 := testutil.ToFloat64(govpp.metrics.healthMisses)
			notResponding0 := testutil.ToFloat64(m.connEvents.WithLabelValues("not_responding"))
			connected0 := testutil.ToFloat64(m.connEvents.WithLabelValues("connected"))
			unanswered0 := len(govpp.logs.loggedPrefix("Read error: "))
			var (
				mu      sync.Mutex
				took    []time.Duration
				failed  int
				lastErr error
			)
			ctx := context.Background()
			b.ResetTimer()
			for iter := range b.N {
				ids := make(chan int)
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range ids {
							in, out := mechs(i)
							start := time.Now()
							err := dp.Connect(ctx, fmt.Sprintf("burst-%d-%d", iter, i), in, out)
							d := time.Since(start)
							mu.Lock()
							took = append(took, d)
							if err != nil {
								failed++
								lastErr = err
							}
							mu.Unlock()
						}
					}()
				}
				for i := range vwires {
					ids <- i
				}
				close(ids)
				wg.Wait()
				b.StopTimer()
				for i := range vwires {
					_ = dp.Disconnect(ctx, fmt.Sprintf("burst-%d-%d", iter, i))
				}
				b.StartTimer()
			}
			b.StopTimer()
			elapsed := b.Elapsed()
			if lastErr != nil {
				b.Logf("%d of %d Connects failed; last: %v", failed, len(took), lastErr)
			}
			slices.Sort(took)
			b.ReportMetric(float64(len(took))/elapsed.Seconds(), "vwires/s")
			b.ReportMetric(ms(took[len(took)/2]), "connect-p50-ms")
			b.ReportMetric(ms(took[len(took)*99/100]), "connect-p99-ms")
			b.ReportMetric(testutil.ToFloat64(govpp.metrics.healthMisses)-misses0, "hc-misses")
			b.ReportMetric(testutil.ToFloat64(m.connEvents.WithLabelValues("not_responding"))-notResponding0, "not-responding")
			b.ReportMetric(float64(failed), "failed")
			// Whether VPP itself stopped, not only govpp's view of it:
			// reconnects VPP left unanswered, reconnects that worked, and
			// whether VPP's CLI (served by the same main thread) answers.
			b.ReportMetric(float64(len(govpp.logs.loggedPrefix("Read error: "))-unanswered0), "unanswered-connects")
			b.ReportMetric(testutil.ToFloat64(m.connEvents.WithLabelValues("connected"))-connected0, "reconnects")
			if on == "VPP" {
				b.ReportMetric(cliAnswers(dp), "cli-answers")
			}

			create := map[string]string{"memif": "memif_create_v2", "kernel": "create_vlan_subif"}[kind]
			var worst string
			var worstP99 float64
			var lines []string
			for msg, h := range histograms(b, m) {
				p50, p99 := bucketQuantile(h, 0.5), bucketQuantile(h, 0.99)
				lines = append(lines, fmt.Sprintf("%s %d× %.3f/%.3f", msg, h.GetSampleCount(), p50*1e3, p99*1e3))
				if msg == create {
					b.ReportMetric(p50*1e3, "create-p50-ms")
					b.ReportMetric(p99*1e3, "create-p99-ms")
				}
				if p99 > worstP99 {
					worst, worstP99 = msg, p99
				}
			}
			slices.Sort(lines)
			// One line per run: testing keeps ten lines of a benchmark's
			// output over all its runs (the first has b.N = 1).
			b.Logf("%s burst on %s, %d x %d vWires from %d goroutines, health check %v/%v/%d; vwire_vpp_api_seconds, message calls× p50/p99 ms: %s",
				kind, on, b.N, vwires, workers, govpp.health.Interval, govpp.health.Timeout, govpp.health.Threshold, strings.Join(lines, "; "))
			b.Logf("slowest p99: %s", worst)
			b.ReportMetric(worstP99*1e3, "worst-msg-p99-ms")
		})
	}
}

// cliAnswers is 1 when VPP's CLI answers "show clock" within 10 s, else 0.
func cliAnswers(dp *Dataplane) float64 {
	dp.mu.Lock()
	proc := dp.proc
	dp.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vppctl := filepath.Join(filepath.Dir(os.Getenv("VPP_BIN")), "vppctl")
	if err := exec.CommandContext(ctx, vppctl, "-s", proc.CLISocket, "show", "clock").Run(); err != nil {
		return 0
	}
	return 1
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// histograms returns vwire_vpp_api_seconds by message.
func histograms(t testing.TB, m *Metrics) map[string]*dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	go func() {
		m.apiSeconds.Collect(ch)
		close(ch)
	}()
	out := map[string]*dto.Histogram{}
	for pm := range ch {
		var d dto.Metric
		if err := pm.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "msg" {
				out[l.GetValue()] = d.GetHistogram()
			}
		}
	}
	return out
}

// bucketQuantile estimates quantile q of h as Prometheus's
// histogram_quantile does: linearly within the bucket it falls in.
func bucketQuantile(h *dto.Histogram, q float64) float64 {
	n := float64(h.GetSampleCount())
	if n == 0 {
		return 0
	}
	rank := q * n
	lower, below := 0.0, 0.0
	for _, bk := range h.GetBucket() {
		upper, cum := bk.GetUpperBound(), float64(bk.GetCumulativeCount())
		if cum >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return lower // beyond the last bucket: its bound is all we know
}
