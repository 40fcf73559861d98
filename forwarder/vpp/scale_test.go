package vpp

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.fd.io/govpp/binapi/vlib"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// scaleN is the number of vWires of the scale tests: VWIRE_SCALE_N, else
// def.
func scaleN(t testing.TB, def int) int {
	t.Helper()
	v := os.Getenv("VWIRE_SCALE_N")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("VWIRE_SCALE_N=%q: want a positive integer", v)
	}
	return n
}

// vppObjects counts what a VPP holds of each object kind vwire makes.
func vppObjects(t testing.TB, d *Dataplane) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := d.vpp
	out := map[string]int{}
	count := func(kind string, n int, err error) {
		if err != nil {
			t.Fatalf("count %s: %v", kind, err)
		}
		out[kind] = n
	}
	ifs, err := c.ListInterfaces(ctx)
	count("interfaces", len(ifs), err)
	ms, err := c.ListMemifs(ctx)
	count("memifs", len(ms), err)
	socks, err := c.ListMemifSockets(ctx)
	count("memif sockets", len(socks), err)
	l2, err := c.ListL2XCs(ctx)
	count("l2xcs", len(l2), err)
	l3, err := c.ListL3XCs(ctx)
	count("l3xcs", len(l3), err)
	tables, err := c.ListIPTables(ctx)
	count("ip tables", len(tables), err)
	vx, err := c.ListVxlanTunnels(ctx)
	count("vxlan tunnels", len(vx), err)
	wg, err := c.ListWireguardInterfaces(ctx)
	count("wireguard interfaces", len(wg), err)
	peers, err := c.ListWireguardPeers(ctx)
	count("wireguard peers", len(peers), err)
	return out
}

// quantile returns quantile q of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*q))]
}

