package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Builders of a topology: vwire's dataplane, or the same objects by hand.
const (
	BuiltByVwire = "vwire"
	BuiltByHand  = "hand"
)

// DataplaneResult is one search: a topology, a frame size, a builder.
type DataplaneResult struct {
	Topology  string    `json:"topology"`
	FrameSize FrameSize `json:"frame_size"`
	BuiltBy   string    `json:"built_by"`
	SearchResult
	// MRR is the median delivered rate of the unthrottled trials: the
	// search's first and MRRTrials, made before it.
	MRR       float64       `json:"mrr_pps"`
	MRRTrials []TrialResult `json:"mrr_trials,omitempty"`
	// Repetitions are each repetition's figures, when there were several
	// (the figures above are their medians).
	Repetitions []Figures `json:"repetitions,omitempty"`
	// Latency at each load of LatencyLoads.
	Latency []LatencyResult `json:"latency,omitempty"`
	// Error says why the search did not finish; the figures are then
	// what it had.
	Error string `json:"error,omitempty"`
}

// Figures are one repetition's MRR, NDR, PDR and source rate.
type Figures struct {
	MRR       float64 `json:"mrr_pps"`
	NDR       float64 `json:"ndr_pps"`
	PDR       float64 `json:"pdr_pps"`
	SourceMax float64 `json:"source_max_pps"`
}

func (f Figures) of(k figureKind) float64 {
	switch k {
	case figMRR:
		return f.MRR
	case figPDR:
		return f.PDR
	}
	return f.NDR
}

func (x *DataplaneResult) figures() Figures {
	return Figures{MRR: x.MRR, NDR: x.NDR, PDR: x.PDR, SourceMax: x.SourceMax}
}

// ratio is vwire's figure k over the hand-made path's (ok false when the
// latter is 0): with several repetitions, the median of the repetitions'
// ratios, each of two figures measured in turns under the same load.
func ratio(v, h *DataplaneResult, k figureKind) (float64, bool) {
	if n := len(v.Repetitions); n > 1 && n == len(h.Repetitions) {
		var rs []float64
		for i := range n {
			if hv := h.Repetitions[i].of(k); hv > 0 {
				rs = append(rs, v.Repetitions[i].of(k)/hv)
			}
		}
		return Median(rs), len(rs) > 0
	}
	hv := h.figures().of(k)
	if hv == 0 {
		return 0, false
	}
	return v.figures().of(k) / hv, true
}

// Goal is the ratio of vwire's figures to the hand-made ones' that every
// row should reach.
const Goal = 0.95

// belowGoal explains each figure of vwire's under Goal × the hand-made
// one's: when both builders made the same objects, the packets met the
// same VPP nodes, and only the host (load, scheduling) can tell them apart.
func belowGoal(r *DataplaneReport) []string {
	var notes []string
	topos, sizes := r.cells()
	for _, t := range topos {
		if t == TopoTrunkCost {
			continue // two designs, not vwire against its own objects
		}
		same := slices.ContainsFunc(r.Objects, func(o TopologyObjects) bool { return o.Topology == t && o.Same })
		for _, f := range sizes {
			v, h := r.find(t, f, BuiltByVwire), r.find(t, f, BuiltByHand)
			if v == nil || h == nil {
				continue
			}
			var low []string
			for _, k := range []figureKind{figMRR, figNDR, figPDR} {
				if q, ok := ratio(v, h, k); ok && q < Goal {
					low = append(low, fmt.Sprintf("%s %.2f", k, q))
				}
			}
			if len(low) == 0 {
				continue
			}
			why := "the objects differ (see objects): look there first"
			if same {
				why = "the same VPP objects on the path, so the host's load and scheduling made the difference; rerun on an idle host"
			}
			notes = append(notes, fmt.Sprintf("%s %s: vwire/hand %s below %.2f: %s", t, f, strings.Join(low, ", "), Goal, why))
		}
	}
	return notes
}

// LatencyResult is the round-trip time of pings across a path while the
// packet generator loads it at Load × its NDR.
type LatencyResult struct {
	Load           float64       `json:"load"`
	Rate           float64       `json:"rate_pps"`
	Sent, Received int           `json:"-"`
	P50            time.Duration `json:"p50_ns"`
	P99            time.Duration `json:"p99_ns"`
}

