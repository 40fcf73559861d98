package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLatencyRows(t *testing.T) {
	r := latencyResult{
		parallel: 20,
		seq:      vsRun{up: durMs(4, 4, 4, 4), down: durMs(2, 2, 2, 2)},
		plainSeq: vsRun{up: durMs(2, 2, 2, 2), down: durMs(1, 1, 1, 1)},
		vethSeq:  durMs(1, 1, 1, 1),
		par:      vsRun{up: durMs(40, 40), upWall: 10 * time.Millisecond, down: durMs(5, 5), downWall: 2 * time.Millisecond},
		plainPar: vsRun{up: durMs(10, 10), upWall: 4 * time.Millisecond, down: durMs(2, 2), downWall: time.Millisecond},
		vethPar:  durMs(5, 5), vethWall: 2 * time.Millisecond,
	}
	rows := latencyRows("latency", r)
	byName := map[string]Row{}
	for _, row := range rows {
		if _, dup := byName[row.Name]; dup {
			t.Errorf("two rows %q", row.Name)
		}
		byName[row.Name] = row
	}
	for _, tc := range []struct {
		name           string
		value, base    float64
		unit, baseName string
	}{
		{"request→vWire-up, local, sequential, p50", 4, 2, "ms", "plain loop"},
		{"plain loop (vwire's netlink requests), sequential, p99", 2, 1, "ms", "plain veth"},
		{"close, local, sequential, p90", 2, 4, "ms", "request"},
		{"plain loop's close, sequential, p50", 1, 2, "ms", "vwire's close"},
		{"request→vWire-up, local, 20 parallel, p50", 40, 10, "ms", "plain loop"},
		{"plain loop, 20 parallel, p99", 10, 5, "ms", "plain veth"},
		{"vWires up per second, 20 parallel", 200, 500, "/s", "plain loop"},
		{"plain loop pairs up per second, 20 parallel", 500, 1000, "/s", "plain veth"},
		{"close, local, 20 parallel, p50", 5, 40, "ms", "request"},
		{"vWires closed per second, 20 parallel", 1000, 200, "/s", "requests"},
		{"plain loop pairs closed per second, 20 parallel", 2000, 1000, "/s", "vwire's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, ok := byName[tc.name]
			if !ok {
				t.Fatalf("no row %q", tc.name)
			}
			if row.Group != "latency" || row.Unit != tc.unit || row.Value != tc.value || row.Baseline == nil ||
				*row.Baseline != tc.base || row.BaselineName != tc.baseName || row.Ratio == nil {
				t.Errorf("%+v, want %v %s next to %v %s", row, tc.value, tc.unit, tc.base, tc.baseName)
			}
		})
	}
	if len(rows) != 25 {
		t.Errorf("%d rows, want 25 (4×3 sequential, 3×3 parallel, 4 rates)", len(rows))
	}
}

// The plain loop's runs in real namespaces: every pair made and timed,
// one at a time and from parallel workers, and nothing left after.
func TestPlainLoopRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and veth pairs")
	}
	w, err := NewWorld("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	a, err := w.Netns("pl-nsc")
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.Netns("pl-nse")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		n, parallel int
	}{{"sequential", 5, 1}, {"parallel", 12, 4}} {
		t.Run(tc.name, func(t *testing.T) {
			snaps := 0
			snap := func() { snaps++ }
			run, err := plainLoopRun(ctx, a, b, "pl", tc.n, tc.parallel, nil, snap, snap)
			if err != nil {
				t.Fatal(err)
			}
			if len(run.up) != tc.n || len(run.down) != tc.n {
				t.Fatalf("%d Connects and %d Disconnects timed, want %d each", len(run.up), len(run.down), tc.n)
			}
			for i, d := range append(run.up, run.down...) {
				if d <= 0 {
					t.Errorf("call %d: %v", i, d)
				}
			}
			if tc.parallel > 1 && (run.upWall <= 0 || run.downWall <= 0 || snaps != 2) {
				t.Errorf("walls %v, %v and %d snaps: want both walls and 2 snaps", run.upWall, run.downWall, snaps)
			}
			for _, ns := range []*Netns{a, b} {
				if out, err := ns.IP("-o", "link", "show"); err != nil || countLines(out) != 1 {
					t.Errorf("%s after the run: %v\n%s", ns.Label, err, out)
				}
			}
		})
	}
	// A pair whose name is taken: the run fails, and leaves nothing of its own.
	if _, err := a.IP("link", "add", "pl0", "type", "veth", "peer", "name", "pl0x"); err != nil {
		t.Fatal(err)
	}
	if _, err := plainLoopRun(ctx, a, b, "pl", 3, 1, nil, nil, nil); err == nil {
		t.Error("a name taken: no error")
	}
	if out, _ := b.IP("-o", "link", "show"); countLines(out) != 1 {
		t.Errorf("the endpoint's namespace after a failed run:\n%s", out)
	}
}

