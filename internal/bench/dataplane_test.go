package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// path is a model of a device under test: no loss up to ndr frames/s, a
// little (0.1 %) up to pdr, a lot above; the source reaches at most max.
type path struct {
	ndr, pdr, max float64

	mu    sync.Mutex
	rates []float64 // asked, in order; guarded by mu
}

func (p *path) trial(_ context.Context, pps float64) (TrialResult, error) {
	p.mu.Lock()
	p.rates = append(p.rates, pps)
	p.mu.Unlock()
	offered := pps
	if pps == 0 || pps > p.max {
		offered = p.max
	}
	sent := uint64(offered) // one-second trials
	var lost uint64
	switch {
	case offered <= p.ndr:
	case offered <= p.pdr:
		lost = sent / 1000
	default:
		lost = sent / 10
	}
	return TrialResult{Rate: pps, Offered: offered, Sent: sent, Received: sent - lost}, nil
}

func TestSearchFindsNDRAndPDR(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ndr, pdr, max float64
		precision     float64
		ndrAtSource   bool
		pdrAtSource   bool
	}{
		{name: "both below the source", ndr: 3e6, pdr: 4.2e6, max: 10e6, precision: 0.01},
		{name: "coarse", ndr: 3e6, pdr: 4.2e6, max: 10e6, precision: 0.1},
		{name: "pdr at the source", ndr: 5e6, pdr: 20e6, max: 10e6, precision: 0.02, pdrAtSource: true},
		{name: "source limited", ndr: 20e6, pdr: 20e6, max: 10e6, precision: 0.02, ndrAtSource: true, pdrAtSource: true},
		{name: "far below the source", ndr: 0.02e6, pdr: 0.03e6, max: 10e6, precision: 0.05},
		{name: "nothing passes", ndr: 0, pdr: 0, max: 10e6, precision: 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &path{ndr: tc.ndr, pdr: tc.pdr, max: tc.max}
			res, err := Search(context.Background(), p.trial, tc.precision)
			if err != nil {
				t.Fatal(err)
			}
			want := func(name string, got, threshold float64) {
				t.Helper()
				threshold = min(threshold, tc.max)
				if got > threshold || threshold-got > tc.precision*threshold {
					t.Errorf("%s %.0f: want within %.0f %% below %.0f", name, got, tc.precision*100, threshold)
				}
			}
			want("NDR", res.NDR, tc.ndr)
			want("PDR", res.PDR, tc.pdr)
			if res.SourceMax != tc.max {
				t.Errorf("source max %.0f, want %.0f", res.SourceMax, tc.max)
			}
			if p.rates[0] != 0 {
				t.Errorf("first trial at %.0f, want unthrottled", p.rates[0])
			}
			if got := res.AtSource(false); got != tc.ndrAtSource {
				t.Errorf("NDR at the source %v, want %v", got, tc.ndrAtSource)
			}
			if got := res.AtSource(true); got != tc.pdrAtSource {
				t.Errorf("PDR at the source %v, want %v", got, tc.pdrAtSource)
			}
			// Binary search: log2(max/threshold) loads down to the
			// threshold, log2(1/precision) more, per figure; a load
			// is two trials when the first lost frames.
			down := math.Log2(1 / minRateFraction)
			if tc.ndr > 0 {
				down = math.Ceil(math.Log2(tc.max / min(tc.ndr, tc.max)))
			}
			loads := len(res.Trials) - res.Retries
			if limit := 2*int(down+math.Ceil(math.Log2(1/tc.precision))) + 1; loads > limit {
				t.Errorf("%d loads, want at most %d", loads, limit)
			}
			// A path without noise: a second trial never passes
			// where the first failed.
			if res.RetriesPassed != 0 {
				t.Errorf("%d retries passed on a path without noise", res.RetriesPassed)
			}
		})
	}
}

// noisy is a path on a host that deschedules its VPP now and then: the
// trials whose numbers (from 0, in the order asked) are in descheduled
// lose 3 % more of their frames, whatever the rate.
type noisy struct {
	path
	descheduled map[int]bool
	n           int
}

