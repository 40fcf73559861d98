// Package bench measures a running vwire against its baselines: the
// latency of Request→vWire-up (sequential and parallel, next to a plain
// veth made by hand), the time to heal after an endpoint is killed (next to
// a fresh Request), registry Find at many endpoints (next to a registry of
// a few), and throughput across vWires (iperf3 on kernel vWires next to a
// plain veth; packets per second on memif next to VPP's own memif
// cross-connect when VPP is there), and remote vWires over VXLAN and
// WireGuard (kernel module, userspace, VPP) on the same pair of nodes:
// iperf3 and Request→vWire-up; and VPP vWires at scale (local memif and
// remote VXLAN and WireGuard, one at a time and many at once) next to the
// kernel dataplane and a plain loop of the same VPP API calls. It builds its own world (network
// namespaces, `vwire node` and endpoint processes, VPPs) and removes all of
// it when done or when ctx ends. It needs root for everything but Find.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Groups of measurements, as --only names them.
const (
	GroupLatency    = "latency"
	GroupHeal       = "heal"
	GroupFind       = "find"
	GroupThroughput = "throughput"
	GroupMemif      = "memif"
	GroupRemote     = "remote"
	GroupVPPScale   = "vpp-scale"
)

// AllGroups lists every group in the order a run makes them.
var AllGroups = []string{GroupFind, GroupLatency, GroupHeal, GroupThroughput, GroupMemif, GroupRemote, GroupVPPScale}

// Config says what to measure and how much.
type Config struct {
	// Bin is the vwire binary the world runs (`vwire node`, `vwire nse`).
	Bin     string
	Version string
	// Only lists the groups to run (every group when empty).
	Only []string
	// Sequential Requests one after the other; Parallel at once, Rounds
	// times.
	Sequential, Parallel, Rounds int
	// Heals is how many times an endpoint is killed.
	Heals int
	// FindSizes are the registry sizes (endpoints) Find is timed at;
	// FindQueries Finds at each.
	FindSizes   []int
	FindQueries int
	// FindEtcd, when set, are the client URLs of an etcd cluster to time
	// Find on the etcd store too (under a prefix of its own, removed
	// after).
	FindEtcd []string
	// RemoteRequests is how many Requests the remote group times per
	// kind of remote vWire.
	RemoteRequests int
	// VPPScaleN is how many vWires the vpp-scale group builds in each of
	// its runs; VPPScaleParallel how many clients request at once in its
	// parallel runs.
	VPPScaleN, VPPScaleParallel int
	// Duration of each iperf3 run and each memif packet-generator run.
	Duration time.Duration
	// VPPBin and VPPPluginPath start the VPPs of the memif measurement
	// and the remote group's VPP nodes; without VPPBin those are skipped.
	VPPBin, VPPPluginPath string
	// Progress shows how far the run is (nothing when nil).
	Progress *Progress
}

// DefaultConfig is what `vwire bench` and `make bench` run.
func DefaultConfig() Config {
	return Config{
		Sequential: 50, Parallel: 10, Rounds: 3, Heals: 3,
		FindSizes: []int{10_000, 100_000}, FindQueries: 200,
		Duration: 5 * time.Second, RemoteRequests: 10,
		VPPScaleN: 200, VPPScaleParallel: 20,
	}
}

// Validate checks the counts and the groups.
func (c Config) Validate() error {
	for _, g := range c.Only {
		if !slices.Contains(AllGroups, g) {
			return fmt.Errorf("bench: unknown measurement %q (want some of %v)", g, AllGroups)
		}
	}
	if c.Sequential < 1 || c.Parallel < 1 || c.Rounds < 1 || c.Heals < 1 || c.FindQueries < 1 || c.RemoteRequests < 1 ||
		c.VPPScaleN < 1 || c.VPPScaleParallel < 1 {
		return errors.New("bench: counts must be at least 1")
	}
	for _, n := range c.FindSizes {
		if n < findMatches {
			return fmt.Errorf("bench: find size %d: want at least %d", n, findMatches)
		}
	}
	if c.VPPScaleN > maxVPPScaleN {
		return fmt.Errorf("bench: vpp-scale n %d: at most %d", c.VPPScaleN, maxVPPScaleN)
	}
	if c.Duration < time.Second {
		return errors.New("bench: duration must be at least 1s")
	}
	return nil
}

