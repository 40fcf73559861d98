package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // 100..1, unsorted
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{name: "none", samples: nil, p: 50, want: 0},
		{name: "one", samples: ms(7), p: 99, want: 7 * time.Millisecond},
		{name: "p50 of odd count is the median", samples: ms(5, 1, 3), p: 50, want: 3 * time.Millisecond},
		{name: "p50 of even count is the lower middle", samples: ms(4, 1, 3, 2), p: 50, want: 2 * time.Millisecond},
		{name: "p100 is the max", samples: ms(4, 9, 3), p: 100, want: 9 * time.Millisecond},
		{name: "tiny p is the min", samples: ms(4, 9, 3), p: 0.1, want: 3 * time.Millisecond},
		{name: "p90 of 1..100", samples: hundred, p: 90, want: 90 * time.Millisecond},
		{name: "p99 of 1..100", samples: hundred, p: 99, want: 99 * time.Millisecond},
		{name: "p99 of 10 is the max", samples: ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), p: 99, want: 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tc.samples...)
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.samples, tc.p, got, tc.want)
			}
			for i := range before {
				if before[i] != tc.samples[i] {
					t.Fatalf("Percentile reordered its input: %v, was %v", tc.samples, before)
				}
			}
		})
	}
}

func TestWithBaseline(t *testing.T) {
	r := Row{Value: 30}.WithBaseline("plain veth", 10)
	if r.Baseline == nil || *r.Baseline != 10 || r.Ratio == nil || *r.Ratio != 3 || r.BaselineName != "plain veth" {
		t.Fatalf("row %+v: want baseline 10, ratio 3", r)
	}
	zero := Row{Value: 30}.WithBaseline("nothing", 0)
	if zero.Ratio != nil {
		t.Errorf("a zero baseline gave ratio %v; want none", *zero.Ratio)
	}
}

func TestPercentileRows(t *testing.T) {
	rows := percentileRows("latency", "req", ms(1, 2, 3, 4), "veth", ms(1, 1, 1, 2))
	if len(rows) != 3 {
		t.Fatalf("%d rows, want p50, p90, p99", len(rows))
	}
	want := []struct {
		name        string
		value, base float64
	}{{"req, p50", 2, 1}, {"req, p90", 4, 2}, {"req, p99", 4, 2}}
	for i, w := range want {
		r := rows[i]
		if r.Name != w.name || r.Value != w.value || r.Unit != "ms" || r.Samples != 4 || r.Baseline == nil || *r.Baseline != w.base {
			t.Errorf("row %d = %+v, want %s %v ms next to %v", i, r, w.name, w.value, w.base)
		}
	}
	if rows := percentileRows("latency", "req", ms(1), "", nil); rows[0].Baseline != nil {
		t.Errorf("no baseline samples gave a baseline: %+v", rows[0])
	}
}

func testReport() *Report {
	return &Report{
		Version:  "v-test",
		Machine:  Machine{CPUs: 2, CPUModel: "Test CPU", Kernel: "6.1.0", GoArch: "amd64"},
		Started:  time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Duration: 93 * time.Second,
		Rows: []Row{
			Row{Group: "latency", Name: "request→vWire-up, p50", Value: 41.234, Unit: "ms", Samples: 50}.WithBaseline("plain veth", 2.5),
			{Group: "throughput", Name: "TCP across a vWire", Value: 12345.6, Unit: "Mbit/s"},
			Skip("memif", "memif→memif", "VPP_BIN is not set"),
		},
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| measurement",
		"latency: request→vWire-up, p50 (n=50)",
		"| 41.2 ms",
		"| 2.50 ms plain veth",
		"| 16.49×",
		"| 12346 Mbit/s",
		"memif: memif→memif",
		"skipped: VPP_BIN is not set",
		"vwire v-test on 2 × Test CPU, Linux 6.1.0 (amd64), 2026-11-25, took 1m33s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Every table line has the same number of cells.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "|") && strings.Count(line, "|") != 5 {
			t.Errorf("line %q: %d bars, want 5", line, strings.Count(line, "|"))
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version string `json:"version"`
		Machine struct {
			CPUs     int    `json:"cpus"`
			CPUModel string `json:"cpu_model"`
		} `json:"machine"`
		Duration int64 `json:"duration_ns"`
		Rows     []struct {
			Group    string   `json:"group"`
			Name     string   `json:"name"`
			Value    float64  `json:"value"`
			Unit     string   `json:"unit"`
			Baseline *float64 `json:"baseline"`
			Ratio    *float64 `json:"ratio"`
			Samples  int      `json:"samples"`
			Skipped  string   `json:"skipped"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	if got.Version != "v-test" || got.Machine.CPUs != 2 || got.Machine.CPUModel != "Test CPU" || got.Duration != int64(93*time.Second) {
		t.Errorf("header = %+v", got)
	}
	if len(got.Rows) != 3 {
		t.Fatalf("%d rows, want 3", len(got.Rows))
	}
	r := got.Rows[0]
	if r.Group != "latency" || r.Value != 41.234 || r.Unit != "ms" || r.Baseline == nil || *r.Baseline != 2.5 || r.Ratio == nil || *r.Ratio != 41.234/2.5 || r.Samples != 50 {
		t.Errorf("row 0 = %+v", r)
	}
	if got.Rows[1].Baseline != nil || got.Rows[1].Ratio != nil {
		t.Errorf("row without a baseline has one in JSON: %s", b.String())
	}
	if got.Rows[2].Skipped != "VPP_BIN is not set" {
		t.Errorf("skipped row = %+v", got.Rows[2])
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel(info); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel("processor: 0\n"); got != "unknown" {
		t.Errorf("cpuModel without a model = %q", got)
	}
}

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		done, total int
		want        string
	}{
		{0, 10, "[                              ] 0/10"},
		{5, 10, "[==============>               ] 5/10"},
		{10, 10, "[==============================] 10/10"},
		{3, 0, "[...]"},
	} {
		if got := bar(tc.done, tc.total); got != tc.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

func TestProgressLines(t *testing.T) {
	var b bytes.Buffer
	p := newProgressTo(&b, false)
	p.Stage("latency: 8 sequential", 8)
	for range 8 {
		p.Step()
	}
	p.Logf("a note %d", 1)
	p.Done()
	p.Done() // twice is fine
	var nilP *Progress
	nilP.Stage("x", 1) // a nil Progress shows nothing
	nilP.Step()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"bench: latency: 8 sequential ...", "bench: latency: 8 sequential 2/8", "bench: latency: 8 sequential 4/8",
		"bench: latency: 8 sequential 6/8", "bench: a note 1", "bench: latency: 8 sequential done in"}
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s\nwant %d lines", b.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want %q...", i, lines[i], w)
		}
	}
	if strings.Contains(b.String(), "\r") || strings.Contains(b.String(), "\033") {
		t.Errorf("plain progress has terminal controls: %q", b.String())
	}
}
