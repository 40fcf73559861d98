package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

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
              --parallel at once (--rounds times), local and remote (p50,
              p90, p99), next to a plain veth pair made by hand
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

It builds its own world (network namespaces vw-<pid>-b-*, two 'vwire node's
on the kernel dataplane, endpoints, VPPs) and removes it at the end or on
Ctrl-C. A table goes to stdout, progress to stderr.`,
		Example: `  sudo vwire bench
  sudo vwire bench --only latency,find --sequential 20 --json bench.json`,
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
	fl.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "Requests at once (latency)")
	fl.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "how many times the parallel Requests are made")
	fl.IntVar(&cfg.Heals, "heals", cfg.Heals, "endpoint kills (heal)")
	defSizes := make([]string, len(cfg.FindSizes))
	for i, n := range cfg.FindSizes {
		defSizes[i] = strconv.Itoa(n)
	}
	fl.StringSliceVar(&findSizes, "find-sizes", defSizes, "registry sizes, in endpoints, to time Find at")
	fl.IntVar(&cfg.FindQueries, "find-queries", cfg.FindQueries, "Finds timed at each size")
	fl.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each iperf3 and packet-generator run")
	fl.StringVar(&jsonFile, "json", "", "also write the report as JSON to FILE")
	return cmd
}
