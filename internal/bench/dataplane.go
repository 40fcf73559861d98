package bench

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// `vwire bench dataplane`: CSIT-style throughput of vWires on the VPP
// dataplane, each next to the same VPP objects made by hand. For every
// topology and frame size it finds NDR (no loss) and PDR (at most 0.5 %
// loss) by binary search (RFC 2544, 26.1), with a traffic VPP (packet
// generator out of one memif, counting on another) as source and sink;
// it also measures MRR and the latency of pings under load.
// This file holds the configuration; dataplane_search.go the search,
// dataplane_report.go the table, JSON and chart, dataplane_vpp.go the VPPs
// and the run, dataplane_build.go the topologies, dataplane_traffic.go the
// trials and latency.

// Topologies, as --topologies names them.
const (
	TopoMemif     = "memif"      // memif→memif on one VPP (l2xc)
	TopoChain     = "chain"      // memif→CNF→CNF→CNF→memif on one VPP: four vWires (l2xc), the CNFs memif peers
	TopoKernel    = "kernel"     // KERNEL (tap, or a veth on a VLAN of the af_packet trunk)→memif on one VPP (l2xc)
	TopoTrunkCost = "trunk-cost" // not vwire's overhead but the trunk's: vwire's kernel topology against a plain af_packet veth by hand
	TopoVXLAN     = "vxlan"      // memif→VXLAN→memif between two VPPs (l2xc)
	TopoWireGuard = "wireguard"  // memif→WireGuard→memif between two VPPs (l3xc)
	TopoIPsec     = "ipsec"      // memif→IPsec (ESP in UDP over IP-in-IP)→memif between two VPPs (l3xc)
)

// AllTopologies lists every topology in the order a run measures them.
var AllTopologies = []string{TopoMemif, TopoChain, TopoKernel, TopoTrunkCost, TopoVXLAN, TopoWireGuard, TopoIPsec}

// local says whether topology t runs on one VPP.
func local(t string) bool { return t == TopoMemif || t == TopoChain || kernelTopo(t) }

// kernelTopo says whether topology t starts at a KERNEL side.
func kernelTopo(t string) bool { return t == TopoKernel || t == TopoTrunkCost }

// ChainCNFs is how many CNFs the chain topology passes through.
const ChainCNFs = 3

// Rx modes of the interfaces of the VPPs under test.
const (
	RxPolling   = "polling"
	RxInterrupt = "interrupt"
)

// KERNEL sides, as --kernel names them: a tap (VPP's tapv2, which needs
// /dev/vhost-net), or a veth that VPP takes with af_packet; auto picks a
// tap where /dev/vhost-net exists, as vwire's own dataplane does.
const (
	KernelAuto     = "auto"
	KernelTap      = "tap"
	KernelAfPacket = "af_packet"
)

// vhostNet is the device VPP's taps need.
const vhostNet = "/dev/vhost-net"

// KernelSide resolves kind (KernelAuto, KernelTap or KernelAfPacket) on
// this host and says why, for the report: auto is a tap when hasVhost.
// (A tap without /dev/vhost-net is refused by RunDataplane.)
func KernelSide(kind string, hasVhost bool) (string, string) {
	switch {
	case kind == KernelTap:
		return KernelTap, "tap (--kernel tap)"
	case kind == KernelAfPacket:
		return KernelAfPacket, "a veth on a VLAN of an af_packet trunk (--kernel af_packet)"
	case hasVhost:
		return KernelTap, "tap (" + vhostNet + " present)"
	}
	return KernelAfPacket, "a veth on a VLAN of an af_packet trunk (no " + vhostNet + ", so no tap)"
}

// PDRLoss is the loss ratio PDR allows: 0.5 %, as CSIT.
const PDRLoss = 0.005

// FrameSize is one frame size of the run: Bytes on the wire including the
// 4-byte FCS (so 64 sends 60-byte packets, as CSIT counts), or IMIX.
type FrameSize struct {
	Bytes int
	IMIX  bool
}

func (f FrameSize) String() string {
	if f.IMIX {
		return "imix"
	}
	return strconv.Itoa(f.Bytes)
}

// MarshalText makes FrameSize a JSON string ("64", "imix").
func (f FrameSize) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// IMIXPart is one frame size of an IMIX mix and its weight.
type IMIXPart struct {
	Bytes, Weight int
}

// IMIX is the simple IMIX: 7 × 64, 4 × 570, 1 × 1518 bytes.
var IMIX = []IMIXPart{{64, 7}, {570, 4}, {1518, 1}}

// Parts is the mix a frame size sends: IMIX's, or one part.
func (f FrameSize) Parts() []IMIXPart {
	if f.IMIX {
		return IMIX
	}
	return []IMIXPart{{f.Bytes, 1}}
}