// MarshalJSON adds the pings sent and answered.
func (l LatencyResult) MarshalJSON() ([]byte, error) {
	type plain LatencyResult
	return json.Marshal(struct {
		plain
		Sent     int `json:"pings"`
		Received int `json:"answered"`
	}{plain(l), l.Sent, l.Received})
}

// Mpps is a rate of frames in millions per second.
func Mpps(pps float64) float64 { return pps / 1e6 }

// Gbps is the bit rate of pps frames of f on the wire, FCS included
// (no preamble or inter-frame gap: memif has none).
func Gbps(pps float64, f FrameSize) float64 { return pps * f.MeanBytes() * 8 / 1e9 }

// DataplaneReport is the outcome of `vwire bench dataplane`.
type DataplaneReport struct {
	Version    string        `json:"version"`
	VPPVersion string        `json:"vpp_version"`
	Machine    Machine       `json:"machine"`
	Placement  string        `json:"placement"`
	Trial      time.Duration `json:"trial_duration_ns"`
	Precision  float64       `json:"precision"`
	MRRTrials  int           `json:"mrr_trials"`
	// Repetitions of each paired measurement (figures are medians).
	Repetitions int           `json:"repetitions"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	LoadAvg     string        `json:"load_average,omitempty"`
	// KernelSide says what the kernel topology's KERNEL side was, and
	// why (tap, or a veth on a VLAN of the af_packet trunk).
	KernelSide string            `json:"kernel_side,omitempty"`
	Results    []DataplaneResult `json:"results"`
	// Objects are the VPP objects of each topology, as each builder
	// made them.
	Objects []TopologyObjects `json:"objects,omitempty"`
	// Notes explain figures: skipped topologies, results below goal.
	Notes []string `json:"notes,omitempty"`
}

// TopologyObjects lists the interfaces a topology's builders made on each
// node, with their MTU, state and cross-connects, and whether the two
// lists are the same.
type TopologyObjects struct {
	Topology string `json:"topology"`
	Vwire    string `json:"vwire"`
	Hand     string `json:"hand"`
	Same     bool   `json:"same"`
}

// find returns the result for topology t, frame size f, builder b.
func (r *DataplaneReport) find(t string, f FrameSize, b string) *DataplaneResult {
	for i := range r.Results {
		x := &r.Results[i]
		if x.Topology == t && x.FrameSize == f && x.BuiltBy == b {
			return x
		}
	}
	return nil
}

// cells lists the (topology, frame size) pairs of the report in the order
// they were measured.
func (r *DataplaneReport) cells() (topos []string, sizes []FrameSize) {
	for _, x := range r.Results {
		if !slices.Contains(topos, x.Topology) {
			topos = append(topos, x.Topology)
		}
		if !slices.Contains(sizes, x.FrameSize) {
			sizes = append(sizes, x.FrameSize)
		}
	}
	return topos, sizes
}

// WriteJSON writes the report as one indented JSON document.
func (r *DataplaneReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeLatency writes the latency table, when there is latency.
func (r *DataplaneReport) writeLatency(w io.Writer) error {
	if !slices.ContainsFunc(r.Results, func(x DataplaneResult) bool { return len(x.Latency) > 0 }) {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "\n| topology\t| frame\t| load\t| RTT p50 vwire\t| p50 hand\t| ratio\t| RTT p99 vwire\t| p99 hand\t| ratio\t| answered\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	topos, sizes := r.cells()
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
	ratio := func(a, b time.Duration) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(a)/float64(b))
	}
	for _, t := range topos {
		for _, f := range sizes {
			v, h := r.find(t, f, BuiltByVwire), r.find(t, f, BuiltByHand)
			if v == nil || h == nil || len(v.Latency) != len(h.Latency) {
				continue
			}
			for i, lv := range v.Latency {
				lh := h.Latency[i]
				fmt.Fprintf(tw, "| %s\t| %s\t| %.0f %% NDR\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %d/%d, %d/%d\t|\n", t, f, lv.Load*100,
					us(lv.P50), us(lh.P50), ratio(lv.P50, lh.P50), us(lv.P99), us(lh.P99), ratio(lv.P99, lh.P99),
					lv.Received, lv.Sent, lh.Received, lh.Sent)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "RTT: VPP pings from the source's side to the sink's across the vWire and back, while the packet generator loads it at that share of its own NDR.")
	return err
}

type figureKind int

func (k figureKind) String() string { return [...]string{"MRR", "NDR", "PDR"}[k] }

const (
	figMRR figureKind = iota
	figNDR
	figPDR
)

// WriteTable writes one line per topology and frame size, vwire next to
// the hand-made baseline and the ratio for NDR and PDR, then the source's
// unthrottled rate and where it ran.
func (r *DataplaneReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| topology\t| frame\t| MRR vwire\t| MRR hand\t| ratio\t| NDR vwire\t| NDR hand\t| ratio\t| PDR vwire\t| PDR hand\t| ratio\t| source max\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	topos, sizes := r.cells()
	for _, t := range topos {
		for _, f := range sizes {
			v, h := r.find(t, f, BuiltByVwire), r.find(t, f, BuiltByHand)
			if v == nil && h == nil {
				continue
			}
			figure := func(x *DataplaneResult, k figureKind) float64 { return x.figures().of(k) }
			cell := func(x *DataplaneResult, k figureKind) string {
				switch {
				case x == nil:
					return "-"
				case x.Error != "" && x.NDR == 0 && x.PDR == 0 && x.MRR == 0:
					return "failed"
				}
				pps := figure(x, k)
				s := fmt.Sprintf("%.3f Mpps %.2f Gb/s", Mpps(pps), Gbps(pps, f))
				if k != figMRR && x.AtSource(k == figPDR) {
					s += " (source)"
				}
				return s
			}
			ratio := func(k figureKind) string {
				if v == nil || h == nil {
					return "-"
				}
				q, ok := ratio(v, h, k)
				if !ok {
					return "-"
				}
				return fmt.Sprintf("%.2f", q)
			}
			var srcMax []string
			for _, x := range []*DataplaneResult{v, h} {
				if x != nil && x.SourceMax > 0 {
					srcMax = append(srcMax, fmt.Sprintf("%.3f", Mpps(x.SourceMax)))
				}
			}
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s Mpps\t|\n", t, f,
				cell(v, figMRR), cell(h, figMRR), ratio(figMRR), cell(v, figNDR), cell(h, figNDR), ratio(figNDR),
				cell(v, figPDR), cell(h, figPDR), ratio(figPDR), strings.Join(srcMax, " / "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	load := ""
	if r.LoadAvg != "" {
		load = ", load average " + r.LoadAvg
	}
	reps := "vwire's and the hand-made path's trials in turns"
	if r.Repetitions > 1 {
		reps = fmt.Sprintf("medians of %d repetitions, vwire's and the hand-made path's trials in turns, each ratio the median of the repetitions' ratios", r.Repetitions)
	}
	_, err := fmt.Fprintf(w, "\nMRR: median rate received with the source unthrottled (%d trials); NDR: no loss; PDR: at most %.1f %% loss; trials of %v, resolution %.0f %% of the rate; %s.\n"+
		"source max: the packet generator unthrottled (vwire / hand); (source): the path passed at that rate.\n"+
		"vwire %s, %s, on %d × %s, Linux %s%s; %s; %s, took %s\n",
		r.MRRTrials, PDRLoss*100, r.Trial, r.Precision*100, reps, r.Version, r.VPPVersion, r.Machine.CPUs, r.Machine.CPUModel,
		r.Machine.Kernel, load, r.Placement, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration.Round(time.Second))
	if err == nil && r.KernelSide != "" {
		_, err = fmt.Fprintf(w, "KERNEL side of the kernel topology, both builders: %s\n", r.KernelSide)
	}
	if err == nil && slices.ContainsFunc(r.Results, func(x DataplaneResult) bool { return x.Topology == TopoTrunkCost }) {
		_, err = fmt.Fprintf(w, "%s: trunk design cost, not vwire's overhead: vwire's kernel topology (a VLAN of the af_packet trunk) against a plain af_packet veth by hand; not held to the %.2f goal\n", TopoTrunkCost, Goal)
	}
	if err == nil {
		err = r.writeLatency(w)
	}
	for _, o := range r.Objects {
		same := "the same by hand"
		if !o.Same {
			same = "by hand: " + o.Hand
		}
		if err == nil {
			_, err = fmt.Fprintf(w, "objects, %s: %s; %s\n", o.Topology, o.Vwire, same)
		}
	}
	for _, n := range r.Notes {
		if err == nil {
			_, err = fmt.Fprintln(w, "note: "+n)
		}
	}
	return err
}

// Chart geometry (SVG user units).
const (
	chartW, chartH              = 720, 420
	chartLeft, chartRight       = 70, 170
	chartTop, chartBottom       = 40, 50
	chartTicks                  = 5
	chartDash                   = "6,4"
	chartStroke                 = 2
	chartFont                   = "font-family=\"sans-serif\" font-size=\"12\""
	chartTitle                  = "NDR throughput, vwire (solid) and hand-made VPP (dashed)"
	chartLegendGap, chartSwatch = 18, 24
)

// chartColors are one per topology, in order.
var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#7f7f7f", "#9467bd", "#ff7f0e", "#8c564b"}

// WriteSVG draws NDR (Mpps) against frame size: one colour per topology,
// vwire solid, hand-made dashed; frame sizes evenly spaced in the order
// measured.
func (r *DataplaneReport) WriteSVG(w io.Writer) error {
	topos, sizes := r.cells()
	var top float64
	for _, x := range r.Results {
		top = max(top, Mpps(x.NDR))
	}
	top = niceCeil(top)
	plotW := float64(chartW - chartLeft - chartRight)
	plotH := float64(chartH - chartTop - chartBottom)
	xOf := func(i int) float64 {
		if len(sizes) == 1 {
			return chartLeft + plotW/2
		}
		return chartLeft + plotW*float64(i)/float64(len(sizes)-1)
	}
	yOf := func(mpps float64) float64 { return chartTop + plotH*(1-mpps/top) }

	var b strings.Builder
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", chartW, chartH)
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" %s font-weight=\"bold\">%s</text>\n", chartLeft, chartTop-18, chartFont, html.EscapeString(chartTitle))
	// Axes, grid and ticks.
	for i := 0; i <= chartTicks; i++ {
		v := top * float64(i) / chartTicks
		y := yOf(v)
		fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", chartLeft, y, chartLeft+plotW, y)
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%.1f\" %s text-anchor=\"end\">%s</text>\n", chartLeft-6, y+4, chartFont, trimFloat(v))
	}
	fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>\n", chartLeft, chartTop, chartLeft, chartTop+plotH)
	fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", chartLeft, chartTop+plotH, chartLeft+plotW, chartTop+plotH)
	for i, f := range sizes {
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%.1f\" %s text-anchor=\"middle\">%s</text>\n", xOf(i), chartTop+plotH+18, chartFont, f)
	}
	fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" %s text-anchor=\"middle\">frame size (bytes)</text>\n", chartLeft+plotW/2, chartH-10, chartFont)
	fmt.Fprintf(&b, "<text x=\"16\" y=\"%.1f\" %s text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">NDR (Mpps)</text>\n", chartTop+plotH/2, chartFont, chartTop+plotH/2)
	// One line per topology and builder.
	legendY := chartTop + 10
	for ti, t := range topos {
		color := chartColors[ti%len(chartColors)]
		for _, by := range []string{BuiltByVwire, BuiltByHand} {
			var pts []string
			for i, f := range sizes {
				if x := r.find(t, f, by); x != nil && x.Error == "" {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(i), yOf(Mpps(x.NDR))))
				}
			}
			if len(pts) == 0 {
				continue
			}
			dash := ""
			if by == BuiltByHand {
				dash = fmt.Sprintf(" stroke-dasharray=\"%s\"", chartDash)
			}
			fmt.Fprintf(&b, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%d\"%s/>\n", strings.Join(pts, " "), color, chartStroke, dash)
			for _, p := range pts {
				x, y, _ := strings.Cut(p, ",")
				fmt.Fprintf(&b, "<circle cx=\"%s\" cy=\"%s\" r=\"3\" fill=\"%s\"/>\n", x, y, color)
			}
			lx := float64(chartW - chartRight + 15)
			fmt.Fprintf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"%d\"%s/>\n", lx, legendY, lx+chartSwatch, legendY, color, chartStroke, dash)
			fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" %s>%s</text>\n", lx+chartSwatch+6, legendY+4, chartFont, html.EscapeString(t+" "+by))
			legendY += chartLegendGap
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
