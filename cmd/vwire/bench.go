package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/internal/bench"
)

func newBenchCmd(_ *globals) *cobra.Command {
	cfg := bench.DefaultConfig()
	var (
		only      []string
		findSizes []string
		jsonFile  string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure vwire on this host next to its baselines (root)",
		Long: `Measure vwire on this host, each figure next to its baseline:

  latency     Request→vWire-up: --sequential Requests one at a time and
              --parallel×--rounds from --parallel clients (vWires up and
              closed per second, counted as vpp-scale does), local and
              remote (p50, p90, p99), next to a plain loop of the kernel
              dataplane's netlink requests for a local vWire (no vwire
              above them), itself next to a plain veth pair made by hand
  heal        an endpoint killed under a live connection → traffic through
              another endpoint (--heals times), next to a fresh Request
  find        registry Find of one service among --find-sizes endpoints,
              next to a registry of 10; on the memory store, and on the
              etcd store too with ETCD_ENDPOINTS (client URLs, comma-
              separated; under a prefix of its own, removed after)
  throughput  iperf3 across a local and a remote kernel vWire, next to a
              plain veth (skipped without iperf3)
  memif       packets/s memif→memif across a VPP vWire, next to VPP's own
              memif l2xc (skipped without VPP_BIN; VPP_PLUGIN_PATH)
  remote      a remote vWire between the same pair of nodes over VXLAN
              (kernel dataplane), WireGuard (the kernel module, when the
              kernel has it; userspace) and, with VPP_BIN, VPP's VXLAN
              and WireGuard: iperf3 across, and --remote-requests
              Request→vWire-up (p50, p99), next to kernel VXLAN
  vpp-scale   VPP vWires through two 'vwire node's on the VPP dataplane
              (skipped without VPP_BIN): --vpp-scale-n local memif vWires
              one at a time (Request→vWire-up p50, p90, p99) and from
              --vpp-scale-parallel clients (vWires up and closed per
              second), and as many remote VXLAN and WireGuard vWires from
              as many clients; each next to the same VPP objects made by a
              plain loop of VPP API calls on the same VPPs, the local ones
              next to the kernel dataplane's local Requests too, with the
              VPP API calls and time per vWire from the nodes' metrics

It builds its own world (network namespaces vw-<pid>-b-*, two 'vwire node's
on the kernel dataplane, endpoints, VPPs) and removes it at the end or on
Ctrl-C. A table goes to stdout, progress to stderr.

'vwire bench dataplane' measures the throughput of VPP vWires CSIT style
(NDR, PDR, MRR per topology and frame size) next to hand-made VPP.`,
		Example: `  sudo vwire bench
  sudo vwire bench --only latency,find --sequential 20 --json bench.json
  sudo VPP_BIN=/usr/bin/vpp vwire bench --only vpp-scale --vpp-scale-n 200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Only = only
			cfg.FindSizes = cfg.FindSizes[:0]
			for _, s := range findSizes {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("--find-sizes %q: %w", s, err)
				}
				cfg.FindSizes = append(cfg.FindSizes, n)
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Bin, cfg.Version = bin, version
			cfg.VPPBin, cfg.VPPPluginPath = os.Getenv("VPP_BIN"), os.Getenv("VPP_PLUGIN_PATH")
			if e := os.Getenv("ETCD_ENDPOINTS"); e != "" {
				cfg.FindEtcd = strings.Split(e, ",")
			}
			cfg.Progress = bench.NewProgress(os.Stderr)
			if err := cfg.Validate(); err != nil {
				return err
			}
			rep, runErr := bench.Run(cmd.Context(), cfg)
			if rep == nil {
				return runErr
			}
			if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
				return err
			}
			if jsonFile != "" {
				f, err := os.Create(jsonFile)
				if err != nil {
					return err
				}
				if err := rep.WriteJSON(f); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			return runErr
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&only, "only", nil, "measure only these: "+strings.Join(bench.AllGroups, ","))
	fl.IntVar(&cfg.Sequential, "sequential", cfg.Sequential, "Requests one after the other (latency)")
	fl.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "clients requesting at once (latency)")
	fl.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "the parallel run makes --parallel×--rounds Requests (latency)")
	fl.IntVar(&cfg.Heals, "heals", cfg.Heals, "endpoint kills (heal)")
	defSizes := make([]string, len(cfg.FindSizes))
	for i, n := range cfg.FindSizes {
		defSizes[i] = strconv.Itoa(n)
	}
	fl.StringSliceVar(&findSizes, "find-sizes", defSizes, "registry sizes, in endpoints, to time Find at")
	fl.IntVar(&cfg.FindQueries, "find-queries", cfg.FindQueries, "Finds timed at each size")
	fl.IntVar(&cfg.RemoteRequests, "remote-requests", cfg.RemoteRequests, "Requests timed per kind of remote vWire (remote)")
	fl.IntVar(&cfg.VPPScaleN, "vpp-scale-n", cfg.VPPScaleN, "vWires built in each run of vpp-scale (at most 1000)")
	fl.IntVar(&cfg.VPPScaleParallel, "vpp-scale-parallel", cfg.VPPScaleParallel, "clients requesting at once in vpp-scale's parallel runs")
	fl.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each iperf3 and packet-generator run")
	fl.StringVar(&jsonFile, "json", "", "also write the report as JSON to FILE")
	cmd.AddCommand(newBenchDataplaneCmd())
	return cmd
}

func newBenchDataplaneCmd() *cobra.Command {
	cfg := bench.DefaultDataplaneConfig()
	var (
		quick               bool
		frameSizes          []string
		jsonFile, chartFile string
	)
	cmd := &cobra.Command{
		Use:   "dataplane",
		Short: "Throughput of vWires on VPP next to the same VPP objects made by hand (root, VPP_BIN)",
		Long: `Measure the throughput of vWires on the VPP dataplane, CSIT style, each
next to the same VPP objects made by plain API calls:

  memif      memif→memif on one VPP (l2xc)
  chain      memif→CNF→CNF→CNF→memif on one VPP: four memif→memif vWires
             (l2xc), one per Request of the composition; the CNFs are L2
             memif peers (l2xc) in a VPP of their own
  kernel     KERNEL→memif on one VPP (l2xc): a tap where /dev/vhost-net
             exists, else a veth joined by tc programs to a VLAN of one
             af_packet trunk, a dot1q sub-interface in VPP (--kernel); the
             traffic VPP sends into the workload end with af_packet
  trunk-cost the trunk design's cost, not vwire's: vwire's kernel topology
             against a plain af_packet veth made by hand (af_packet only)
  vxlan      memif→VXLAN→memif between two VPPs (l2xc)
  wireguard  memif→WireGuard→memif between two VPPs (IP payload, l3xc)
  ipsec      memif→IPsec→memif between two VPPs (ESP in UDP, l3xc)

For each topology and frame size it measures MRR (CSIT's maximum receive
rate: the median rate received over --mrr-trials unthrottled trials), and finds NDR (no loss) and PDR (at most
0.5 % loss) by binary search (RFC 2544): the first trial runs the source
unthrottled (shown as "source max"), the next ones halve the interval until
it is narrower than --precision of its upper end. A load whose trial lost
frames is tried once more and fails only if that one loses too (a VPP
descheduled on a shared host loses frames; nothing makes a lossy path look
lossless). The vwire-built and the
hand-built path take turns trial by trial, so that load on a shared host hits
both alike; --repetitions repeats that and takes medians. Source and sink are a traffic
VPP of their own (packet generator out of one memif, counted on the other);
the two VPPs under test are joined by a veth (af_packet, MTU 9000).

Needs root and VPP_BIN (VPP_PLUGIN_PATH for its plugins). It builds its own
namespaces vw-<pid>-b-dp-* and removes them at the end or on Ctrl-C. The
table goes to stdout with the CPU model, the VPP version and the placement;
progress to stderr.`,
		Example: `  sudo VPP_BIN=/usr/bin/vpp vwire bench dataplane --quick --json dp.json --chart dp.svg
  sudo vwire bench dataplane --topologies memif,vxlan --frame-sizes 64,imix --main-core 1 --corelist-workers 2-3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if quick {
				q := cfg
				q.Quick()
				if !fl.Changed("frame-sizes") {
					cfg.FrameSizes = q.FrameSizes
				}
				if !fl.Changed("trial-duration") {
					cfg.TrialDuration = q.TrialDuration
				}
				if !fl.Changed("precision") {
					cfg.Precision = q.Precision
				}
				if !fl.Changed("latency-pings") {
					cfg.LatencyPings = q.LatencyPings
				}
				if !fl.Changed("mrr-trials") {
					cfg.MRRTrials = q.MRRTrials
				}
				if !fl.Changed("poll-sleep-usec") {
					cfg.PollSleepUsec = q.PollSleepUsec
				}
			}
			if fl.Changed("frame-sizes") {
				fs, err := bench.ParseFrameSizes(frameSizes)
				if err != nil {
					return fmt.Errorf("--frame-sizes: %w", err)
				}
				cfg.FrameSizes = fs
			}
			cfg.VPPBin, cfg.VPPPluginPath = os.Getenv("VPP_BIN"), os.Getenv("VPP_PLUGIN_PATH")
			if err := cfg.Validate(); err != nil {
				return err
			}
			// govpp's health check is process-wide: set before the first
			// connection.
			if err := vpp.SetupGovpp(bench.DataplaneHealthCheck, nil, nil); err != nil {
				return err
			}
			cfg.Progress = bench.NewProgress(os.Stderr)
			rep, runErr := bench.RunDataplane(cmd.Context(), cfg, version)
			if rep == nil {
				return runErr
			}
			if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
				return err
			}
			for _, out := range []struct {
				file  string
				write func(io.Writer) error
			}{{jsonFile, rep.WriteJSON}, {chartFile, rep.WriteSVG}} {
				if out.file == "" {
					continue
				}
				if err := writeFile(out.file, out.write); err != nil {
					return err
				}
			}
			return runErr
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&quick, "quick", false, "short run for a shared host: 64 and 1518 bytes, 1s trials, 10% resolution, 3 MRR trials, 100 pings per latency load, every VPP with poll-sleep-usec 100 (flags given win)")
	defSizes := make([]string, len(cfg.FrameSizes))
	for i, f := range cfg.FrameSizes {
		defSizes[i] = f.String()
	}
	fl.StringSliceVar(&frameSizes, "frame-sizes", defSizes, "frame sizes in bytes with FCS (64 to 8900), or imix (7×64, 4×570, 1×1518)")
	fl.StringSliceVar(&cfg.Topologies, "topologies", cfg.Topologies, "topologies to measure: "+strings.Join(bench.AllTopologies, ","))
	fl.DurationVar(&cfg.TrialDuration, "trial-duration", cfg.TrialDuration, "length of each trial of the search")
	fl.Float64Var(&cfg.Precision, "precision", cfg.Precision, "search resolution: it stops when the pass/fail interval is narrower than this fraction of its upper end")
	fl.IntVar(&cfg.MRRTrials, "mrr-trials", cfg.MRRTrials, "unthrottled trials (taken in turns, vwire and hand) whose median received rate is MRR")
	fl.IntVar(&cfg.Repetitions, "repetitions", cfg.Repetitions, "times each frame size's paired measurement runs (vwire's and the hand-made path's trials in turns, who goes first alternating); figures are medians, ratios the median of the repetitions' ratios: more than 1 on a shared host")
	fl.StringVar(&cfg.Kernel, "kernel", cfg.Kernel, "KERNEL side of the kernel topology, both builders: auto (tap where /dev/vhost-net exists, else a veth on a VLAN of an af_packet trunk, as vwire makes them), tap (fails without /dev/vhost-net) or af_packet")
	fl.IntVar(&cfg.LatencyPings, "latency-pings", cfg.LatencyPings, "pings (10 ms apart) across each path at 10, 50 and 90 % of its NDR for latency p50/p99 (0: no latency)")
	fl.IntVar(&cfg.MainCore, "main-core", cfg.MainCore, "core of each tested VPP's main thread (-1: unpinned)")
	fl.IntVar(&cfg.Workers, "workers", cfg.Workers, "worker threads per tested VPP (0: main thread only)")
	fl.StringVar(&cfg.CorelistWorkers, "corelist-workers", cfg.CorelistWorkers, "cores of each tested VPP's workers, e.g. 2-3 (instead of --workers)")
	fl.StringVar(&cfg.RxMode, "rx-mode", cfg.RxMode, "rx mode of the tested VPPs' memif and af_packet queues: polling or interrupt")
	fl.IntVar(&cfg.PollSleepUsec, "poll-sleep-usec", cfg.PollSleepUsec, "VPP's unix poll-sleep-usec for every VPP: sleep between polls on a shared host (0: busy poll)")
	fl.StringVar(&jsonFile, "json", "", "also write the report as JSON to FILE")
	fl.StringVar(&chartFile, "chart", "", "also draw NDR against frame size as SVG to FILE")
	return cmd
}

// writeFile creates file and fills it with write.
func writeFile(file string, write func(io.Writer) error) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", file, err)
	}
	return f.Close()
}
