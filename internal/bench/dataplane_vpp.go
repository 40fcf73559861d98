package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/vlib"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/forwarder/vpp/vppstart"
)

// The bench's addresses: the two workloads of every vWire (the traffic
// VPP's source and sink), and the two ends of the uplink between the VPPs
// under test.
var (
	dpClient   = netip.MustParseAddr("172.16.251.1")
	dpEndpoint = netip.MustParseAddr("172.16.251.2")
	dpUplink   = [2]netip.Addr{netip.MustParseAddr("10.251.0.1"), netip.MustParseAddr("10.251.0.2")}
	// dpHandUplink are second addresses on the uplinks for the hand-made
	// tunnels: they live beside vwire's, and VPP allows one IP-in-IP
	// tunnel per pair of ends.
	dpHandUplink = [2]netip.Addr{netip.MustParseAddr("10.251.0.11"), netip.MustParseAddr("10.251.0.12")}
)

const (
	dpUplinkName = "uplink"
	// dpUplinkMTU lets the largest frame through every tunnel unfragmented,
	// as jumbo frames on a real link would.
	dpUplinkMTU = 9000
	// dpMTU is the MTU vwire gives these vWires (the workloads' 1500); the
	// hand-made ones get the same.
	dpMTU = 1500
	// dpSettle is how long in-flight frames get to arrive after a trial.
	dpSettle = 200 * time.Millisecond
	// dpAfPacketTxFrames is the TX ring vwire gives a KERNEL side's
	// af_packet (forwarder/vpp's vethTxFrames).
	dpAfPacketTxFrames = 256
	// dpPingInterval is the time between the pings of a latency
	// measurement.
	dpPingInterval = 10 * time.Millisecond
	// dpPeerBuffers gives the traffic and CNF VPPs, whose memifs are the
	// slaves, more buffers than vppstart's 16384: a zero-copy memif slave
	// keeps up to a ring's worth (1024) in each of its two rings, the CNF
	// VPP has twelve (three CNFs of two for each builder's chain), and a
	// slave out of buffers drops what it receives. (Twice as many: one
	// start on a loaded host outlasted vppstart's wait; fewer buffer
	// pages to fault in make the start shorter.)
	dpPeerBuffers = "buffers {\n  buffers-per-numa 32768\n}\n"
	// dpWarmup bounds the wait for a path to carry its first frames
	// (ARP on the uplink, WireGuard's handshake).
	dpWarmup = 30 * time.Second
)

// DataplaneHealthCheck is govpp's health check for a dataplane run (the
// caller sets it with vpp.SetupGovpp before RunDataplane): the VPPs under
// test are saturated on purpose, and on a shared host starved for seconds
// now and then; the default check would drop their connections mid-run.
// A VPP that really dies still fails the next API call.
var DataplaneHealthCheck = vpp.HealthCheck{Interval: time.Second, Timeout: 5 * time.Second, Threshold: 60}