// MeanBytes is the mean frame size, FCS included.
func (f FrameSize) MeanBytes() float64 {
	var n, w int
	for _, p := range f.Parts() {
		n += p.Bytes * p.Weight
		w += p.Weight
	}
	return float64(n) / float64(w)
}

// Streams are the packet generator's streams for f at pps (0: unthrottled):
// one stream per unit of weight (IMIX: 7 of 64 bytes, 4 of 570, 1 of
// 1518), all at the same rate, pps over their number. VPP's packet
// generator gives every enabled stream the same share of each dispatch,
// so equal streams keep the mix's weights even unthrottled, where streams
// of unequal rates could not (each would send as fast as it can).
func Streams(f FrameSize, pps float64) []StreamSpec {
	var out []StreamSpec
	for _, p := range f.Parts() {
		for range p.Weight {
			out = append(out, StreamSpec{Bytes: p.Bytes})
		}
	}
	for i := range out {
		out[i].Rate = pps / float64(len(out))
	}
	return out
}

// StreamSpec is one packet-generator stream: frames of Bytes (FCS
// included) at Rate frames/s (0: unthrottled).
type StreamSpec struct {
	Bytes int
	Rate  float64
}

// Frame size limits: Ethernet's minimum, and what a 9000-byte uplink
// carries after the largest tunnel overhead.
const (
	minFrame = 64
	maxFrame = 8900
)

// ParseFrameSizes parses "64,128,imix".
func ParseFrameSizes(specs []string) ([]FrameSize, error) {
	var out []FrameSize
	for _, s := range specs {
		s = strings.TrimSpace(strings.ToLower(s))
		var f FrameSize
		if s == "imix" {
			f.IMIX = true
		} else {
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("frame size %q: want a number of bytes or imix", s)
			}
			if n < minFrame || n > maxFrame {
				return nil, fmt.Errorf("frame size %d: want %d to %d bytes", n, minFrame, maxFrame)
			}
			f.Bytes = n
		}
		if slices.Contains(out, f) {
			return nil, fmt.Errorf("frame size %s given twice", f)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("no frame sizes")
	}
	return out, nil
}

// DataplaneConfig says what `vwire bench dataplane` measures and how.
type DataplaneConfig struct {
	// VPPBin and VPPPluginPath start the VPPs.
	VPPBin, VPPPluginPath string
	// Topologies and FrameSizes to measure.
	Topologies []string
	FrameSizes []FrameSize
	// TrialDuration is the length of each trial of the search.
	TrialDuration time.Duration
	// Precision is the search's resolution, as a fraction of the rate:
	// it stops when the pass/fail interval is narrower than Precision ×
	// its upper end.
	Precision float64
	// LatencyPings is how many pings (10 ms apart) measure latency at
	// each load of LatencyLoads; 0 measures none.
	LatencyPings int
	// MRRTrials is how many unthrottled trials MRR is the median of.
	MRRTrials int
	// Repetitions is how many times each frame size's paired measurement
	// (MRR trials and both searches, vwire's and the hand-made path's
	// trials taking turns) runs, the builder that goes first alternating;
	// the figures are the medians, each ratio the median of the
	// repetitions' ratios. More than one for a shared host.
	Repetitions int
	// MainCore (-1: VPP's choice), Workers (0: none) or CorelistWorkers
	// ("2-3") place the threads of each VPP under test; RxMode is
	// RxPolling or RxInterrupt for their interfaces.
	MainCore        int
	Workers         int
	CorelistWorkers string
	RxMode          string
	// Kernel is how the kernel topology's KERNEL side is made, by both
	// builders: KernelAuto, KernelTap or KernelAfPacket.
	Kernel string
	// PollSleepUsec is every VPP's unix poll-sleep-usec: it sleeps
	// between polls (0 on a host of its own; shared hosts need it).
	PollSleepUsec int
	// Progress shows how far the run is (nothing when nil).
	Progress *Progress
}

// DefaultDataplaneConfig is the full run, for a host of its own.
func DefaultDataplaneConfig() DataplaneConfig {
	fs, _ := ParseFrameSizes([]string{"64", "128", "512", "1518", "imix"})
	return DataplaneConfig{
		Topologies: slices.Clone(AllTopologies), FrameSizes: fs,
		TrialDuration: 10 * time.Second, Precision: 0.02, MRRTrials: 5, Repetitions: 1, LatencyPings: 1000,
		MainCore: -1, RxMode: RxPolling, Kernel: KernelAuto,
	}
}