// parallel runs f(i) for i in [0, n) from workers goroutines and returns
// each call's duration (sorted) and the errors.
func parallel(n, workers int, f func(i int) error) (took []time.Duration, errs []error) {
	ids := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				start := time.Now()
				err := f(i)
				d := time.Since(start)
				mu.Lock()
				took = append(took, d)
				if err != nil {
					errs = append(errs, fmt.Errorf("%d: %w", i, err))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	slices.Sort(took)
	return took, errs
}

// TestScaleMemif builds 1,000 local memif vWires (VWIRE_SCALE_N) at once on
// one VPP (VWIRE_SCALE_WORKERS workers), from 20 goroutines as 20 clients requesting in
// parallel would, and removes them the same way: govpp never reports VPP as
// not responding, every vWire stands in VPP
// (tagged, up, cross-connected) and every VPP object is back to what it
// was after the last Disconnect. The time each phase took is logged, not
// asserted (BenchmarkBurst measures).
func TestScaleMemif(t *testing.T) {
	needVPP(t)
	const workers = 20
	n := scaleN(t, 1000)
	m := NewMetrics()
	dp := startNode(t, newNS(t, "node"), "", func(c *Config) { c.Metrics = m; c.Workers = scaleWorkers(t); c.MemifReserve = 2*n + 8 })
	base := vppObjects(t, dp)
	misses0 := testutil.ToFloat64(govpp.metrics.healthMisses)
	ctx := context.Background()
	id := func(i int) string { return fmt.Sprintf("scale-%d", i) }

	start := time.Now()
	took, errs := parallel(n, workers, func(i int) error {
		return dp.Connect(ctx, id(i),
			conn(memifMech(fmt.Sprintf("scale-%d-c.sock", i)), payload.Ethernet),
			conn(memifMech(fmt.Sprintf("scale-%d-e.sock", i)), payload.Ethernet))
	})
	up := time.Since(start)
	t.Cleanup(func() {
		for i := range n {
			_ = dp.Disconnect(ctx, id(i))
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d Connects failed; first: %v", len(errs), n, errs[0])
	}
	t.Logf("%d memif vWires up in %v from %d goroutines (%.0f/s); Connect p50 %v p99 %v",
		n, up.Round(time.Millisecond), workers, float64(n)/up.Seconds(), quantile(took, 0.5), quantile(took, 0.99))

	// Every vWire stands: both interfaces tagged for it, up, and
	// cross-connected both ways.
	got := vppObjects(t, dp)
	for kind, want := range map[string]int{"interfaces": 2 * n, "memifs": 2 * n, "memif sockets": 2 * n, "l2xcs": 2 * n} {
		if got[kind]-base[kind] != want {
			t.Errorf("%d vWires: %d more %s in VPP, want %d", n, got[kind]-base[kind], kind, want)
		}
	}
	t.Logf("vwire_vpp_api_seconds while building, message calls× p50/p99 ms: %s", apiSummary(t, m))
	checkStanding(t, dp, n, id)

	start = time.Now()
	took, errs = parallel(n, workers, func(i int) error { return dp.Disconnect(ctx, id(i)) })
	down := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("%d of %d Disconnects failed; first: %v", len(errs), n, errs[0])
	}
	t.Logf("%d memif vWires removed in %v (%.0f/s); Disconnect p50 %v p99 %v",
		n, down.Round(time.Millisecond), float64(n)/down.Seconds(), quantile(took, 0.5), quantile(took, 0.99))
	if after := vppObjects(t, dp); !maps.Equal(after, base) {
		t.Errorf("VPP objects after every Disconnect: %v, want the baseline %v", after, base)
	}
	if v := testutil.ToFloat64(m.connEvents.WithLabelValues("not_responding")); v != 0 {
		t.Errorf("govpp reported VPP not responding %v times", v)
	}
	// A missed probe is one answered after its reply timeout: behind a
	// burst in VPP's one API queue, or VPP descheduled on a loaded host.
	// Only govpp giving up on VPP (NotResponding, above) is a fault; the
	// misses are a figure.
	t.Logf("%v health checks missed", testutil.ToFloat64(govpp.metrics.healthMisses)-misses0)
}

// checkStanding fails t unless each of the n vWires id(i) stands in VPP
// as the dataplane remembers it: both interfaces there, tagged for it, up.
func checkStanding(t testing.TB, dp *Dataplane, n int, id func(int) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ifs, err := dp.vpp.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[SwIfIndex]Interface{}
	for _, i := range ifs {
		byIndex[i.Index] = i
	}
	for i := range n {
		dp.mu.Lock()
		st := dp.conns[id(i)]
		dp.mu.Unlock()
		if st == nil {
			t.Fatalf("vWire %s lost: the dataplane has no state for it", id(i))
		}
		for _, s := range []struct {
			idx  SwIfIndex
			role string
		}{{st.in, roleIn}, {st.out, roleOut}} {
			got, ok := byIndex[s.idx]
			if !ok || got.Tag != tagOf(s.role, id(i)).String() || !got.AdminUp {
				t.Fatalf("vWire %s: %s interface %d is %+v in VPP, want it tagged %q and up", id(i), s.role, s.idx, got, tagOf(s.role, id(i)))
			}
		}
	}
}

// apiSummary gives each message's count, p50 and p99 in ms from
// vwire_vpp_api_seconds.
func apiSummary(t testing.TB, m *Metrics) string {
	var lines []string
	for msg, h := range histograms(t, m) {
		lines = append(lines, fmt.Sprintf("%s %d× %.3f/%.3f", msg, h.GetSampleCount(), bucketQuantile(h, 0.5)*1e3, bucketQuantile(h, 0.99)*1e3))
	}
	slices.Sort(lines)
	return strings.Join(lines, "; ")
}

// plainMemifVWire makes local memif vWire i's objects by the plain loop
// (PlainMemifVWire), its sockets in dir.
func plainMemifVWire(ctx context.Context, c *Client, dir string, i int) (func(context.Context), error) {
	var socks, tags [2]string
	for k, role := range []string{roleIn, roleOut} {
		socks[k] = fmt.Sprintf("%s/plain-%d-%s.sock", dir, i, role)
		tags[k] = tagOf(role, fmt.Sprintf("plain-%d", i)).String()
	}
	u, err := PlainMemifVWire(ctx, c, socks, tags)
	return u.Run, err
}

// BenchmarkMemifConnect measures local memif vWires built on a real VPP
// (VPP_BIN) with no worker and with one, one at a time and from 20
// goroutines: through the dataplane's Connect (vwire) and as the same VPP
// objects made by a plain loop of the same API calls (plain, the floor
// vwire's own overhead sits on). It reports vWires/s and each vWire's
// p50/p99; removal runs outside the timer.
//
// Each run holds b.N vWires at once, two memifs each, in VPP's memif pool
// reserved for them (memifroom.go: a pool that grows under VPP 25.10's
// memif process crashes it): give -benchtime as Nx; the pool holds 1,024
// vWires otherwise.
func BenchmarkMemifConnect(b *testing.B) {
	needVPP(b)
	vwires := benchtimeN(b, 1024)
	for _, workers := range []int{0, 1} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			dp := startNode(b, newNS(b, "node"), "", func(c *Config) { c.Workers = workers; c.MemifReserve = 2*vwires + 8 })
			dir := dp.memifDir
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			for _, mode := range []string{"vwire", "plain"} {
				for _, par := range []int{1, 20} {
					b.Run(fmt.Sprintf("%s/parallel=%d", mode, par), func(b *testing.B) {
						if b.N > vwires {
							b.Fatalf("%d vWires at once: the memif pool is reserved for %d; give -benchtime %dx or less", b.N, vwires, vwires)
						}
						ctx := context.Background()
						base := seq.Add(int64(b.N))
						undos := make([]func(context.Context), b.N)
						id := func(i int) string { return fmt.Sprintf("mc-%d", int(base)+i) }
						b.ResetTimer()
						took, errs := parallel(b.N, par, func(i int) error {
							if mode == "plain" {
								u, err := plainMemifVWire(ctx, dp.vpp, dir, int(base)+i)
								undos[i] = u
								return err
							}
							return dp.Connect(ctx, id(i),
								conn(memifMech(fmt.Sprintf("mc-%d-c.sock", int(base)+i)), payload.Ethernet),
								conn(memifMech(fmt.Sprintf("mc-%d-e.sock", int(base)+i)), payload.Ethernet))
						})
						b.StopTimer()
						elapsed := b.Elapsed()
						parallel(b.N, par, func(i int) error {
							if mode == "plain" {
								if undos[i] != nil {
									undos[i](ctx)
								}
								return nil
							}
							return dp.Disconnect(ctx, id(i))
						})
						if len(errs) > 0 {
							b.Fatalf("%d of %d failed; first: %v", len(errs), b.N, errs[0])
						}
						b.ReportMetric(float64(b.N)/elapsed.Seconds(), "vwires/s")
						b.ReportMetric(ms(quantile(took, 0.5)), "p50-ms")
						b.ReportMetric(ms(quantile(took, 0.99)), "p99-ms")
						b.ReportMetric(0, "ns/op")
					})
				}
			}
		})
	}
}