// RunDataplane measures every topology and frame size cfg asks for, built
// by vwire and by hand, and returns the report (with what it has when a
// measurement fails or ctx ends; the error then says what went wrong).
func RunDataplane(ctx context.Context, cfg DataplaneConfig, version string) (*DataplaneReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case cfg.VPPBin == "":
		return nil, errors.New("bench dataplane: VPP_BIN is not set (a VPP 25.10 binary, and VPP_PLUGIN_PATH for its plugins)")
	case os.Geteuid() != 0:
		return nil, errors.New("bench dataplane: needs root: it makes network namespaces, a veth and VPPs")
	}
	rep := &DataplaneReport{Version: version, Machine: ThisMachine(), Placement: cfg.Placement(),
		Trial: cfg.TrialDuration, Precision: cfg.Precision, MRRTrials: cfg.MRRTrials, Repetitions: cfg.Repetitions, Started: time.Now()}
	defer func() {
		rep.Duration = time.Since(rep.Started)
		rep.LoadAvg = loadAverage()
	}()
	_, vhost := os.Stat(vhostNet)
	kernelSide, why := KernelSide(cfg.Kernel, vhost == nil)
	p := cfg.Progress
	if slices.ContainsFunc(cfg.Topologies, kernelTopo) {
		if kernelSide == KernelTap && vhost != nil {
			return nil, fmt.Errorf("bench dataplane: --kernel tap: %s does not exist on this host, and VPP's tap needs it (use --kernel auto or af_packet)", vhostNet)
		}
		rep.KernelSide = why
		p.Logf("dataplane: KERNEL side: %s", why)
	}
	if kernelSide == KernelTap && slices.Contains(cfg.Topologies, TopoTrunkCost) {
		// With taps vwire makes no trunk: there is no cost to show.
		cfg.Topologies = slices.DeleteFunc(slices.Clone(cfg.Topologies), func(t string) bool { return t == TopoTrunkCost })
		rep.Notes = append(rep.Notes, TopoTrunkCost+": not measured: the KERNEL side is a tap, which needs no trunk")
		if len(cfg.Topologies) == 0 {
			return rep, errors.New("bench dataplane: trunk-cost alone with a tap KERNEL side: nothing to measure")
		}
	}
	w, err := NewWorld("")
	if err != nil {
		return nil, err
	}
	defer w.Close()
	p.Stage("dataplane: starting the VPPs", 0)
	env, err := newDPEnv(ctx, cfg, w, slices.ContainsFunc(cfg.Topologies, func(t string) bool { return !local(t) }), kernelSide)
	if err != nil {
		p.Done()
		return rep, err
	}
	defer env.close()
	p.Done()
	rep.VPPVersion = env.version

	var errs []error
	for _, topo := range cfg.Topologies {
		if ctx.Err() != nil {
			return rep, errors.Join(append(errs, ctx.Err())...)
		}
		if err := env.measure(ctx, topo, rep); err != nil {
			p.Logf("%s: %v", topo, err)
			errs = append(errs, fmt.Errorf("%s: %w", topo, err))
		}
	}
	rep.Notes = append(rep.Notes, belowGoal(rep)...)
	return rep, errors.Join(errs...)
}

// dpEnv is the VPPs of a run: the traffic VPP (source and sink, each a
// memif slave) in a namespace of its own, and one or two VPPs under test,
// each in a node namespace with a vwire dataplane attached; the nodes are
// joined by a veth, the uplink that tunnels take.
type dpEnv struct {
	cfg     DataplaneConfig
	w       *World
	traffic *dpVPP
	// trafficNS is the traffic VPP's namespace, where the memif sockets
	// are.
	trafficNS *Netns
	duts      []*dpDUT
	// kernelSide is KernelTap or KernelAfPacket: what both builders make
	// for the kernel topology's KERNEL side.
	kernelSide string
	// cnf is the VPP the chain's CNFs run in (nil without the chain), in
	// cnfNS, where their memif sockets are.
	cnf     *dpVPP
	cnfNS   *Netns
	version string
	seq     int  // numbers memif sockets, files, tables
	pgReady bool // the traffic VPP has pg0
	stops   []func()
}

// dpVPP is a VPP the bench started and its API connection.
type dpVPP struct {
	label string
	proc  *vppstart.Process
	conn  *core.Connection
}

// dpDUT is a VPP under test: vwire's dataplane and a plain client on it.
type dpDUT struct {
	*dpVPP
	dp     *vpp.Dataplane
	vc     *vpp.Client
	uplink vpp.SwIfIndex
	ns     *Netns
	// hand is the uplink's address for hand-made tunnels.
	hand netip.Addr
	// trunk is the hand-made KERNEL trunk, once made.
	trunk *handTrunk
}

func (e *dpEnv) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
}

