package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one measured figure, next to its baseline when it has one.
type Row struct {
	// Group is the measurement the row belongs to: latency, heal, find,
	// throughput.
	Group string `json:"group"`
	// Name says what was measured, e.g. "request→vWire-up, sequential, p50".
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Baseline is the same figure for the baseline (plain veth, raw VPP
	// memif, a small registry...), named by BaselineName; nil when the row
	// has none.
	Baseline     *float64 `json:"baseline,omitempty"`
	BaselineName string   `json:"baseline_name,omitempty"`
	// Ratio is Value / Baseline.
	Ratio *float64 `json:"ratio,omitempty"`
	// Samples is how many measurements the figure summarises.
	Samples int `json:"samples,omitempty"`
	// Skipped says why the row was not measured; Value is meaningless then.
	Skipped string `json:"skipped,omitempty"`
}

// WithBaseline returns r with its baseline and the ratio set.
func (r Row) WithBaseline(name string, v float64) Row {
	r.BaselineName, r.Baseline = name, &v
	if v != 0 {
		ratio := r.Value / v
		r.Ratio = &ratio
	}
	return r
}

// Skip is a row that was not measured, and why.
func Skip(group, name, why string) Row {
	return Row{Group: group, Name: name, Skipped: why}
}

// Machine describes where a report was made.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	GoArch   string `json:"goarch"`
}

// ThisMachine reads the CPU model and kernel release from /proc.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoArch: runtime.GOARCH, CPUModel: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Report is the outcome of a run.
type Report struct {
	Version  string        `json:"version"`
	Machine  Machine       `json:"machine"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// LoadAvg is the host's load average (1, 5, 15 min) when the run
	// ended: on a shared host it says how far to trust the figures.
	LoadAvg string `json:"load_average,omitempty"`
	Rows    []Row  `json:"rows"`
}

// loadAverage is /proc/loadavg's 1, 5 and 15 min figures ("" when
// unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as an aligned text table (also valid as a
// Markdown table), then the machine it ran on.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| measurement\t| value\t| baseline\t| ratio\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|")
	for _, row := range r.Rows {
		name := row.Group + ": " + row.Name
		if row.Samples > 0 {
			name += fmt.Sprintf(" (n=%d)", row.Samples)
		}
		if row.Skipped != "" {
			fmt.Fprintf(tw, "| %s\t| skipped: %s\t| \t| \t|\n", name, row.Skipped)
			continue
		}
		base, ratio := "", ""
		if row.Baseline != nil {
			base = formatValue(*row.Baseline, row.Unit) + " " + row.BaselineName
		}
		if row.Ratio != nil {
			ratio = fmt.Sprintf("%.2f×", *row.Ratio)
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t|\n", name, formatValue(row.Value, row.Unit), base, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	load := ""
	if r.LoadAvg != "" {
		load = ", load average " + r.LoadAvg
	}
	_, err := fmt.Fprintf(w, "\nvwire %s on %d × %s, Linux %s (%s), %s, took %s%s\n",
		r.Version, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoArch,
		r.Started.UTC().Format("2006-01-02"), r.Duration.Round(time.Second), load)
	return err
}

// formatValue prints v with three significant digits or so, and its unit.
func formatValue(v float64, unit string) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case a >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of samples by the
// nearest-rank method: the smallest sample that at least p% of the samples
// are less than or equal to. It returns 0 for no samples and does not
// change samples.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentileRows turns samples into p50, p90 and p99 rows in ms, each
// next to the same percentile of the baseline's samples when there are
// some.
func percentileRows(group, name string, samples []time.Duration, baseName string, base []time.Duration) []Row {
	var rows []Row
	for _, p := range []float64{50, 90, 99} {
		r := Row{Group: group, Name: fmt.Sprintf("%s, p%.0f", name, p), Value: Millis(Percentile(samples, p)), Unit: "ms", Samples: len(samples)}
		if len(base) > 0 {
			r = r.WithBaseline(baseName, Millis(Percentile(base, p)))
		}
		rows = append(rows, r)
	}
	return rows
}