func countLines(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

func TestBreakdown(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	windows := []reqWindow{{at(0), at(10)}, {at(20), at(25)}}
	const (
		mgr   = `time=2026-12-06T05:00:00.009Z level=DEBUG msg="grpc call" method=/networkservice.NetworkService/Request peer=spiffe://vwire.local/vwire/bench code=OK duration=%s err=<nil>`
		fwd   = `time=2026-12-06T05:00:00.009Z level=DEBUG msg="grpc call" method=/networkservice.NetworkService/Request peer=spiffe://vwire.local/vwire/manager code=OK duration=%s err=<nil>`
		close = `time=2026-12-06T05:00:00.012Z level=DEBUG msg="grpc call" method=/networkservice.NetworkService/Close peer=spiffe://vwire.local/vwire/bench code=OK duration=1ms err=<nil>`
		built = `time=2026-12-06T05:00:00.008Z level=DEBUG msg="kernel vWire built" dataplane=kernel conn=c pair="a<->b" took=1ms whole=%s open=100µs check=50µs record=30µs create=%s client_end=100µs endpoint_end=200µs`
		ep    = `time=2026-12-06T05:00:00.008Z level=DEBUG msg="grpc call" method=/networkservice.NetworkService/Request peer=spiffe://vwire.local/vwire/forwarder code=OK duration=%s err=<nil>`
	)
	node := strings.Join([]string{
		fmt.Sprintf(built, "2ms", "1.52ms"), fmt.Sprintf(fwd, "4ms"), fmt.Sprintf(mgr, "6ms"),
		// A refused Request is no Request of the run's.
		`time=2026-12-06T05:00:00.009Z level=INFO msg="grpc call" method=/networkservice.NetworkService/Request peer=spiffe://vwire.local/vwire/bench code=Unavailable duration=1ms err="no"`,
		close,
		"gc 3 @1.0s 0%: 0.5+3.0+0.25 ms clock, 1+1/1/1+1 ms cpu, 4->4->2 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 2 P",
		fmt.Sprintf(`time=2026-12-06T05:00:00.030Z level=DEBUG msg="reaper pass" dataplane=kernel calls=1 start_us=%d took=3ms`, at(21).UnixMicro()),
		fmt.Sprintf(built, "3ms", "2.5ms"), fmt.Sprintf(fwd, "3.5ms"), fmt.Sprintf(mgr, "4ms"), close,
	}, "\n")
	epLog := fmt.Sprintf(ep, "500µs") + "\n" + fmt.Sprintf(ep, "250µs") + "\n"
	got, err := breakdown(strings.NewReader(node), strings.NewReader(epLog), windows)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	want := []reqPhases{
		{total: ms(10), manager: ms(6), forwarder: ms(4), endpoint: ms(0.5), kernel: ms(2),
			steps: [6]time.Duration{ms(0.1), ms(0.05), ms(0.03), ms(1.52), ms(0.1), ms(0.2)}},
		{total: ms(5), manager: ms(4), forwarder: ms(3.5), endpoint: ms(0.25), kernel: ms(3),
			steps:  [6]time.Duration{ms(0.1), ms(0.05), ms(0.03), ms(2.5), ms(0.1), ms(0.2)},
			reaper: ms(3), gcs: 1, gcPause: ms(0.75)},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Request %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// A log without the debug lines says so instead of a breakdown.
	if _, err := breakdown(strings.NewReader(close), strings.NewReader(""), windows); err == nil || !strings.Contains(err.Error(), "VWIRE_BENCH_LOG_LEVEL=debug") {
		t.Errorf("no debug lines: err %v", err)
	}
	rows := tailRows("latency", got)
	if len(rows) != 16 || rows[0].Value != 10 || rows[0].Baseline == nil || *rows[0].Baseline != 5 || rows[0].Samples != 1 {
		t.Errorf("%d rows, the first %+v: want 16, the slowest's 10 ms next to the median's 5", len(rows), rows[0])
	}
}

func TestLogfmt(t *testing.T) {
	kv := logfmt(`time=2026-12-06T05:00:00.009Z msg="grpc call" err="a \"quoted\" b" n=3`)
	for k, want := range map[string]string{"time": "2026-12-06T05:00:00.009Z", "msg": "grpc call", "err": `a "quoted" b`, "n": "3"} {
		if kv[k] != want {
			t.Errorf("%s = %q, want %q", k, kv[k], want)
		}
	}
	if p, ok := gcLine("gc 3 @1.0s 0%: 0.5+3.0+0.25 ms clock, x"); !ok || p != 750*time.Microsecond {
		t.Errorf("gc line: %v %v", p, ok)
	}
	if _, ok := gcLine("gc 3 nothing"); ok {
		t.Error("a broken gc line parsed")
	}
}