func newDPEnv(ctx context.Context, cfg DataplaneConfig, w *World, remote bool, kernelSide string) (_ *dpEnv, err error) {
	e := &dpEnv{cfg: cfg, w: w, kernelSide: kernelSide}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	tns, err := w.Netns("dp-traffic")
	if err != nil {
		return nil, err
	}
	// The traffic VPP is not placed: the placement is for the VPPs under
	// test.
	e.trafficNS = tns
	if e.traffic, err = e.startVPP(ctx, "traffic", tns, dpPeerBuffers); err != nil {
		return nil, err
	}
	if e.version, err = e.traffic.cli(ctx, "show version"); err != nil {
		return nil, err
	}
	e.version = strings.TrimSpace(e.version)
	if slices.Contains(cfg.Topologies, TopoChain) {
		// The chain's CNFs: workloads with memifs of their own, so they
		// run in a VPP of their own, neither the source's nor the one
		// under test, and, like the traffic VPP, unplaced.
		if e.cnfNS, err = w.Netns("dp-cnf"); err != nil {
			return nil, err
		}
		if e.cnf, err = e.startVPP(ctx, "cnf", e.cnfNS, dpPeerBuffers); err != nil {
			return nil, err
		}
	}
	n := 1
	if remote {
		n = 2
	}
	var nss []*Netns
	for i := range n {
		ns, err := w.Netns(fmt.Sprintf("dp-node%d", i+1))
		if err != nil {
			return nil, err
		}
		nss = append(nss, ns)
	}
	if remote {
		peer := fmt.Sprintf("vwbdp%d", os.Getpid())
		for _, args := range [][]string{
			{"link", "add", "name", dpUplinkName, "mtu", strconv.Itoa(dpUplinkMTU), "type", "veth", "peer", "name", peer, "mtu", strconv.Itoa(dpUplinkMTU)},
			{"link", "set", peer, "netns", nss[1].Name},
		} {
			if _, err := nss[0].IP(args...); err != nil {
				return nil, err
			}
		}
		if _, err := nss[1].IP("link", "set", peer, "name", dpUplinkName); err != nil {
			return nil, err
		}
		for i, ns := range nss {
			if _, err := ns.IP("addr", "add", netip.PrefixFrom(dpUplink[i], 24).String(), "dev", dpUplinkName); err != nil {
				return nil, err
			}
			if _, err := ns.IP("link", "set", dpUplinkName, "up"); err != nil {
				return nil, err
			}
		}
	}
	log := slog.New(slog.DiscardHandler)
	for i, ns := range nss {
		v, err := e.startVPP(ctx, fmt.Sprintf("node%d", i+1), ns, cfg.cpuStanza())
		if err != nil {
			return nil, err
		}
		dcfg := vpp.Config{APISocket: v.proc.APISocket, StatsSocket: v.proc.StatsSocket,
			StateDir: filepath.Join(w.Dir, v.label+"-state"), NetNSPath: ns.Path(), Logger: log,
			// Both builders make the KERNEL side chosen for the run.
			Kernel: vpp.KernelVeth}
		if kernelSide == KernelTap {
			dcfg.Kernel = vpp.KernelTap
		}
		if remote {
			dcfg.Uplink = dpUplinkName
		}
		dp, err := vpp.New(ctx, dcfg)
		if err != nil {
			return nil, fmt.Errorf("%s: vwire's dataplane: %w", v.label, err)
		}
		e.stops = append(e.stops, func() { dp.Close() })
		if err := dp.Start(ctx); err != nil {
			return nil, fmt.Errorf("%s: vwire's dataplane: %w", v.label, err)
		}
		d := &dpDUT{dpVPP: v, ns: ns, dp: dp, vc: vpp.NewClient(v.conn, log, nil), uplink: vpp.NoInterface, hand: dpHandUplink[i]}
		if remote {
			ifs, err := d.vc.ListInterfaces(ctx)
			if err != nil {
				return nil, err
			}
			i := slices.IndexFunc(ifs, func(i vpp.Interface) bool { return i.Name == "host-"+dpUplinkName })
			if i < 0 {
				return nil, fmt.Errorf("%s: the dataplane made no uplink", v.label)
			}
			d.uplink = ifs[i].Index
			if err := d.vc.AddInterfaceAddress(ctx, d.uplink, netip.PrefixFrom(d.hand, 24)); err != nil {
				return nil, fmt.Errorf("%s: %w", v.label, err)
			}
		}
		e.duts = append(e.duts, d)
	}
	return e, nil
}