// Quick changes c to the short run: 64 and 1518 bytes, 1 s trials, 10 %
// resolution, VPPs sleeping between polls.
func (c *DataplaneConfig) Quick() {
	c.FrameSizes = []FrameSize{{Bytes: 64}, {Bytes: 1518}}
	c.TrialDuration, c.Precision, c.PollSleepUsec, c.MRRTrials, c.LatencyPings = time.Second, 0.1, 100, 3, 100
}

var corelist = regexp.MustCompile(`^\d+(-\d+)?(,\d+(-\d+)?)*$`)

// Validate checks c before anything starts.
func (c DataplaneConfig) Validate() error {
	if len(c.Topologies) == 0 {
		return errors.New("bench dataplane: no topologies")
	}
	for i, t := range c.Topologies {
		if !slices.Contains(AllTopologies, t) {
			return fmt.Errorf("bench dataplane: unknown topology %q (want some of %s)", t, strings.Join(AllTopologies, ","))
		}
		if slices.Contains(c.Topologies[:i], t) {
			return fmt.Errorf("bench dataplane: topology %q given twice", t)
		}
	}
	if len(c.FrameSizes) == 0 {
		return errors.New("bench dataplane: no frame sizes")
	}
	if c.TrialDuration < 100*time.Millisecond || c.TrialDuration > 10*time.Minute {
		return fmt.Errorf("bench dataplane: trial duration %v: want 100ms to 10m", c.TrialDuration)
	}
	if c.Precision <= 0 || c.Precision >= 0.5 {
		return fmt.Errorf("bench dataplane: precision %g: want more than 0 and less than 0.5", c.Precision)
	}
	if c.LatencyPings < 0 || c.LatencyPings > 100_000 {
		return fmt.Errorf("bench dataplane: latency pings %d: want 0 to 100000", c.LatencyPings)
	}
	if c.MRRTrials < 1 {
		return fmt.Errorf("bench dataplane: MRR trials %d: want at least 1", c.MRRTrials)
	}
	if c.Repetitions < 1 || c.Repetitions > 100 {
		return fmt.Errorf("bench dataplane: repetitions %d: want 1 to 100", c.Repetitions)
	}
	if c.MainCore < -1 {
		return fmt.Errorf("bench dataplane: main core %d: want 0 or more", c.MainCore)
	}
	if c.Workers < 0 {
		return fmt.Errorf("bench dataplane: workers %d: want 0 or more", c.Workers)
	}
	if c.Workers > 0 && c.CorelistWorkers != "" {
		return errors.New("bench dataplane: give workers or corelist-workers, not both")
	}
	if c.CorelistWorkers != "" && !corelist.MatchString(c.CorelistWorkers) {
		return fmt.Errorf("bench dataplane: corelist-workers %q: want a list like 2-3,5", c.CorelistWorkers)
	}
	if c.RxMode != RxPolling && c.RxMode != RxInterrupt {
		return fmt.Errorf("bench dataplane: rx mode %q: want %s or %s", c.RxMode, RxPolling, RxInterrupt)
	}
	if c.Kernel != KernelAuto && c.Kernel != KernelTap && c.Kernel != KernelAfPacket {
		return fmt.Errorf("bench dataplane: kernel %q: want %s, %s or %s", c.Kernel, KernelAuto, KernelTap, KernelAfPacket)
	}
	if c.PollSleepUsec < 0 {
		return fmt.Errorf("bench dataplane: poll sleep %d: want 0 or more", c.PollSleepUsec)
	}
	return nil
}

// cpuStanza is VPP's cpu {} section for the placement asked, or "".
func (c DataplaneConfig) cpuStanza() string {
	var lines []string
	if c.MainCore >= 0 {
		lines = append(lines, fmt.Sprintf("  main-core %d", c.MainCore))
	}
	if c.Workers > 0 {
		lines = append(lines, fmt.Sprintf("  workers %d", c.Workers))
	}
	if c.CorelistWorkers != "" {
		lines = append(lines, "  corelist-workers "+c.CorelistWorkers)
	}
	if len(lines) == 0 {
		return ""
	}
	return "cpu {\n" + strings.Join(lines, "\n") + "\n}\n"
}

// Placement describes the thread placement and rx mode, for the report.
func (c DataplaneConfig) Placement() string {
	main := "main thread unpinned"
	if c.MainCore >= 0 {
		main = fmt.Sprintf("main thread on core %d", c.MainCore)
	}
	workers := "no workers"
	switch {
	case c.Workers > 0:
		workers = fmt.Sprintf("%d workers", c.Workers)
	case c.CorelistWorkers != "":
		workers = "workers on cores " + c.CorelistWorkers
	}
	sleep := ""
	if c.PollSleepUsec > 0 {
		sleep = fmt.Sprintf(", poll-sleep %d µs", c.PollSleepUsec)
	}
	return fmt.Sprintf("%s, %s, rx %s%s", main, workers, c.RxMode, sleep)
}