func (p *noisy) trial(ctx context.Context, pps float64) (TrialResult, error) {
	t, err := p.path.trial(ctx, pps)
	if p.descheduled[p.n] {
		t.Received -= min(t.Received, t.Sent*3/100)
	}
	p.n++
	return t, err
}

// TestSearchSourceMaxFromRetry: when the unthrottled load's first trial
// lost frames and its retry, unthrottled too, offered more and lost none,
// the source's ceiling is the retry's rate, not under NDR (seen in
// TestRunDataplane on a loaded host: NDR 1.32 Mpps, source 1.12).
func TestSearchSourceMaxFromRetry(t *testing.T) {
	n := 0
	trial := func(_ context.Context, pps float64) (TrialResult, error) {
		n++
		offered, lost := pps, uint64(0)
		switch {
		case n == 1:
			offered, lost = 1.12e6, 1000 // descheduled: slow, and lost some
		case pps == 0:
			offered = 1.32e6
		}
		sent := uint64(offered)
		return TrialResult{Rate: pps, Offered: offered, Sent: sent, Received: sent - lost}, nil
	}
	res, err := Search(context.Background(), trial, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if res.SourceMax != 1.32e6 || res.NDR > res.SourceMax || res.PDR > res.SourceMax || res.NDR > res.PDR {
		t.Errorf("NDR %.0f, PDR %.0f, source %.0f: want source 1320000 and NDR ≤ PDR ≤ source", res.NDR, res.PDR, res.SourceMax)
	}
}

// TestSearchRetryOfferedMore: when the second trial of a load offers a
// little more than the first (a source's rate varies) and passes NDR
// where the first passed only PDR, PDR is not left under NDR.
func TestSearchRetryOfferedMore(t *testing.T) {
	n := 0
	trial := func(_ context.Context, pps float64) (TrialResult, error) {
		n++
		offered := pps
		if pps == 0 {
			offered = 10e6
		}
		if n%2 == 0 {
			offered *= 1.01 // every second trial: the retry
		}
		sent := uint64(offered)
		lost := uint64(0)
		switch {
		case offered > 6e6:
			lost = sent / 10
		case n%2 == 1:
			lost = sent / 1000 // the first trial at each load: PDR only
		}
		return TrialResult{Rate: pps, Offered: offered, Sent: sent, Received: sent - lost}, nil
	}
	res, err := Search(context.Background(), trial, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if res.NDR == 0 || res.PDR < res.NDR {
		t.Errorf("NDR %.0f, PDR %.0f: want 0 < NDR ≤ PDR", res.NDR, res.PDR)
	}
}

// TestSearchNoisyTrials: a trial that lost frames only because the host
// starved the VPP is outvoted by the second trial at its load, so the
// search finds the same NDR and PDR as on a quiet host, within its
// precision; a loss that repeats still fails the load.
func TestSearchNoisyTrials(t *testing.T) {
	every := func(k, from int) map[int]bool {
		m := map[int]bool{}
		for i := from; i < 200; i += k {
			m[i] = true
		}
		return m
	}
	for _, tc := range []struct {
		name          string
		ndr, pdr, max float64
		descheduled   map[int]bool
		wantPassed    int // at least this many retries passed
		ndrAtSource   bool
	}{
		// Trials 0 and 1 are unthrottled, 2 and 3 at 5 Mpps (loss), 4 at
		// 2.5 Mpps: the first one under NDR.
		{name: "the first trial under NDR", ndr: 3e6, pdr: 4.2e6, max: 10e6, descheduled: map[int]bool{4: true}, wantPassed: 1},
		{name: "every third trial", ndr: 3e6, pdr: 4.2e6, max: 10e6, descheduled: every(3, 1), wantPassed: 2},
		{name: "every other trial", ndr: 6e6, pdr: 7e6, max: 10e6, descheduled: every(2, 1), wantPassed: 2},
		{name: "the unthrottled trial, source limited", ndr: 20e6, pdr: 20e6, max: 10e6, descheduled: map[int]bool{0: true}, wantPassed: 1, ndrAtSource: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const precision = 0.02
			p := &noisy{path: path{ndr: tc.ndr, pdr: tc.pdr, max: tc.max}, descheduled: tc.descheduled}
			res, err := Search(context.Background(), p.trial, precision)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range []struct {
				name           string
				got, threshold float64
			}{{"NDR", res.NDR, tc.ndr}, {"PDR", res.PDR, tc.pdr}} {
				want := min(g.threshold, tc.max)
				if g.got > want || want-g.got > precision*want {
					t.Errorf("%s %.0f: want within %.0f %% below %.0f", g.name, g.got, precision*100, want)
				}
			}
			if res.RetriesPassed < tc.wantPassed {
				t.Errorf("%d retries passed, want at least %d (trials %v)", res.RetriesPassed, tc.wantPassed, p.path.rates)
			}
			if got := res.AtSource(false); got != tc.ndrAtSource {
				t.Errorf("NDR at the source %v, want %v", got, tc.ndrAtSource)
			}
		})
	}
	// Loss in both trials of a load fails it, noise or not: the limit
	// of the method (two descheduled trials in a row at one load).
	p := &noisy{path: path{ndr: 3e6, pdr: 4.2e6, max: 10e6}, descheduled: map[int]bool{4: true, 5: true}}
	res, err := Search(context.Background(), p.trial, 0.02)
	if err != nil {
		t.Fatal(err)
	}
	if p.path.rates[4] != p.path.rates[5] {
		t.Fatalf("trials 4 and 5 at %.0f and %.0f, want one load", p.path.rates[4], p.path.rates[5])
	}
	if res.NDR >= p.path.rates[4] {
		t.Errorf("NDR %.0f at or above %.0f, where both trials lost frames", res.NDR, p.path.rates[4])
	}
}

func TestSearchErrors(t *testing.T) {
	nothing := func(context.Context, float64) (TrialResult, error) { return TrialResult{}, nil }
	if _, err := Search(context.Background(), nothing, 0.1); err == nil || !strings.Contains(err.Error(), "sent nothing") {
		t.Errorf("a source that sends nothing: %v", err)
	}
	broken := errors.New("vpp went away")
	calls := 0
	fails := func(ctx context.Context, pps float64) (TrialResult, error) {
		calls++
		if calls > 2 {
			return TrialResult{}, broken
		}
		return (&path{ndr: 1, pdr: 1, max: 1000}).trial(ctx, pps)
	}
	res, err := Search(context.Background(), fails, 0.1)
	if !errors.Is(err, broken) || len(res.Trials) != 2 {
		t.Errorf("a failing trial: %v after %d trials, want it wrapped after 2", err, len(res.Trials))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := &path{ndr: 1, pdr: 1, max: 1000}
	if _, err := Search(ctx, func(_ context.Context, pps float64) (TrialResult, error) {
		return p.trial(context.Background(), pps)
	}, 0.1); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	for _, bad := range []float64{0, -1, 1} {
		if _, err := Search(context.Background(), p.trial, bad); err == nil {
			t.Errorf("precision %g accepted", bad)
		}
	}
}

func TestMRR(t *testing.T) {
	un := func(sent, received uint64) TrialResult {
		return TrialResult{Offered: float64(sent), Sent: sent, Received: received}
	}
	if got := un(1000, 900).Delivered(); got != 900 {
		t.Errorf("delivered %v, want 900", got)
	}
	if got := (TrialResult{}).Delivered(); got != 0 {
		t.Errorf("delivered of nothing %v", got)
	}
	throttled := TrialResult{Rate: 500, Offered: 500, Sent: 500, Received: 500}
	for _, tc := range []struct {
		name   string
		trials []TrialResult
		want   float64
	}{
		{"none", nil, 0},
		{"only throttled", []TrialResult{throttled}, 0},
		{"odd", []TrialResult{un(1000, 300), throttled, un(1000, 900), un(1000, 500)}, 500},
		{"even", []TrialResult{un(1000, 300), un(1000, 900), un(1000, 500), un(1000, 700)}, 600},
	} {
		if got := MRR(tc.trials); got != tc.want {
			t.Errorf("%s: MRR %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSearchPairTakesTurns(t *testing.T) {
	var (
		mu    sync.Mutex
		order []int
	)
	// The second path resolves in fewer trials (coarse thresholds at the
	// source): the first then goes on alone.
	paths := [2]*path{{ndr: 3e6, pdr: 4e6, max: 10e6}, {ndr: 20e6, pdr: 20e6, max: 10e6}}
	var trials [2]Trial
	for i, p := range paths {
		trials[i] = func(ctx context.Context, pps float64) (TrialResult, error) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			return p.trial(ctx, pps)
		}
	}
	res, errs := SearchPair(context.Background(), trials, 0.05)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("search %d: %v", i, err)
		}
	}
	n0, n1 := len(res[0].Trials), len(res[1].Trials)
	if n1 != 1 || n0 < 3 {
		t.Fatalf("%d and %d trials, want several and 1", n0, n1)
	}
	if order[0] != 0 || order[1] != 1 {
		t.Errorf("order %v: want the first search's trial first, then the second's", order)
	}
	for _, i := range order[2:] {
		if i != 0 {
			t.Errorf("order %v: the finished search ran again", order)
		}
	}
	// With equal paths the turns alternate strictly.
	order = nil
	same := &path{ndr: 3e6, pdr: 4e6, max: 10e6}
	for i := range trials {
		trials[i] = func(ctx context.Context, pps float64) (TrialResult, error) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			return same.trial(ctx, pps)
		}
	}
	SearchPair(context.Background(), trials, 0.05)
	for k, i := range order {
		if i != k%2 {
			t.Fatalf("order %v: want strict turns", order)
		}
	}
}

func TestFrameSizes(t *testing.T) {
	fs, err := ParseFrameSizes([]string{"64", " 1518", "IMIX"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []FrameSize{{Bytes: 64}, {Bytes: 1518}, {IMIX: true}}; len(fs) != 3 || fs[0] != want[0] || fs[1] != want[1] || fs[2] != want[2] {
		t.Fatalf("parsed %v, want %v", fs, want)
	}
	if got := fs[2].MeanBytes(); math.Abs(got-(7*64+4*570+1518)/12.0) > 1e-9 {
		t.Errorf("IMIX mean %v", got)
	}
	if got := fs[0].MeanBytes(); got != 64 {
		t.Errorf("64-byte mean %v", got)
	}
	// IMIX at 1.2 Mpps: twelve streams of 0.1 Mpps, seven of 64 bytes,
	// four of 570, one of 1518; unthrottled, twelve unthrottled ones.
	for _, pps := range []float64{1.2e6, 0} {
		streams := Streams(fs[2], pps)
		count := map[int]int{}
		for _, s := range streams {
			count[s.Bytes]++
			if s.Rate != pps/12 {
				t.Errorf("IMIX at %v pps: stream %+v, want rate %v", pps, s, pps/12)
			}
		}
		if len(streams) != 12 || count[64] != 7 || count[570] != 4 || count[1518] != 1 {
			t.Errorf("IMIX at %v pps: streams %+v, want 7 × 64, 4 × 570, 1 × 1518", pps, streams)
		}
	}
	if s := Streams(fs[0], 5e5); len(s) != 1 || s[0] != (StreamSpec{Bytes: 64, Rate: 5e5}) {
		t.Errorf("64 bytes at 0.5 Mpps: streams %+v", s)
	}
	if got := Gbps(1e6, FrameSize{Bytes: 1518}); math.Abs(got-12.144) > 1e-9 {
		t.Errorf("1 Mpps of 1518 bytes = %v Gb/s, want 12.144", got)
	}
	for _, bad := range [][]string{{"63"}, {"9001"}, {"big"}, {"64", "64"}, {}} {
		if _, err := ParseFrameSizes(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestDataplaneConfigValidate(t *testing.T) {
	ok := DefaultDataplaneConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	q := ok
	q.Quick()
	if err := q.Validate(); err != nil || len(q.FrameSizes) != 2 || q.TrialDuration > 2*time.Second {
		t.Fatalf("quick: %v %+v", err, q)
	}
	for _, tc := range []struct {
		name   string
		change func(*DataplaneConfig)
		want   string
	}{
		{"unknown topology", func(c *DataplaneConfig) { c.Topologies = []string{"memif", "gre"} }, `unknown topology "gre"`},
		{"topology twice", func(c *DataplaneConfig) { c.Topologies = []string{"memif", "memif"} }, "twice"},
		{"no topologies", func(c *DataplaneConfig) { c.Topologies = nil }, "no topologies"},
		{"no frame sizes", func(c *DataplaneConfig) { c.FrameSizes = nil }, "no frame sizes"},
		{"short trial", func(c *DataplaneConfig) { c.TrialDuration = time.Millisecond }, "trial duration"},
		{"precision 0", func(c *DataplaneConfig) { c.Precision = 0 }, "precision"},
		{"precision 1", func(c *DataplaneConfig) { c.Precision = 1 }, "precision"},
		{"main core", func(c *DataplaneConfig) { c.MainCore = -2 }, "main core"},
		{"workers", func(c *DataplaneConfig) { c.Workers = -1 }, "workers"},
		{"both worker flags", func(c *DataplaneConfig) { c.Workers, c.CorelistWorkers = 2, "2-3" }, "not both"},
		{"bad corelist", func(c *DataplaneConfig) { c.CorelistWorkers = "two" }, "corelist-workers"},
		{"rx mode", func(c *DataplaneConfig) { c.RxMode = "adaptive" }, "rx mode"},
		{"poll sleep", func(c *DataplaneConfig) { c.PollSleepUsec = -1 }, "poll sleep"},
		{"mrr trials", func(c *DataplaneConfig) { c.MRRTrials = 0 }, "MRR trials"},
		{"latency pings", func(c *DataplaneConfig) { c.LatencyPings = -1 }, "latency pings"},
		{"repetitions", func(c *DataplaneConfig) { c.Repetitions = 0 }, "repetitions 0"},
		{"kernel side", func(c *DataplaneConfig) { c.Kernel = "vhost" }, `kernel "vhost"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultDataplaneConfig()
			tc.change(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
	c := DefaultDataplaneConfig()
	c.MainCore, c.CorelistWorkers = 1, "2-3"
	if got, want := c.cpuStanza(), "cpu {\n  main-core 1\n  corelist-workers 2-3\n}\n"; got != want {
		t.Errorf("cpu stanza %q, want %q", got, want)
	}
	if got := DefaultDataplaneConfig().cpuStanza(); got != "" {
		t.Errorf("no placement: cpu stanza %q", got)
	}
	if got := c.Placement(); !strings.Contains(got, "core 1") || !strings.Contains(got, "2-3") {
		t.Errorf("placement %q", got)
	}
}

func TestPGStream(t *testing.T) {
	dst := netip.MustParseAddr("172.17.0.9")
	eth := pgStream("s1", "memif3/0", dpEndpoint, false, 64, 1000, 2*time.Second)
	for _, want := range []string{"name s1\n", "limit 2000\n", "rate 1000\n", "size 60-60\n", "node memif3/0-output\n",
		"IP4: 02:fe:00:00:00:01 -> 02:fe:00:00:00:02\n", "UDP: 172.16.251.1 -> 172.16.251.2\n", "length 26\n"} {
		if !strings.Contains(eth, want) {
			t.Errorf("Ethernet stream lacks %q:\n%s", want, eth)
		}
	}
	ip := pgStream("s2", "memif3/0", dst, true, 1518, 0, time.Second)
	for _, want := range []string{"limit -1\n", "size 1500-1500\n", "interface pg0\n", "node ip4-input\n", "UDP: 172.16.251.1 -> 172.17.0.9\n", "length 1480\n"} {
		if !strings.Contains(ip, want) {
			t.Errorf("IP stream lacks %q:\n%s", want, ip)
		}
	}
	if strings.Contains(ip, "rate") || strings.Contains(ip, "IP4:") {
		t.Errorf("unthrottled IP stream:\n%s", ip)
	}
	if n := strings.Count(eth, "{") - strings.Count(eth, "}"); n != 0 {
		t.Errorf("unbalanced braces:\n%s", eth)
	}
}

func testDataplaneReport() *DataplaneReport {
	r := &DataplaneReport{Version: "test", VPPVersion: "vpp v25.10", Machine: Machine{CPUs: 2, CPUModel: "Test CPU", Kernel: "6.1"},
		Placement: "main thread unpinned", Trial: time.Second, Precision: 0.1, MRRTrials: 3, Started: time.Date(2026, 12, 5, 15, 0, 0, 0, time.UTC)}
	add := func(topo string, f FrameSize, by string, ndr, pdr, srcMax float64) {
		r.Results = append(r.Results, DataplaneResult{Topology: topo, FrameSize: f, BuiltBy: by, MRR: 2 * pdr, SearchResult: SearchResult{
			NDR: ndr, PDR: pdr, SourceMax: srcMax,
			Trials: []TrialResult{{Offered: srcMax, Sent: 100, Received: 50}}}})
	}
	for _, f := range []FrameSize{{Bytes: 64}, {IMIX: true}} {
		add(TopoMemif, f, BuiltByVwire, 1.9e6, 2e6, 4e6)
		add(TopoMemif, f, BuiltByHand, 2e6, 2e6, 4e6)
		add(TopoVXLAN, f, BuiltByVwire, 0.5e6, 0.6e6, 4e6)
		add(TopoVXLAN, f, BuiltByHand, 0.55e6, 0.6e6, 4e6)
	}
	return r
}

func TestDataplaneTable(t *testing.T) {
	var b bytes.Buffer
	if err := testDataplaneReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	flat := strings.Join(strings.Fields(out), " ") // the columns' padding aside
	for _, want := range []string{
		"| memif | 64 | 4.000 Mpps 2.05 Gb/s | 4.000 Mpps 2.05 Gb/s | 1.00 | 1.900 Mpps 0.97 Gb/s | 2.000 Mpps 1.02 Gb/s | 0.95 |",
		"(3 trials)",
		"| vxlan | imix |", "| 4.000 / 4.000 Mpps |",
		"Test CPU", "vpp v25.10", "main thread unpinned", "trials of 1s, resolution 10 % of the rate",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	r := testDataplaneReport()
	r.Objects = []TopologyObjects{{Topology: TopoMemif, Vwire: "node1: memif", Hand: "node1: memif", Same: true},
		{Topology: TopoVXLAN, Vwire: "node1: vxlan", Hand: "node1: vxlan, memif"}}
	notes := belowGoal(r)
	if len(notes) != 2 || !strings.Contains(notes[0], "vxlan 64: vwire/hand NDR 0.91 below 0.95: the objects differ") {
		t.Errorf("notes %q: want the two VXLAN rows, whose objects differ", notes)
	}
	r.Results[0].NDR = 1e6 // memif 64: 0.5 of hand
	if notes := belowGoal(r); len(notes) != 3 || !strings.Contains(notes[0], "memif 64: vwire/hand NDR 0.50 below 0.95: the same VPP objects") {
		t.Errorf("notes %q", notes)
	}
	if got := strings.Count(out, "\n| "); got != 4 { // the rows (the header is the first line, the rule is "|---")
		t.Errorf("%d table lines after the header:\n%s", got, out)
	}
}

func TestDataplaneLatencyTable(t *testing.T) {
	r := testDataplaneReport()
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "RTT") {
		t.Errorf("a latency table without latency:\n%s", b.String())
	}
	for i := range r.Results {
		us := time.Duration(100+i) * time.Microsecond
		r.Results[i].Latency = []LatencyResult{{Load: 0.1, Rate: 1000, Sent: 10, Received: 9, P50: us, P99: 2 * us}}
	}
	b.Reset()
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(b.String()), " ")
	if want := "| memif | 64 | 10 % NDR | 100 µs | 101 µs | 0.99 | 200 µs | 202 µs | 0.99 | 9/10, 9/10 |"; !strings.Contains(flat, want) {
		t.Errorf("latency table lacks %q:\n%s", want, b.String())
	}
	j, err := json.Marshal(r.Results[0].Latency[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"load":0.1,"rate_pps":1000,"p50_ns":100000,"p99_ns":200000,"pings":10,"answered":9}`; string(j) != want {
		t.Errorf("latency JSON %s, want %s", j, want)
	}
}

func TestDataplaneJSON(t *testing.T) {
	var b bytes.Buffer
	if err := testDataplaneReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		VPPVersion string `json:"vpp_version"`
		Results    []struct {
			Topology  string  `json:"topology"`
			FrameSize string  `json:"frame_size"`
			BuiltBy   string  `json:"built_by"`
			NDR       float64 `json:"ndr_pps"`
			Trials    []struct {
				Sent uint64 `json:"sent"`
			} `json:"trials"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	if got.VPPVersion != "vpp v25.10" || len(got.Results) != 8 {
		t.Fatalf("%+v", got)
	}
	r := got.Results[4]
	if r.Topology != TopoMemif || r.FrameSize != "imix" || r.BuiltBy != BuiltByVwire || r.NDR != 1.9e6 || len(r.Trials) != 1 || r.Trials[0].Sent != 100 {
		t.Errorf("result %+v", r)
	}
}

func TestDataplaneSVG(t *testing.T) {
	var b bytes.Buffer
	if err := testDataplaneReport().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one line per topology and builder, the hand-made
	// ones dashed.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	lines, dashed, labels := 0, 0, map[string]bool{}
	var inText bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, b.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			inText = el.Name.Local == "text"
			if el.Name.Local != "polyline" {
				continue
			}
			lines++
			for _, a := range el.Attr {
				if a.Name.Local == "stroke-dasharray" {
					dashed++
				}
				if a.Name.Local == "points" && strings.Count(a.Value, ",") != 2 {
					t.Errorf("line with points %q, want 2", a.Value)
				}
			}
		case xml.CharData:
			if inText {
				labels[string(el)] = true
			}
		case xml.EndElement:
			inText = false
		}
	}
	if lines != 4 || dashed != 2 {
		t.Errorf("%d lines, %d dashed; want 4 and 2", lines, dashed)
	}
	for _, want := range []string{"64", "imix", "memif vwire", "vxlan hand", "NDR (Mpps)", "2"} {
		if !labels[want] {
			t.Errorf("no label %q in %v", want, labels)
		}
	}
	if got := niceCeil(1.9); got != 2 {
		t.Errorf("niceCeil(1.9) = %v", got)
	}
	if got := niceCeil(0.31); got != 0.5 {
		t.Errorf("niceCeil(0.31) = %v", got)
	}
}

// TestRepetitions checks how several repetitions fold into one figure:
// medians of the figures, the ratio as the median of the repetitions'
// own ratios (each pair measured in turns, under the same load), and the
// source as the limit only when most repetitions' unthrottled trial passed.
func TestRepetitions(t *testing.T) {
	if got := Median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("median of 5, 1, 3: %v", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4, 1, 3, 2: %v", got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("median of nothing: %v", got)
	}
	pass := TrialResult{Offered: 10, Sent: 10, Received: 10}
	fail := TrialResult{Offered: 10, Sent: 10, Received: 5}
	searches := []SearchResult{
		{NDR: 1, PDR: 2, SourceMax: 10, Trials: []TrialResult{pass}},
		{NDR: 3, PDR: 4, SourceMax: 30, Trials: []TrialResult{fail, {Rate: 5, Offered: 5, Sent: 5, Received: 5}}},
		{NDR: 2, PDR: 9, SourceMax: 20, Trials: []TrialResult{pass}},
	}
	m := MedianSearch(searches)
	if m.NDR != 2 || m.PDR != 4 || m.SourceMax != 20 || len(m.Trials) != 4 {
		t.Errorf("median search %+v: want NDR 2, PDR 4, source 20, 4 trials", m)
	}
	if !m.AtSource(false) {
		t.Error("two of three unthrottled trials passed: want the source as the limit")
	}
	m.Trials[3] = fail
	if m.AtSource(false) {
		t.Error("one of three unthrottled trials passed: want the path as the limit")
	}

	// vwire 1, 2, 3 against hand 2, 2, 2: the ratios 0.5, 1, 1.5 have the
	// median 1, though the repetitions' load differed.
	v := &DataplaneResult{Repetitions: []Figures{{NDR: 1}, {NDR: 2}, {NDR: 3}}, SearchResult: SearchResult{NDR: 2}}
	h := &DataplaneResult{Repetitions: []Figures{{NDR: 2}, {NDR: 2}, {NDR: 2}}, SearchResult: SearchResult{NDR: 2}}
	if q, ok := ratio(v, h, figNDR); !ok || q != 1 {
		t.Errorf("ratio %v %v, want 1", q, ok)
	}
	// Pairs: (1, 4), (2, 1), (6, 2): ratios 0.25, 2, 3, median 2, while
	// the medians of the figures (2 and 2) would say 1.
	v.Repetitions = []Figures{{NDR: 1}, {NDR: 2}, {NDR: 6}}
	h.Repetitions = []Figures{{NDR: 4}, {NDR: 1}, {NDR: 2}}
	if q, ok := ratio(v, h, figNDR); !ok || q != 2 {
		t.Errorf("ratio of pairs %v %v, want 2", q, ok)
	}
	h.Repetitions = []Figures{{}, {}, {}}
	if _, ok := ratio(v, h, figNDR); ok {
		t.Error("a ratio against zeros")
	}
	// One repetition: the figures themselves.
	v.Repetitions, h.Repetitions = nil, nil
	v.MRR, h.MRR = 3, 4
	if q, ok := ratio(v, h, figMRR); !ok || q != 0.75 {
		t.Errorf("MRR ratio %v %v, want 0.75", q, ok)
	}

	r := testDataplaneReport()
	r.Repetitions = 3
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "medians of 3 repetitions") {
		t.Errorf("table does not say the figures are medians:\n%s", b.String())
	}
}

func TestKernelSide(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		vhost bool
		want  string
		why   string
	}{
		{KernelAuto, true, KernelTap, "/dev/vhost-net present"},
		{KernelAuto, false, KernelAfPacket, "no /dev/vhost-net"},
		{KernelTap, false, KernelTap, "--kernel tap"},
		{KernelAfPacket, true, KernelAfPacket, "--kernel af_packet"},
	} {
		got, why := KernelSide(tc.kind, tc.vhost)
		if got != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("KernelSide(%q, %v) = %q, %q; want %q, saying %q", tc.kind, tc.vhost, got, why, tc.want, tc.why)
		}
	}
	r := testDataplaneReport()
	r.KernelSide = "a veth on a VLAN of an af_packet trunk (no /dev/vhost-net, so no tap)"
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "KERNEL side of the kernel topology, both builders: a veth on a VLAN of an af_packet trunk") {
		t.Errorf("table does not say what the KERNEL side was:\n%s", b.String())
	}
}

// TestChainHops checks the chain's vWires: the source to the first CNF,
// CNF to CNF, the last CNF to the sink, each CNF's ends in the CNF
// namespace; memif is the one vWire from the source to the sink.
func TestChainHops(t *testing.T) {
	traffic, cnf := &Netns{Name: "t"}, &Netns{Name: "c"}
	e := &dpEnv{trafficNS: traffic, cnfNS: cnf}
	files := [2]string{"bdp7-src", "bdp7-dst"}
	hops := e.hops(TopoChain, files)
	want := [][2]memifEnd{
		{{"bdp7-src", traffic}, {"bdp7-c1i", cnf}},
		{{"bdp7-c1o", cnf}, {"bdp7-c2i", cnf}},
		{{"bdp7-c2o", cnf}, {"bdp7-c3i", cnf}},
		{{"bdp7-c3o", cnf}, {"bdp7-dst", traffic}},
	}
	if !slices.Equal(hops, want) || len(hops) != ChainCNFs+1 {
		t.Errorf("chain hops %v, want %v", hops, want)
	}
	if got := e.hops(TopoMemif, files); !slices.Equal(got, [][2]memifEnd{{{"bdp7-src", traffic}, {"bdp7-dst", traffic}}}) {
		t.Errorf("memif hops %v", got)
	}
}

// TestRunDataplaneTapWithoutVhost: --kernel tap on a host without
// /dev/vhost-net fails at once with one line saying why, before any VPP
// starts.
func TestRunDataplaneTapWithoutVhost(t *testing.T) {
	if _, err := os.Stat(vhostNet); err == nil {
		t.Skip(vhostNet + " exists here: a tap can be made")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: RunDataplane checks it first")
	}
	cfg := DefaultDataplaneConfig()
	cfg.VPPBin, cfg.Kernel, cfg.Topologies = "/nonexistent/vpp", KernelTap, []string{TopoKernel}
	_, err := RunDataplane(context.Background(), cfg, "test")
	if err == nil || !strings.Contains(err.Error(), "--kernel tap: /dev/vhost-net does not exist") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("RunDataplane with a tap and no %s: %v; want one line saying so", vhostNet, err)
	}
}