// benchtimeN is N of -test.benchtime Nx, else def.
func benchtimeN(t testing.TB, def int) int {
	t.Helper()
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return def
	}
	v, ok := strings.CutSuffix(f.Value.String(), "x")
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("-test.benchtime %q: want Nx with N ≥ 1", f.Value.String())
	}
	return n
}

// scaleWorkers is the VPP worker count of the scale tests:
// VWIRE_SCALE_WORKERS, else none. The node has one worker; on a
// small shared host a worker VPP pins to a core is often not running when
// an API call's barrier waits for it, which makes every call slow and, past
// 1 s, aborts VPP (see README.md, Node scale).
func scaleWorkers(t testing.TB) int {
	t.Helper()
	v := os.Getenv("VWIRE_SCALE_WORKERS")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("VWIRE_SCALE_WORKERS=%q: want 0 or more", v)
	}
	return n
}

// TestScaleRestore kills VPP under 1,000 local memif vWires
// (VWIRE_SCALE_N) and waits for the dataplane to start it again and
// rebuild every vWire; it logs how long that took, as
// vwire_vpp_restore_seconds records it, and checks every vWire stands
// again and is removed cleanly.
func TestScaleRestore(t *testing.T) {
	needVPP(t)
	const workers = 20
	n := scaleN(t, 1000)
	m := NewMetrics()
	dp := startNode(t, newNS(t, "node"), "", func(c *Config) { c.Metrics = m; c.Workers = scaleWorkers(t); c.MemifReserve = 2*n + 8 })
	ctx := context.Background()
	id := func(i int) string { return fmt.Sprintf("restore-%d", i) }
	_, errs := parallel(n, workers, func(i int) error {
		return dp.Connect(ctx, id(i),
			conn(memifMech(fmt.Sprintf("restore-%d-c.sock", i)), payload.Ethernet),
			conn(memifMech(fmt.Sprintf("restore-%d-e.sock", i)), payload.Ethernet))
	})
	t.Cleanup(func() {
		for i := range n {
			_ = dp.Disconnect(ctx, id(i))
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d Connects failed; first: %v", len(errs), n, errs[0])
	}

	dp.mu.Lock()
	pid := dp.proc.Pid()
	dp.mu.Unlock()
	killed := time.Now()
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Minute, func() error {
		if histogramCount(t, m.restoreSecs) == 0 {
			return fmt.Errorf("vWires not restored yet")
		}
		return nil
	})
	var h dto.Metric
	if err := m.restoreSecs.Write(&h); err != nil {
		t.Fatal(err)
	}
	ok, failed := testutil.ToFloat64(m.restoredVW.WithLabelValues("ok")), testutil.ToFloat64(m.restoredVW.WithLabelValues("failed"))
	t.Logf("%d memif vWires: VPP killed, restarted and every vWire rebuilt %v after the kill; vwire_vpp_restore_seconds %.3f s (from the reconnect), %v rebuilt, %v failed",
		n, time.Since(killed).Round(time.Millisecond), h.GetHistogram().GetSampleSum(), ok, failed)
	if ok != float64(n) || failed != 0 {
		t.Fatalf("restore rebuilt %v vWires and failed %v, want %d and 0", ok, failed, n)
	}
	checkStanding(t, dp, n, id)
	base := vppObjects(t, dp)
	_, errs = parallel(n, workers, func(i int) error { return dp.Disconnect(ctx, id(i)) })
	if len(errs) > 0 {
		t.Fatalf("%d of %d Disconnects failed; first: %v", len(errs), n, errs[0])
	}
	after := vppObjects(t, dp)
	for kind, v := range after {
		if kind == "interfaces" || kind == "memifs" || kind == "memif sockets" || kind == "l2xcs" {
			if base[kind]-v != 2*n {
				t.Errorf("%s: %d before the Disconnects, %d after; want %d fewer", kind, base[kind], v, 2*n)
			}
		}
	}
}

// apiDelta gives, for each message called between the snapshots before and
// after (histograms), its count, mean latency and total time, the
// messages with the most total time first.
func apiDelta(t testing.TB, before, after map[string]*dto.Histogram) string {
	t.Helper()
	type row struct {
		msg string
		n   uint64
		sum float64
	}
	var rows []row
	for msg, h := range after {
		r := row{msg: msg, n: h.GetSampleCount(), sum: h.GetSampleSum()}
		if b := before[msg]; b != nil {
			r.n -= b.GetSampleCount()
			r.sum -= b.GetSampleSum()
		}
		if r.n > 0 {
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return cmpFloat(b.sum, a.sum) })
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s %d× %.2f ms %.2f s", r.msg, r.n, r.sum/float64(r.n)*1e3, r.sum))
	}
	return strings.Join(out, "; ")
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// loadAvg is the machine's 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// mainHeapUsed is the bytes in use of the main heap of dp's VPP (its
// "show memory main-heap"), read over the binary API's CLI.
func mainHeapUsed(t testing.TB, dp *Dataplane) int64 {
	t.Helper()
	out := vppCLI(t, dp, "show memory main-heap")
	used, err := parseHeapUsed(out)
	if err != nil {
		t.Fatalf("show memory main-heap: %v in %q", err, out)
	}
	return used
}

// vppCLI runs a VPP CLI command over the binary API and returns its output.
func vppCLI(t testing.TB, dp *Dataplane, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reply, err := vlib.NewServiceClient(dp.conn).CliInband(ctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		t.Fatalf("vpp cli %q: %v", cmd, err)
	}
	return reply.Reply
}

// parseHeapUsed reads the "used: 103.45M" of VPP's "show memory" output.
func parseHeapUsed(out string) (int64, error) {
	_, rest, ok := strings.Cut(out, "used: ")
	if !ok {
		return 0, errors.New("no \"used: \"")
	}
	f := strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
	if len(f) == 0 {
		return 0, errors.New("nothing after \"used: \"")
	}
	v := f[0]
	mult := 1.0
	switch v[len(v)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	if mult != 1 {
		v = v[:len(v)-1]
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	return int64(x * mult), nil
}

func histogramCount(t testing.TB, h prometheus.Histogram) uint64 {
	t.Helper()
	var d dto.Metric
	if err := h.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

// remoteKind is a remote vWire's mechanism and payload.
type remoteKind struct{ typ, payload string }

// remoteVWire builds remote vWire i of kind k, memif on both ends, in the
// forwarder protocol's order: node 1 accepts and offers, node 2 accepts,
// offers to the endpoint and builds, node 1 builds. idA and idB are its
// connection ids on node 1 and node 2.
func remoteVWire(ctx context.Context, n1, n2 *Dataplane, k remoteKind, i int, idA, idB string) error {
	return remoteVWireThen(ctx, n1, n2, k, i, idA, idB, nil)
}

// remoteVWireThen is remoteVWire, calling between (when not nil) after
// node 2's Connect and before node 1's.
func remoteVWireThen(ctx context.Context, n1, n2 *Dataplane, k remoteKind, i int, idA, idB string, between func() error) error {
	cc := ipCtx(fmt.Sprintf("10.%d.%d.1", 100+i/250, i%250), fmt.Sprintf("10.%d.%d.2", 100+i/250, i%250))
	c := &networkservice.Connection{Payload: k.payload, Context: cc}
	in, err := n1.Accept(ctx, idA, c, []*networkservice.Mechanism{memifMech(fmt.Sprintf("rs-%d-c.sock", i))})
	if err != nil {
		return err
	}
	offers, err := n1.Offer(ctx, idA, c, true)
	if err != nil {
		return err
	}
	j := slices.IndexFunc(offers, func(m *networkservice.Mechanism) bool { return m.GetType() == k.typ })
	if j < 0 {
		return fmt.Errorf("%s not offered: %v", k.typ, offers)
	}
	out, err := n2.Accept(ctx, idB, c, offers[j:j+1])
	if err != nil {
		return err
	}
	local, err := n2.Offer(ctx, idB, c, false)
	if err != nil {
		return err
	}
	j = slices.IndexFunc(local, func(m *networkservice.Mechanism) bool { return m.GetType() == memif.Type })
	if j < 0 {
		return fmt.Errorf("memif not offered to the endpoint: %v", local)
	}
	with := func(m *networkservice.Mechanism) *networkservice.Connection {
		return &networkservice.Connection{Mechanism: m, Context: proto.Clone(cc).(*networkservice.ConnectionContext), Payload: k.payload}
	}
	if err := n2.Connect(ctx, idB, with(out), with(local[j])); err != nil {
		return err
	}
	if between != nil {
		if err := between(); err != nil {
			return err
		}
	}
	return n1.Connect(ctx, idA, with(in), with(out))
}

// TestScaleRemote builds 500 remote vWires (VWIRE_SCALE_REMOTE_N) between
// two nodes, each on its own VPP, from 20 goroutines
// (VWIRE_SCALE_REMOTE_WORKERS), over VXLAN (Ethernet), over WireGuard
// (IP), then both at once (500 of each standing together), memif on both
// ends, in the forwarder protocol's order (node 1 accepts and offers, node
// 2 accepts, offers to the endpoint and builds, node 1 builds); then
// removes them and checks both VPPs are back to their objects before.
// It logs the rate, each message's count and time
// (vwire_vpp_api_seconds), the main heap each vWire took and the load
// average; VWIRE_SCALE_REMOTE_RUNTIME=1 adds node 2's "show runtime".
func TestScaleRemote(t *testing.T) {
	needVPP(t)
	workers := 20
	if v := os.Getenv("VWIRE_SCALE_REMOTE_WORKERS"); v != "" {
		var err error
		if workers, err = strconv.Atoi(v); err != nil || workers < 1 {
			t.Fatalf("VWIRE_SCALE_REMOTE_WORKERS=%q: want a positive integer", v)
		}
	}
	n := 500
	if v := os.Getenv("VWIRE_SCALE_REMOTE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("VWIRE_SCALE_REMOTE_N=%q: want a positive integer", v)
		}
	}
	runtime := os.Getenv("VWIRE_SCALE_REMOTE_RUNTIME") != ""
	misses0 := testutil.ToFloat64(govpp.metrics.healthMisses)
	// One memif a vWire on each node, 2n with both mechanisms at once:
	// reserved, against VPP 25.10's crash when its memif pool grows under
	// a burst (README.md, Node scale).
	n1, n2 := twoNodes(t, func(c *Config) { c.MemifReserve = 2*n + 8 })
	vx, wg := remoteKind{vxlan.Type, payload.Ethernet}, remoteKind{wireguard.Type, payload.IP}
	for _, tc := range []struct {
		name  string
		kinds []remoteKind
	}{{vxlan.Type, []remoteKind{vx}}, {wireguard.Type, []remoteKind{wg}}, {"both", []remoteKind{vx, wg}}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base1, base2 := vppObjects(t, n1), vppObjects(t, n2)
			total := n * len(tc.kinds)
			// vWire i is of kind i%len(kinds): with both, the two
			// mechanisms are built interleaved.
			kindOf := func(i int) remoteKind { return tc.kinds[i%len(tc.kinds)] }
			id := func(i int, node string) string { return fmt.Sprintf("rs-%s-%d-%s", tc.name, i, node) }
			for _, n := range []*Dataplane{n1, n2} {
				vppCLI(t, n, "clear runtime")
				vppCLI(t, n, "clear errors")
			}
			h1, h2 := histograms(t, n1.metrics), histograms(t, n2.metrics)
			heap1, heap2 := mainHeapUsed(t, n1), mainHeapUsed(t, n2)
			cpu1, cpu2 := vppCPU(t, n1), vppCPU(t, n2)
			start := time.Now()
			took, errs := parallel(total, workers, func(i int) error {
				return remoteVWire(ctx, n1, n2, kindOf(i), i, id(i, "a"), id(i, "b"))
			})
			up := time.Since(start)
			t.Cleanup(func() {
				for i := range total {
					_ = n1.Disconnect(ctx, id(i, "a"))
					_ = n2.Disconnect(ctx, id(i, "b"))
				}
			})
			if len(errs) > 0 {
				t.Fatalf("%d of %d remote vWires failed; first: %v", len(errs), total, errs[0])
			}
			t.Logf("%d %s vWires between two VPPs up in %v from %d goroutines (%.0f/s, load %s); each (both nodes) p50 %v p99 %v",
				total, tc.name, up.Round(time.Millisecond), workers, float64(total)/up.Seconds(), loadAvg(), quantile(took, 0.5), quantile(took, 0.99))
			t.Logf("node 1 build, per message (count, mean ms, total s): %s", apiDelta(t, h1, histograms(t, n1.metrics)))
			t.Logf("node 2 build, per message (count, mean ms, total s): %s", apiDelta(t, h2, histograms(t, n2.metrics)))
			if runtime {
				t.Logf("node 2 show runtime after the build:\n%s", vppCLI(t, n2, "show runtime"))
			}
			// CPU time, unlike show runtime's clocks, does not count
			// the time VPP was descheduled on the loaded host.
			c1, c2 := vppCPU(t, n1)-cpu1, vppCPU(t, n2)-cpu2
			t.Logf("VPP CPU time during the build: node 1 %v, node 2 %v: %.2f ms a vWire (both nodes)",
				c1, c2, float64(c1+c2)/float64(time.Millisecond)/float64(total))
			t.Logf("WireGuard work during the build: node 1 %s; node 2 %s", wgActivity(t, n1), wgActivity(t, n2))
			used1, used2 := mainHeapUsed(t, n1), mainHeapUsed(t, n2)
			t.Logf("main heap: node 1 %.1f MB used (%+.1f MB), node 2 %.1f MB used (%+.1f MB) with %d vWires: %.1f kB a vWire on node 2",
				float64(used1)/1e6, float64(used1-heap1)/1e6, float64(used2)/1e6, float64(used2-heap2)/1e6, total, float64(used2-heap2)/1e3/float64(total))

			h1, h2 = histograms(t, n1.metrics), histograms(t, n2.metrics)
			start = time.Now()
			_, errs = parallel(total, workers, func(i int) error {
				return errors.Join(n1.Disconnect(ctx, id(i, "a")), n2.Disconnect(ctx, id(i, "b")))
			})
			t.Logf("removed in %v (load %s)", time.Since(start).Round(time.Millisecond), loadAvg())
			if len(errs) > 0 {
				t.Fatalf("%d of %d Disconnects failed; first: %v", len(errs), total, errs[0])
			}
			t.Logf("node 1 removal, per message: %s", apiDelta(t, h1, histograms(t, n1.metrics)))
			t.Logf("node 2 removal, per message: %s", apiDelta(t, h2, histograms(t, n2.metrics)))
			if after := vppObjects(t, n1); !maps.Equal(after, base1) {
				t.Errorf("node 1 after every Disconnect: %v, want %v", after, base1)
			}
			if after := vppObjects(t, n2); !maps.Equal(after, base2) {
				t.Errorf("node 2 after every Disconnect: %v, want %v", after, base2)
			}
		})
	}
	for i, dp := range []*Dataplane{n1, n2} {
		if v := testutil.ToFloat64(dp.metrics.connEvents.WithLabelValues("not_responding")); v != 0 {
			t.Errorf("node %d: govpp reported VPP not responding %v times", i+1, v)
		}
	}
	// A missed probe is one answered after its reply timeout: behind a
	// burst in VPP's one API queue, or VPP descheduled on a loaded host.
	// Only govpp giving up on VPP (NotResponding, above) is a fault; the
	// misses are a figure.
	t.Logf("%v health checks missed", testutil.ToFloat64(govpp.metrics.healthMisses)-misses0)
}

// vppCPU is the CPU time dp's VPP process has used (user and system,
// every thread), from /proc at its clock-tick resolution.
func vppCPU(t testing.TB, dp *Dataplane) time.Duration {
	t.Helper()
	dp.mu.Lock()
	pid := dp.proc.Pid()
	dp.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("vpp cpu time: %v", err)
	}
	// The fields after the command's closing parenthesis; utime and
	// stime are the stat's 14th and 15th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("vpp cpu time: short /proc/%d/stat %q", pid, b)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("vpp cpu time: /proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// wgActivity is what VPP's WireGuard nodes did since the last "clear
// runtime" and "clear errors": each wg node's calls, packets (vectors)
// and clocks a packet, and its counters (e.g. "Invalid MAC handshake": a
// handshake that found no interface for it).
func wgActivity(t testing.TB, dp *Dataplane) string {
	var out []string
	for _, l := range strings.Split(vppCLI(t, dp, "show runtime"), "\n") {
		// Name State Calls Vectors Suspends Clocks Vectors/Call
		if f := strings.Fields(l); len(f) >= 7 && strings.HasPrefix(f[0], "wg") {
			out = append(out, strings.Join(f, " "))
		}
	}
	for _, l := range strings.Split(vppCLI(t, dp, "show errors"), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && strings.HasPrefix(f[1], "wg") {
			out = append(out, strings.Join(f, " "))
		}
	}
	return strings.Join(out, "; ")
}

const (
	wireguardPort = 51820
	// plainVNIBase keeps the plain loop's VNIs apart from the dataplane's.
	plainVNIBase = 1 << 23
	// plainTable is the one IP table the plain loop's IP sides share on
	// each node, as the dataplane's do.
	plainTable = 0x76780000
)

// BenchmarkRemoteConnect measures remote vWires (memif at both ends)
// between two nodes, each on its own VPP (VPP_BIN), over VXLAN (Ethernet)
// and WireGuard (IP), one at a time and from 20 goroutines: through the
// dataplanes (Accept, Offer and Connect on both nodes, as the forwarder
// protocol calls them) and as the same VPP objects made by a plain loop
// of the same API calls, one round trip each (node 2's side, then node
// 1's; plainRemoteSide). It reports vWires/s, each vWire's p50/p99 and the
// load average; removal runs outside the timer.
func BenchmarkRemoteConnect(b *testing.B) {
	needVPP(b)
	n1, n2 := twoNodes(b, func(c *Config) { c.MemifReserve = 1024 })
	ctx := context.Background()
	for _, dp := range []*Dataplane{n1, n2} {
		if err := os.MkdirAll(dp.memifDir, 0o755); err != nil {
			b.Fatal(err)
		}
		for _, ip6 := range []bool{false, true} {
			t := IPTable{ID: plainTable, IP6: ip6, Name: "plain"}
			if err := dp.vpp.CreateIPTable(ctx, t); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = dp.vpp.DeleteIPTable(context.Background(), t) })
		}
	}
	var seq atomic.Int64
	for _, k := range []remoteKind{{vxlan.Type, payload.Ethernet}, {wireguard.Type, payload.IP}} {
		for _, mode := range []string{"vwire", "plain"} {
			for _, par := range []int{1, 20} {
				b.Run(fmt.Sprintf("%s/%s/parallel=%d", k.typ, mode, par), func(b *testing.B) {
					base := int(seq.Add(int64(b.N))) - b.N
					undos := make([]func(context.Context), b.N)
					id := func(i int, node string) string { return fmt.Sprintf("rc-%d-%s", base+i, node) }
					b.ResetTimer()
					took, errs := parallel(b.N, par, func(i int) error {
						if mode == "vwire" {
							return remoteVWire(ctx, n1, n2, k, base+i, id(i, "a"), id(i, "b"))
						}
						u, err := plainRemoteVWire(ctx, n1, n2, k, base+i)
						undos[i] = u
						return err
					})
					b.StopTimer()
					elapsed := b.Elapsed()
					load := loadAvg()
					parallel(b.N, par, func(i int) error {
						if mode == "plain" {
							if undos[i] != nil {
								undos[i](ctx)
							}
							return nil
						}
						return errors.Join(n1.Disconnect(ctx, id(i, "a")), n2.Disconnect(ctx, id(i, "b")))
					})
					if len(errs) > 0 {
						b.Fatalf("%d of %d failed; first: %v", len(errs), b.N, errs[0])
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "vwires/s")
					b.ReportMetric(ms(quantile(took, 0.5)), "p50-ms")
					b.ReportMetric(ms(quantile(took, 0.99)), "p99-ms")
					if l, err := strconv.ParseFloat(load, 64); err == nil {
						b.ReportMetric(l, "load")
					}
					b.ReportMetric(0, "ns/op")
				})
			}
		}
	}
}

