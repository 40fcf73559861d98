package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vwire/vwire/forwarder/vpp"
)

const promSample = `# HELP vwire_vpp_api_seconds VPP binary API call latency.
# TYPE vwire_vpp_api_seconds histogram
vwire_vpp_api_seconds_bucket{msg="memif_create_v2",le="0.001"} 3
vwire_vpp_api_seconds_sum{msg="memif_create_v2"} 0.004
vwire_vpp_api_seconds_count{msg="memif_create_v2"} 4
vwire_vpp_api_seconds_sum{msg="sw_interface_set_flags"} 0.002
vwire_vpp_api_seconds_count{msg="sw_interface_set_flags"} 4
vwire_manager_request_duration_seconds_sum{code="OK"} 0.05
vwire_manager_request_duration_seconds_count{code="OK"} 5
vwire_manager_request_duration_seconds_sum{code="Unavailable"} 0.01
vwire_manager_request_duration_seconds_count{code="Unavailable"} 1
go_goroutines 42
process_start_time_seconds 1.7e+09 1700000000000

`

func TestParsePromText(t *testing.T) {
	got, err := parsePromText(strings.NewReader(promSample))
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{
		`vwire_vpp_api_seconds_sum{msg="memif_create_v2"}`: 0.004,
		"go_goroutines":              42,
		"process_start_time_seconds": 1.7e9,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	if v := got.total("vwire_manager_request_duration_seconds_count"); v != 6 {
		t.Errorf("total of the manager's count over its codes: %v, want 6", v)
	}
	if v := got.total("vwire_vpp_api_seconds"); v != 0 {
		t.Errorf("total of a name no series has exactly: %v, want 0", v)
	}
	by := got.byLabel("vwire_vpp_api_seconds_count", "msg")
	if len(by) != 2 || by["memif_create_v2"] != 4 || by["sw_interface_set_flags"] != 4 {
		t.Errorf("count by msg: %v", by)
	}
	for _, bad := range []string{"go_goroutines\n", "go_goroutines many\n", `x{a="b"}` + "\n"} {
		if _, err := parsePromText(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCostOf(t *testing.T) {
	before := [2]promText{
		{`vwire_manager_request_duration_seconds_sum{code="OK"}`: 1, `vwire_manager_request_duration_seconds_count{code="OK"}`: 10,
			`vwire_vpp_api_seconds_sum{msg="a"}`: 1, `vwire_vpp_api_seconds_count{msg="a"}`: 100},
		{},
	}
	after := [2]promText{
		{`vwire_manager_request_duration_seconds_sum{code="OK"}`: 1.2, `vwire_manager_request_duration_seconds_count{code="OK"}`: 20,
			`vwire_vpp_api_seconds_sum{msg="a"}`: 1.03, `vwire_vpp_api_seconds_count{msg="a"}`: 120,
			`vwire_vpp_api_seconds_sum{msg="b"}`: 0.05, `vwire_vpp_api_seconds_count{msg="b"}`: 10},
		{`vwire_vpp_api_seconds_sum{msg="c"}`: 0.01, `vwire_vpp_api_seconds_count{msg="c"}`: 30},
	}
	c := costOf(10, before, after)
	near := func(got, want time.Duration) bool { return (got - want).Abs() < time.Microsecond }
	if !near(c.manager, 20*time.Millisecond) {
		t.Errorf("manager: %v, want 20ms (0.2 s over 10 Requests)", c.manager)
	}
	if !near(c.api[0], 8*time.Millisecond) || c.calls[0] != 3 {
		t.Errorf("node1: %v and %v calls per vWire, want 8ms and 3", c.api[0], c.calls[0])
	}
	if !near(c.api[1], time.Millisecond) || c.calls[1] != 3 {
		t.Errorf("node2: %v and %v calls per vWire, want 1ms and 3", c.api[1], c.calls[1])
	}
	if want := "b 1.0× 5.000 ms, a 2.0× 3.000 ms"; c.top[0] != want {
		t.Errorf("node1's top messages: %q, want %q", c.top[0], want)
	}
	if z := costOf(0, before, after); z != (vsCost{}) {
		t.Errorf("no vWires: %+v, want nothing", z)
	}
	if one := costOf(10, before, [2]promText{after[0], nil}); one.calls[1] != 0 || one.calls[0] != 3 {
		t.Errorf("without node2's metrics: %+v", one)
	}
}

func durMs(n ...int) []time.Duration {
	var out []time.Duration
	for _, v := range n {
		out = append(out, time.Duration(v)*time.Millisecond)
	}
	return out
}

func TestVPPScaleRows(t *testing.T) {
	r := vsResult{
		parallel:  20,
		kernelSeq: vsRun{up: durMs(2, 2, 2, 2)}, kernelPar: vsRun{up: durMs(1, 1), upWall: time.Second},
		memifSeq:     vsRun{up: durMs(4, 4, 4, 4), down: durMs(2, 2, 2, 2)},
		plainSeq:     vsRun{up: durMs(1, 1, 1, 1), down: durMs(1, 1, 1, 1)},
		memifPar:     vsRun{up: durMs(10, 10, 10, 10), upWall: 10 * time.Millisecond, down: durMs(1, 1, 1, 1), downWall: 4 * time.Millisecond},
		plainPar:     vsRun{up: durMs(5, 5, 5, 5), upWall: 5 * time.Millisecond, down: durMs(1, 1, 1, 1), downWall: 2 * time.Millisecond},
		memifSeqCost: vsCost{manager: 3 * time.Millisecond, api: [2]time.Duration{time.Millisecond}, calls: [2]float64{12}},
		remote: []vsRemoteResult{
			{kind: vsRemote[0], vwire: vsRun{up: durMs(8, 8), upWall: 10 * time.Millisecond, down: durMs(1, 1), downWall: 5 * time.Millisecond},
				plain: vsRun{up: durMs(2, 2), upWall: 2 * time.Millisecond, down: durMs(1, 1), downWall: time.Millisecond}},
			{kind: vsRemote[1], err: errors.New("VPP said no")},
		},
	}
	rows := vppScaleRows(r)
	find := func(name string) Row {
		t.Helper()
		for _, row := range rows {
			if row.Name == name {
				return row
			}
		}
		t.Fatalf("no row %q", name)
		return Row{}
	}
	for _, tc := range []struct {
		name           string
		value, base    float64
		unit, baseName string
	}{
		{"request→vWire-up, local memif vWire, one at a time, p50", 4, 1, "ms", "plain VPP API loop"},
		{"request→vWire-up, local memif vWire, one at a time, next to the kernel dataplane, p99", 4, 2, "ms", "kernel dataplane, local kernel vWire"},
		{"close, local memif vWire, one at a time, p90", 2, 1, "ms", "plain VPP API loop"},
		{"vWires up per second, local memif vWires, 20 parallel", 400, 800, "/s", "plain VPP API loop"},
		{"vWires up per second, local memif vWires, 20 parallel, next to the kernel dataplane", 400, 2, "/s", "kernel dataplane, local kernel vWire"},
		{"vWires closed per second, local memif vWires, 20 parallel", 1000, 2000, "/s", "plain VPP API loop"},
		{"request→vWire-up, local memif vWires, 20 parallel, p50", 10, 5, "ms", "plain VPP API loop"},
		{"vWires up per second, remote VXLAN vWires, 20 parallel", 200, 1000, "/s", "plain VPP API loop"},
		{"vWires closed per second, remote VXLAN vWires, 20 parallel", 400, 2000, "/s", "plain VPP API loop"},
		{"request→vWire-up, remote VXLAN vWires, 20 parallel, p99", 8, 2, "ms", "plain VPP API loop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row := find(tc.name)
			if row.Group != GroupVPPScale || row.Unit != tc.unit || row.Value != tc.value || row.Baseline == nil ||
				*row.Baseline != tc.base || row.BaselineName != tc.baseName || row.Ratio == nil {
				t.Errorf("%+v, want %v %s next to %v %s", row, tc.value, tc.unit, tc.base, tc.baseName)
			}
		})
	}
	for name, want := range map[string]float64{
		"time in node1's manager per Request, local memif vWire, one at a time":            3,
		"VPP API calls per vWire on node1, local memif vWire, one at a time":               12,
		"VPP API time per vWire on node1 (calls summed), local memif vWire, one at a time": 1,
		"VPP API time per vWire on node2 (calls summed), remote VXLAN vWires, 20 parallel": 0,
		"time in node1's manager per Request, local memif vWires, 20 parallel":             0,
	} {
		if got := find(name); got.Value != want || got.Baseline != nil {
			t.Errorf("%s = %+v, want %v without baseline", name, got, want)
		}
	}
	if len(rows) != 32 {
		t.Errorf("%d rows, want 32 (9 + 3 one at a time, 3 + 3 + 3 in parallel, 2 + 3 + 5 for VXLAN, 1 for the failed WireGuard):\n%+v", len(rows), rows)
	}
	wg := find("vWires up per second, remote WireGuard vWires, 20 parallel")
	if wg.Skipped != "failed: VPP said no" {
		t.Errorf("the failed kind's row: %+v", wg)
	}
	for _, row := range rows {
		if row.Group != GroupVPPScale {
			t.Errorf("%s: group %q", row.Name, row.Group)
		}
	}
}

func TestPool(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int64
	took, wall, err := pool(ctx, 50, 7, nil, func(i int) error {
		calls.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	})
	if err != nil || len(took) != 50 || calls.Load() != 50 || wall <= 0 {
		t.Fatalf("50 calls from 7 workers: %d timed, %d made, wall %v, %v", len(took), calls.Load(), wall, err)
	}
	for i, d := range took {
		if d < time.Millisecond {
			t.Errorf("call %d took %v, less than its sleep", i, d)
		}
	}

	calls.Store(0)
	_, _, err = pool(ctx, 1000, 3, nil, func(i int) error {
		calls.Add(1)
		if i == 5 {
			return errors.New("five")
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "five") {
		t.Errorf("a failing call: %v, want its error", err)
	}
	if n := calls.Load(); n >= 1000 {
		t.Errorf("%d calls made after a failure, want the work to stop", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := pool(cctx, 10, 2, nil, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: %v", err)
	}
}

func TestCountObjects(t *testing.T) {
	ifs := []vpp.Interface{
		{Name: "local0"}, {Name: "host-eth0", AdminUp: true},
		{Name: "memif1/0", AdminUp: true}, {Name: "memif2/0"},
		{Name: "vxlan_tunnel0", AdminUp: true}, {Name: "wg0"}, {Name: "wg1", AdminUp: true},
	}
	got := countObjects(ifs, 4)
	if want := (vsObjects{memifs: 2, upMemifs: 1, vxlans: 1, wgs: 2, l2xcs: 4}); got != want {
		t.Errorf("%+v, want %+v", got, want)
	}
	if got := got.plus(vsObjects{memifs: 1, l2xcs: 2}, 3); got != (vsObjects{memifs: 5, upMemifs: 1, vxlans: 1, wgs: 2, l2xcs: 10}) {
		t.Errorf("plus: %+v", got)
	}
}

func TestConfigVPPScale(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, clients int
		want       string
	}{
		{name: "default", n: 200, clients: 20},
		{name: "largest", n: maxVPPScaleN, clients: 1},
		{name: "no vWires", n: 0, clients: 20, want: "at least 1"},
		{name: "too many", n: maxVPPScaleN + 1, clients: 20, want: "at most 1000"},
		{name: "no clients", n: 10, clients: 0, want: "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Only = []string{GroupVPPScale}
			c.VPPScaleN, c.VPPScaleParallel = tc.n, tc.clients
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("n %d, clients %d: %v, want %q", tc.n, tc.clients, err, tc.want)
			}
		})
	}
	if d := DefaultConfig(); d.VPPScaleN != 200 || d.VPPScaleParallel != 20 {
		t.Errorf("defaults: %d vWires, %d clients; want 200 and 20", d.VPPScaleN, d.VPPScaleParallel)
	}
}

// TestMeasureVPPScaleSkips checks the group says why it did not run
// without VPP.
func TestMeasureVPPScaleSkips(t *testing.T) {
	rows, err := measureVPPScale(context.Background(), DefaultConfig(), nil)
	if err != nil || len(rows) != 1 || !strings.Contains(rows[0].Skipped, "VPP_BIN is not set") || rows[0].Group != GroupVPPScale {
		t.Errorf("without VPP_BIN: %+v, %v; want one row saying VPP_BIN is not set", rows, err)
	}
}

func TestMeshVPPOptions(t *testing.T) {
	o := meshOptions{VPPBin: "/v/vpp", MemifReserve: 416, Metrics: true}
	want := "--dataplane vpp --vpp-bin /v/vpp --vpp-state-dir /d/vpp --uplink eth0 --vpp-poll-sleep-usec 100 --vpp-memif-reserve 416"
	if got := strings.Join(o.dataplaneArgs("/d/vpp"), " "); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The kernel dataplane has no memif reserve.
	o = meshOptions{MemifReserve: 416}
	if got := strings.Join(o.dataplaneArgs("/d/vpp"), " "); got != "--dataplane kernel --wireguard off" {
		t.Errorf("kernel: %s", got)
	}
}

func TestAbstractSocket(t *testing.T) {
	if got := abstractSocket("vs-plain-3-c", "/var/run/netns/vw-1-b-vs-nsc"); got != "abstract:vs-plain-3-c,netns_name=/var/run/netns/vw-1-b-vs-nsc" {
		t.Errorf("%s", got)
	}
}

func TestWriteTableLoad(t *testing.T) {
	rep := &Report{Version: "v", Machine: Machine{CPUs: 2, CPUModel: "CPU", Kernel: "6.1", GoArch: "amd64"},
		Started: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), Duration: 36 * time.Second, LoadAvg: "9.39 6.27 3.59"}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if want := "took 36s, load average 9.39 6.27 3.59\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("table ends %q, want %q", b.String(), want)
	}
	if l := loadAverage(); len(strings.Fields(l)) != 3 {
		t.Errorf("loadAverage() = %q, want three figures", l)
	}
}