func (c Config) wants(group string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, group) }

// Run makes every measurement cfg asks for and returns the report. A
// measurement that fails becomes a row saying so, the others still run,
// and the error says which failed. When ctx ends, Run removes what it made
// and returns ctx's error with what it has.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Version: cfg.Version, Machine: ThisMachine(), Started: time.Now()}
	defer func() { rep.Duration, rep.LoadAvg = time.Since(rep.Started), loadAverage() }()
	p := cfg.Progress
	var errs []error
	add := func(group string, rows []Row, err error) {
		if err != nil {
			p.Done()
			p.Logf("%s failed: %v", group, err)
			rows = append(rows, Skip(group, "(measurement)", "failed: "+err.Error()))
			errs = append(errs, fmt.Errorf("%s: %w", group, err))
		}
		rep.Rows = append(rep.Rows, rows...)
	}

	if cfg.wants(GroupFind) {
		rows, err := measureFind(ctx, cfg, p)
		add(GroupFind, rows, err)
	}
	needWorld := cfg.wants(GroupLatency) || cfg.wants(GroupHeal) || cfg.wants(GroupThroughput)
	if needWorld && ctx.Err() == nil {
		if os.Geteuid() != 0 {
			for _, g := range []string{GroupLatency, GroupHeal, GroupThroughput} {
				if cfg.wants(g) {
					rep.Rows = append(rep.Rows, Skip(g, "(measurement)", "needs root: it makes network namespaces"))
				}
			}
		} else {
			errs = append(errs, runMesh(ctx, cfg, add))
		}
	}
	if cfg.wants(GroupMemif) && ctx.Err() == nil {
		rows, err := measureMemif(ctx, cfg, p)
		add(GroupMemif, rows, err)
	}
	if cfg.wants(GroupRemote) && ctx.Err() == nil {
		if os.Geteuid() != 0 {
			rep.Rows = append(rep.Rows, Skip(GroupRemote, "(measurement)", "needs root: it makes network namespaces"))
		} else {
			rows, err := measureRemote(ctx, cfg, p)
			add(GroupRemote, rows, err)
		}
	}
	if cfg.wants(GroupVPPScale) && ctx.Err() == nil {
		rows, err := measureVPPScale(ctx, cfg, p)
		add(GroupVPPScale, rows, err)
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return rep, errors.Join(errs...)
}

// runMesh builds the two-node world and makes the measurements that need
// it; the world is removed before it returns.
func runMesh(ctx context.Context, cfg Config, add func(string, []Row, error)) (err error) {
	p := cfg.Progress
	w, err := NewWorld(cfg.Bin)
	if err != nil {
		return err
	}
	defer func() {
		p.Stage("removing the bench's namespaces and processes", 0)
		if cerr := w.Close(); cerr != nil && err == nil {
			err = cerr
		}
		p.Done()
	}()
	p.Stage("starting two `vwire node`s in network namespaces", 0)
	m, err := newMesh(ctx, w, 2)
	if err != nil {
		return fmt.Errorf("start the mesh: %w", err)
	}
	defer m.close()
	p.Done()
	for _, g := range []struct {
		name    string
		measure func(context.Context, *mesh, Config, *Progress) ([]Row, error)
	}{
		{GroupLatency, measureLatency},
		{GroupHeal, measureHeal},
		{GroupThroughput, measureThroughput},
	} {
		if cfg.wants(g.name) && ctx.Err() == nil {
			rows, err := g.measure(ctx, m, cfg, p)
			add(g.name, rows, err)
		}
	}
	return nil
}