// plainRemoteVWire makes remote vWire i by plainRemoteSide on node 2,
// then node 1, with a fresh WireGuard key pair for each end.
func plainRemoteVWire(ctx context.Context, n1, n2 *Dataplane, k remoteKind, i int) (func(context.Context), error) {
	var k1, k2, p1, p2 [WireguardKeyLen]byte
	for _, kp := range []struct{ priv, pub *[WireguardKeyLen]byte }{{&k1, &p1}, {&k2, &p2}} {
		key, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return func(context.Context) {}, err
		}
		copy(kp.priv[:], key.Bytes())
		copy(kp.pub[:], key.PublicKey().Bytes())
	}
	client := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.1/32", 100+i/250, i%250))
	endpoint := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.2/32", 100+i/250, i%250))
	side := func(n *Dataplane, far *Dataplane, role string, priv, peer [WireguardKeyLen]byte, mine, theirs netip.Prefix) PlainRemoteSide {
		name := fmt.Sprintf("plain-r-%d", i)
		return PlainRemoteSide{
			Socket: fmt.Sprintf("%s/%s-%s.sock", n.memifDir, name, role), MemifTag: tagOf(roleIn, name).String(), TunTag: tagOf(roleOut, name).String(),
			WireGuard: k.typ == wireguard.Type, Local: n.tunnel, Remote: far.tunnel, VNI: plainVNIBase + uint32(i), Port: wireguardPort,
			PrivateKey: priv, PeerKey: peer, Uplink: n.uplinkIndex(), Table: plainTable, Mine: mine, Theirs: theirs,
		}
	}
	u2, err := side(n2, n1, "e", k2, p1, endpoint, client).Make(ctx, n2.vpp)
	if err != nil {
		return u2.Run, err
	}
	u1, err := side(n1, n2, "c", k1, p2, client, endpoint).Make(ctx, n1.vpp)
	return func(ctx context.Context) { u1.Run(ctx); u2.Run(ctx) }, err
}