func (e *dpEnv) startVPP(ctx context.Context, label string, ns *Netns, extra string) (*dpVPP, error) {
	dir := filepath.Join(e.w.Dir, label)
	if err := mkdirAll(dir); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	proc, err := vppstart.Start(sctx, vppstart.Config{Bin: e.cfg.VPPBin, PluginPath: e.cfg.VPPPluginPath, Dir: dir,
		NetNSPath: ns.Path(), PollSleepUsec: e.cfg.PollSleepUsec, Extra: extra})
	if err != nil {
		return nil, fmt.Errorf("start the %s VPP: %w", label, err)
	}
	e.stops = append(e.stops, func() { _ = proc.Stop(vppstart.DefaultStopTimeout) })
	conn, err := core.Connect(socketclient.NewVppClient(proc.APISocket))
	if err != nil {
		return nil, fmt.Errorf("connect to the %s VPP: %w", label, err)
	}
	e.stops = append(e.stops, conn.Disconnect)
	return &dpVPP{label: label, proc: proc, conn: conn}, nil
}

func (v *dpVPP) cli(ctx context.Context, cmd string) (string, error) {
	return cliOn(ctx, v.conn, v.label, cmd)
}

func cliOn(ctx context.Context, conn api.Connection, label, cmd string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reply, err := vlib.NewServiceClient(conn).CliInband(cctx, &vlib.CliInband{Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("%s VPP: %q: %w", label, cmd, err)
	}
	// The CLI answers errors in its text.
	if out := strings.TrimSpace(reply.Reply); strings.Contains(out, "unknown input") || strings.Contains(out, "failed") {
		return "", fmt.Errorf("%s VPP: %q: %s", label, strings.SplitN(cmd, "\n", 2)[0], out)
	}
	return reply.Reply, nil
}

// dpPath is a built topology as the traffic VPP sees it: its memif to
// send on and its memif to count on; undo removes the topology.
type dpPath struct {
	src, dst string     // the traffic VPP's interface names
	ip       bool       // IP-mode memifs: frames without an Ethernet header
	to       netip.Addr // the frames' destination
	// pingTo is the sink's address, in a table of its own in the traffic
	// VPP, so that a ping from the source's side crosses the vWire both
	// ways.
	pingTo netip.Addr
	undo   undoList
}

// undoList runs cleanups in reverse order, on a context of their own.
type undoList []func(context.Context)

func (u *undoList) push(f func(context.Context)) { *u = append(*u, f) }

func (u undoList) run(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for i := len(u) - 1; i >= 0; i-- {
		u[i](cctx)
	}
}

// paired runs one repetition of a frame size's measurement on two paths:
// MRR-1 unthrottled trials in turns, then both searches with their trials
// in turns (SearchPair; the search's first trial is MRR's last), trials[0]
// first each time.
func (e *dpEnv) paired(ctx context.Context, trials [2]Trial) ([2][]TrialResult, [2]SearchResult, [2]error) {
	var (
		mrr  [2][]TrialResult
		res  [2]SearchResult
		errs [2]error
	)
	for k := 1; k < e.cfg.MRRTrials && errs[0] == nil && errs[1] == nil; k++ {
		for i := range trials {
			t, err := trials[i](ctx, 0)
			mrr[i], errs[i] = append(mrr[i], t), err
		}
	}
	if errs[0] == nil && errs[1] == nil {
		res, errs = SearchPair(ctx, trials, e.cfg.Precision)
	}
	return mrr, res, errs
}

// measure builds topo twice, by vwire and by hand, side by side on the
// same VPPs, waits for both to carry frames, and at each frame size runs
// the two searches with their trials taking turns (SearchPair); then it
// removes both.
func (e *dpEnv) measure(ctx context.Context, topo string, rep *DataplaneReport) error {
	p := e.cfg.Progress
	p.Stage(fmt.Sprintf("dataplane: %s: building it by vwire and by hand", topo), 0)
	builders := [2]string{BuiltByVwire, BuiltByHand}
	var paths [2]*dpPath
	defer func() {
		for _, path := range paths {
			if path != nil {
				path.undo.run(ctx)
			}
		}
	}()
	for i, by := range builders {
		path, err := e.build(ctx, topo, by)
		paths[i] = path
		if err != nil {
			p.Done()
			return fmt.Errorf("built by %s: %w", by, err)
		}
	}
	if err := e.setRxMode(ctx); err != nil {
		p.Done()
		return err
	}
	objs, err := e.objects(ctx, topo)
	if err != nil {
		p.Done()
		return err
	}
	rep.Objects = append(rep.Objects, objs)
	for i, path := range paths {
		if err := e.warmUp(ctx, path); err != nil {
			p.Done()
			return fmt.Errorf("built by %s: %w", builders[i], err)
		}
	}
	p.Done()
	for _, f := range e.cfg.FrameSizes {
		p.Stage(fmt.Sprintf("dataplane: %s, %s-byte frames, vwire and hand in turns", topo, f), 0)
		var trials [2]Trial
		for i, path := range paths {
			trials[i] = func(ctx context.Context, pps float64) (TrialResult, error) { return e.trial(ctx, path, f, pps) }
		}
		var (
			mrr    [2][]TrialResult
			search [2][]SearchResult
			errs   [2]error
		)
		for k := 0; k < e.cfg.Repetitions && errs[0] == nil && errs[1] == nil; k++ {
			// The builder whose trial goes first alternates, so that
			// neither always follows the other.
			first := k % 2
			m, r, err := e.paired(ctx, [2]Trial{trials[first], trials[1-first]})
			for i := range 2 {
				j := (i + first) % 2 // builder j ran as i
				mrr[j] = append(mrr[j], m[i]...)
				if err[i] == nil {
					search[j] = append(search[j], r[i])
				} else {
					errs[j] = err[i]
				}
			}
		}
		p.Done()
		var res [2]SearchResult
		for i, by := range builders {
			var trials []TrialResult
			for _, s := range search[i] {
				trials = append(trials, s.Trials...)
			}
			r := DataplaneResult{Topology: topo, FrameSize: f, BuiltBy: by, MRRTrials: mrr[i]}
			r.MRR = MRR(append(slices.Clone(mrr[i]), trials...))
			if len(search[i]) > 0 {
				r.SearchResult = MedianSearch(search[i])
			}
			if len(search[i]) > 1 {
				per := e.cfg.MRRTrials - 1 // MRR trials per repetition, before its search
				for k, s := range search[i] {
					m := MRR(append(slices.Clone(mrr[i][k*per:min((k+1)*per, len(mrr[i]))]), s.Trials...))
					r.Repetitions = append(r.Repetitions, Figures{MRR: m, NDR: s.NDR, PDR: s.PDR, SourceMax: s.SourceMax})
				}
			}
			res[i] = r.SearchResult
			if errs[i] != nil {
				r.Error = errs[i].Error()
			} else {
				p.Logf("%s %s %s: MRR %.3f Mpps, NDR %.3f Mpps, PDR %.3f Mpps (source %.3f Mpps, %d trials, %d lossy loads retried, %d of them lossless the second time, %d repetitions)", topo, by, f,
					Mpps(r.MRR), Mpps(r.NDR), Mpps(r.PDR), Mpps(r.SourceMax), len(r.Trials), r.Retries, r.RetriesPassed, len(search[i]))
			}
			rep.Results = append(rep.Results, r)
		}
		if err := errors.Join(errs[:]...); err != nil {
			return fmt.Errorf("%s frames: %w", f, err)
		}
		if e.cfg.LatencyPings == 0 {
			continue
		}
		// Latency under load: pings across each path while the packet
		// generator loads it at a share of its own NDR, in turns.
		p.Stage(fmt.Sprintf("dataplane: %s, %s-byte frames, latency", topo, f), 0)
		n := len(rep.Results)
		for _, load := range LatencyLoads {
			for i, path := range paths {
				l, err := e.latency(ctx, path, f, load, res[i].NDR)
				if err != nil {
					p.Done()
					return fmt.Errorf("%s frames: latency: %w", f, err)
				}
				r := &rep.Results[n-2+i]
				r.Latency = append(r.Latency, l)
			}
		}
		p.Done()
	}
	return nil
}
