package bench

import (
	"context"
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
