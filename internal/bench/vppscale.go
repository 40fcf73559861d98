package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/core"

	"github.com/vwire/vwire/forwarder/vpp"
	"github.com/vwire/vwire/mechanisms/memif"
)

// The vpp-scale group measures VPP vWires built through the mesh (the
// bench's client asks node1's manager, both nodes run `vwire node` on the
// VPP dataplane), one at a time and from many clients at once, each
// figure next to the same VPP objects made by a plain loop of VPP API
// calls on the same VPPs, and the local Request next to the kernel
// dataplane's. A vWire counts as up when its Request has returned: both
// forwarders have built it by then. After each run the bench checks, in
// the VPPs, that every vWire's objects are there (memifs admin up,
// tunnels, cross-connects) and after the Closes that they are gone; a
// memif's link comes up only when a workload attaches to its socket, which
// no workload of the bench does.

// maxVPPScaleN bounds --vpp-scale-n: the nodes' memif reserve and the
// endpoints' address pools are sized for it.
const maxVPPScaleN = 1000

// vsKind is one kind of vWire of the group.
type vsKind struct {
	name    string // in the rows
	service string
	// payload of the service's endpoint: VPP offers WireGuard first for
	// IP, VXLAN for ETHERNET.
	payload string
	cidr    string
	remote  bool
	// wireguard: the remote vWire is WireGuard (else VXLAN).
	wireguard bool
}

var (
	vsLocal  = vsKind{name: "local memif", service: "bench-vs-local", payload: "ETHERNET", cidr: "172.16.64.0/20"}
	vsRemote = []vsKind{
		{name: "remote VXLAN", service: "bench-vs-vxlan", payload: "ETHERNET", cidr: "172.16.80.0/20", remote: true},
		{name: "remote WireGuard", service: "bench-vs-wireguard", payload: "IP", cidr: "172.16.96.0/20", remote: true, wireguard: true},
	}
)

// vsRun is one run: n vWires built, each timed and all together, then
// removed the same way.
type vsRun struct {
	up, down         []time.Duration
	upWall, downWall time.Duration
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func (r vsRun) upRate() float64   { return rate(len(r.up), r.upWall) }
func (r vsRun) downRate() float64 { return rate(len(r.down), r.downWall) }

// vsRemoteResult is one remote kind's runs (from cfg.VPPScaleParallel
// clients), or why it was not measured.
type vsRemoteResult struct {
	kind         vsKind
	vwire, plain vsRun
	cost         vsCost
	err          error
}

// vsResult is what the group measured.
type vsResult struct {
	parallel int
	// The kernel dataplane's local kernel vWires, one at a time and from
	// parallel clients.
	kernelSeq, kernelPar vsRun
	// Local memif vWires on VPP through the mesh, and by the plain loop.
	memifSeq, memifPar, plainSeq, plainPar vsRun
	memifSeqCost, memifParCost             vsCost
	remote                                 []vsRemoteResult
}

// vppScaleRows turns the result into the group's rows.
func vppScaleRows(r vsResult) []Row {
	const g = GroupVPPScale
	const plain, kernel = "plain VPP API loop", "kernel dataplane, local kernel vWire"
	var rows []Row
	one := "local memif vWire, one at a time"
	rows = append(rows, percentileRows(g, "request→vWire-up, "+one, r.memifSeq.up, plain, r.plainSeq.up)...)
	rows = append(rows, percentileRows(g, "request→vWire-up, "+one+", next to the kernel dataplane", r.memifSeq.up, kernel, r.kernelSeq.up)...)
	rows = append(rows, percentileRows(g, "close, "+one, r.memifSeq.down, plain, r.plainSeq.down)...)
	rows = append(rows, costRows(g, one, r.memifSeqCost, false)...)

	par := fmt.Sprintf("local memif vWires, %d parallel", r.parallel)
	rows = append(rows,
		Row{Group: g, Name: "vWires up per second, " + par, Value: r.memifPar.upRate(), Unit: "/s", Samples: len(r.memifPar.up)}.
			WithBaseline(plain, r.plainPar.upRate()),
		Row{Group: g, Name: "vWires up per second, " + par + ", next to the kernel dataplane", Value: r.memifPar.upRate(), Unit: "/s", Samples: len(r.memifPar.up)}.
			WithBaseline(kernel, r.kernelPar.upRate()),
		Row{Group: g, Name: "vWires closed per second, " + par, Value: r.memifPar.downRate(), Unit: "/s", Samples: len(r.memifPar.down)}.
			WithBaseline(plain, r.plainPar.downRate()))
	rows = append(rows, percentileRows(g, "request→vWire-up, "+par, r.memifPar.up, plain, r.plainPar.up)...)
	rows = append(rows, costRows(g, par, r.memifParCost, false)...)

	for _, rr := range r.remote {
		name := fmt.Sprintf("%s vWires, %d parallel", rr.kind.name, r.parallel)
		if rr.err != nil {
			rows = append(rows, Skip(g, "vWires up per second, "+name, "failed: "+rr.err.Error()))
			continue
		}
		rows = append(rows,
			Row{Group: g, Name: "vWires up per second, " + name, Value: rr.vwire.upRate(), Unit: "/s", Samples: len(rr.vwire.up)}.
				WithBaseline(plain, rr.plain.upRate()),
			Row{Group: g, Name: "vWires closed per second, " + name, Value: rr.vwire.downRate(), Unit: "/s", Samples: len(rr.vwire.down)}.
				WithBaseline(plain, rr.plain.downRate()))
		rows = append(rows, percentileRows(g, "request→vWire-up, "+name, rr.vwire.up, plain, rr.plain.up)...)
		rows = append(rows, costRows(g, name, rr.cost, true)...)
	}
	return rows
}

// costRows say where a run's Requests spent their time (vsCost): node1's
// manager's mean handling of a Request, and the VPP API calls of a vWire
// on node1 (and node2 for a remote one) with the time they took.
func costRows(group, run string, c vsCost, remote bool) []Row {
	rows := []Row{{Group: group, Name: "time in node1's manager per Request, " + run, Value: Millis(c.manager), Unit: "ms"}}
	nodes := 1
	if remote {
		nodes = 2
	}
	for i := range nodes {
		rows = append(rows,
			Row{Group: group, Name: fmt.Sprintf("VPP API calls per vWire on node%d, %s", i+1, run), Value: c.calls[i], Unit: "calls"},
			Row{Group: group, Name: fmt.Sprintf("VPP API time per vWire on node%d (calls summed), %s", i+1, run), Value: Millis(c.api[i]), Unit: "ms"})
	}
	return rows
}

// measureVPPScale makes the group's measurements: the kernel dataplane's
// local Requests on a node of its own, then, on two VPP nodes, local
// memif vWires one at a time and from cfg.VPPScaleParallel clients, and
// remote VXLAN and WireGuard vWires from as many, each run also made by
// the plain loop on the same VPPs.
func measureVPPScale(ctx context.Context, cfg Config, p *Progress) ([]Row, error) {
	const what = "(measurement)"
	switch {
	case cfg.VPPBin == "":
		return []Row{Skip(GroupVPPScale, what, "VPP_BIN is not set (a VPP 25.10 binary, and VPP_PLUGIN_PATH for its plugins)")}, nil
	case os.Geteuid() != 0:
		return []Row{Skip(GroupVPPScale, what, "needs root: it makes network namespaces and VPPs")}, nil
	}
	r := vsResult{parallel: cfg.VPPScaleParallel}
	var err error
	if r.kernelSeq, r.kernelPar, err = vsKernel(ctx, cfg, p); err != nil {
		return nil, fmt.Errorf("kernel dataplane: %w", err)
	}
	if err := vsVPP(ctx, cfg, p, &r); err != nil {
		return nil, err
	}
	var errs []error
	for _, rr := range r.remote {
		if rr.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rr.kind.name, rr.err))
		}
	}
	return vppScaleRows(r), errors.Join(errs...)
}

// vsKernel times local kernel vWires on one node on the kernel
// dataplane: cfg.VPPScaleN one at a time, then as many from
// cfg.VPPScaleParallel clients.
func vsKernel(ctx context.Context, cfg Config, p *Progress) (seq, par vsRun, err error) {
	w, err := NewWorld(cfg.Bin)
	if err != nil {
		return seq, par, err
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	p.Stage("vpp-scale: starting a node on the kernel dataplane", 0)
	m, err := newMesh(ctx, w, 1)
	if err != nil {
		return seq, par, fmt.Errorf("start the node: %w", err)
	}
	defer m.close()
	nd := m.nodes[0]
	nscNS, err := w.Netns("vs-nsc")
	if err != nil {
		return seq, par, err
	}
	epNS, err := w.Netns("vs-nse")
	if err != nil {
		return seq, par, err
	}
	if _, err := m.startEndpoint(ctx, nd, epNS, "nse-vs", vsLocal.service, vsLocal.cidr); err != nil {
		return seq, par, err
	}
	p.Done()
	req := func(ctx context.Context, i int) (*networkservice.Connection, error) {
		return m.request(ctx, nd, nscNS, vsLocal.service, fmt.Sprintf("nsm-k%d", i))
	}
	if err := vsWarmUp(ctx, m, nd, req, nil); err != nil {
		return seq, par, err
	}
	for _, workers := range []int{1, cfg.VPPScaleParallel} {
		p.Stage(fmt.Sprintf("vpp-scale: kernel dataplane, %d local vWires from %d clients", cfg.VPPScaleN, workers), 2*cfg.VPPScaleN)
		run, _, err := vsMesh(ctx, m, nd, cfg.VPPScaleN, workers, p, req, nil, nil)
		if err != nil {
			return seq, par, err
		}
		if workers == 1 {
			seq = run
		} else {
			par = run
		}
	}
	p.Done()
	return seq, par, nil
}

// vsWarmUp makes one vWire and closes it: the first Request of a node
// fills caches (identities, the registry's answers) no later one needs;
// check, when set, runs while it stands.
func vsWarmUp(ctx context.Context, m *mesh, nd *node, req func(context.Context, int) (*networkservice.Connection, error), check func() error) error {
	conn, err := req(ctx, -1)
	if err != nil {
		return fmt.Errorf("first vWire: %w", err)
	}
	if check != nil {
		err = check()
	}
	if cerr := m.closeConn(ctx, nd, conn); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("first vWire: %w", err)
	}
	return nil
}

// vsMesh times n Requests through nd's manager from workers clients
// (each vWire left standing), then runs built (when set) and closes them
// all from as many clients; scrape (when set) runs before and after the
// Requests, and its two results are returned.
func vsMesh(ctx context.Context, m *mesh, nd *node, n, workers int, p *Progress,
	req func(context.Context, int) (*networkservice.Connection, error), built func() error, scrape func() ([2]promText, error),
) (run vsRun, scrapes [2][2]promText, err error) {
	conns := make([]*networkservice.Connection, n)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				_ = m.closeConn(ctx, nd, c)
			}
		}
	}
	if scrape != nil {
		if scrapes[0], err = scrape(); err != nil {
			return run, scrapes, err
		}
	}
	run.up, run.upWall, err = pool(ctx, n, workers, p, func(i int) error {
		c, err := req(ctx, i)
		conns[i] = c
		return err
	})
	if err == nil && scrape != nil {
		scrapes[1], err = scrape()
	}
	if err == nil && built != nil {
		err = built()
	}
	if err != nil {
		closeAll()
		return run, scrapes, err
	}
	run.down, run.downWall, err = pool(ctx, n, workers, p, func(i int) error {
		err := m.closeConn(ctx, nd, conns[i])
		if err == nil {
			conns[i] = nil
		}
		return err
	})
	if err != nil {
		closeAll()
	}
	return run, scrapes, err
}

// pool calls f(i) for i in [0, n) from workers goroutines and returns
// each call's time (by i) and the time for all. It gives out no more work
// after a call fails or ctx ends.
func pool(ctx context.Context, n, workers int, p *Progress, f func(i int) error) ([]time.Duration, time.Duration, error) {
	took := make([]time.Duration, n)
	errs := make([]error, n)
	var failed atomic.Bool
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				errs[i] = f(i)
				took[i] = time.Since(t0)
				if errs[i] != nil {
					failed.Store(true)
				}
				p.Step()
			}
		}()
	}
	start := time.Now()
	for i := range n {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	return took, wall, nil
}

// vsNode is a VPP node of the group as the plain loop and the checks see
// it: a connection of their own to its VPP.
type vsNode struct {
	*node
	vc    *vpp.Client
	plain plainSide
}

// vsVPP measures the VPP runs on two nodes on the VPP dataplane.
func vsVPP(ctx context.Context, cfg Config, p *Progress, r *vsResult) (err error) {
	n := cfg.VPPScaleN
	w, err := NewWorld(cfg.Bin)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	p.Stage("vpp-scale: starting two nodes on the VPP dataplane", 0)
	// Each local vWire stands with two memifs on node1: room for all of
	// them, against VPP 25.10's crash when its memif pool grows in use.
	m, err := newMeshWith(ctx, w, 2, meshOptions{VPPBin: cfg.VPPBin, VPPPluginPath: cfg.VPPPluginPath, Metrics: true, MemifReserve: 2*n + 16})
	if err != nil {
		return fmt.Errorf("start the nodes: %w", err)
	}
	defer m.close()
	var nodes [2]*vsNode
	for i, nd := range m.nodes {
		conn, err := core.Connect(socketclient.NewVppClient(filepath.Join(w.Dir, nd.name, "vpp", "api.sock")))
		if err != nil {
			return fmt.Errorf("%s: connect to its VPP: %w", nd.name, err)
		}
		defer conn.Disconnect()
		vn := &vsNode{node: nd, vc: vpp.NewClient(conn, slog.New(slog.DiscardHandler), nil)}
		ifs, err := vn.vc.ListInterfaces(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", nd.name, err)
		}
		j := slices.IndexFunc(ifs, func(i vpp.Interface) bool { return i.Name == "host-eth0" })
		if j < 0 {
			return fmt.Errorf("%s: its VPP has no uplink host-eth0", nd.name)
		}
		vn.plain = plainSide{vc: vn.vc, uplink: ifs[j].Index, addr: nd.ip}
		nodes[i] = vn
	}
	nscNS, err := w.Netns("vs-nsc")
	if err != nil {
		return err
	}
	eps := map[string]*Netns{}
	for _, k := range append([]vsKind{vsLocal}, vsRemote...) {
		on := m.nodes[0]
		if k.remote {
			on = m.nodes[1]
		}
		ns, err := w.Netns("vs-" + strings.TrimPrefix(k.service, "bench-vs-"))
		if err != nil {
			return err
		}
		e := &endpoint{name: "nse-" + strings.TrimPrefix(k.service, "bench-"), service: k.service, cidr: k.cidr, ns: ns, node: on,
			args: []string{"--payload", k.payload, "--mechanisms", memif.Type}}
		if err := m.restartEndpoint(ctx, e); err != nil {
			return err
		}
		eps[k.service] = ns
	}
	p.Done()
	req := func(k vsKind) func(context.Context, int) (*networkservice.Connection, error) {
		return func(ctx context.Context, _ int) (*networkservice.Connection, error) {
			return m.requestMech(ctx, m.nodes[0], k.service, memif.New(memif.Params{NetNSURL: "file://" + nscNS.Path()}))
		}
	}
	scrape := func() (out [2]promText, err error) {
		for i, nd := range m.nodes {
			if out[i], err = scrapeNode(ctx, nd); err != nil {
				return out, err
			}
		}
		return out, nil
	}
	// The objects of one vWire of each kind, on each node.
	one := map[string][2]vsObjects{
		vsLocal.service:     {{memifs: 2, upMemifs: 2, l2xcs: 2}, {}},
		vsRemote[0].service: {{memifs: 1, upMemifs: 1, l2xcs: 2, vxlans: 1}, {memifs: 1, upMemifs: 1, l2xcs: 2, vxlans: 1}},
		vsRemote[1].service: {{memifs: 1, upMemifs: 1, wgs: 1}, {memifs: 1, upMemifs: 1, wgs: 1}},
	}
	base, err := vsCountAll(ctx, nodes)
	if err != nil {
		return err
	}
	// standing checks that k vWires of kind service stand on top of base,
	// and gone (k 0) that they are all gone; the Closes' removals may
	// still be under way, so it waits a little for them.
	standing := func(service string, k int) func() error {
		return func() error {
			return poll(ctx, 30*time.Second, func() error {
				got, err := vsCountAll(ctx, nodes)
				if err != nil {
					return permanent{err}
				}
				for i := range got {
					if want := base[i].plus(one[service][i], k); got[i] != want {
						return fmt.Errorf("%s: %d vWires of %s: VPP holds %+v, want %+v", nodes[i].name, k, service, got[i], want)
					}
				}
				return nil
			})
		}
	}

	p.Stage("vpp-scale: first local memif vWire", 0)
	if err := vsWarmUp(ctx, m, m.nodes[0], req(vsLocal), standing(vsLocal.service, 1)); err != nil {
		return err
	}
	if err := standing(vsLocal.service, 0)(); err != nil {
		return err
	}
	p.Done()
	for _, workers := range []int{1, cfg.VPPScaleParallel} {
		p.Stage(fmt.Sprintf("vpp-scale: %d local memif vWires from %d clients", n, workers), 2*n)
		run, scrapes, err := vsMesh(ctx, m, m.nodes[0], n, workers, p, req(vsLocal), standing(vsLocal.service, n), scrape)
		if err != nil {
			return fmt.Errorf("local memif vWires from %d clients: %w", workers, err)
		}
		if err := standing(vsLocal.service, 0)(); err != nil {
			return err
		}
		cost := costOf(n, scrapes[0], scrapes[1])
		p.Done()
		p.Logf("vpp-scale: local memif from %d clients: node1's VPP API calls per vWire: %s", workers, cost.top[0])
		p.Stage(fmt.Sprintf("vpp-scale: %d local memif vWires by the plain loop, %d at a time", n, workers), 2*n)
		vc := nodes[0].vc
		plain, err := vsPlain(ctx, n, workers, p, func(ctx context.Context, i int) (undoList, error) {
			return plainMemifVWire(ctx, vc, i, nscNS.Path(), eps[vsLocal.service].Path())
		}, standing(vsLocal.service, n), standing(vsLocal.service, 0))
		if err != nil {
			return fmt.Errorf("plain loop, local memif, %d at a time: %w", workers, err)
		}
		p.Done()
		if workers == 1 {
			r.memifSeq, r.plainSeq, r.memifSeqCost = run, plain, cost
		} else {
			r.memifPar, r.plainPar, r.memifParCost = run, plain, cost
		}
	}

	for _, k := range vsRemote {
		rr := vsRemoteResult{kind: k}
		rr.vwire, rr.plain, rr.cost, rr.err = vsRemoteRuns(ctx, cfg, p, m, nodes, k, req(k), scrape, standing, nscNS, eps[k.service])
		if rr.err != nil {
			p.Done()
			p.Logf("vpp-scale: %s failed: %v", k.name, rr.err)
		}
		r.remote = append(r.remote, rr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// vsRemoteRuns measures remote vWires of kind k from
// cfg.VPPScaleParallel clients, through the mesh then by the plain loop.
func vsRemoteRuns(ctx context.Context, cfg Config, p *Progress, m *mesh, nodes [2]*vsNode, k vsKind,
	req func(context.Context, int) (*networkservice.Connection, error), scrape func() ([2]promText, error),
	standing func(string, int) func() error, nscNS, epNS *Netns,
) (run, plain vsRun, cost vsCost, err error) {
	n, workers := cfg.VPPScaleN, cfg.VPPScaleParallel
	p.Stage(fmt.Sprintf("vpp-scale: first %s vWire", k.name), 0)
	if err := vsWarmUp(ctx, m, m.nodes[0], req, standing(k.service, 1)); err != nil {
		return run, plain, cost, err
	}
	if err := standing(k.service, 0)(); err != nil {
		return run, plain, cost, err
	}
	p.Done()
	p.Stage(fmt.Sprintf("vpp-scale: %d %s vWires from %d clients", n, k.name, workers), 2*n)
	run, scrapes, err := vsMesh(ctx, m, m.nodes[0], n, workers, p, req, standing(k.service, n), scrape)
	if err != nil {
		return run, plain, cost, err
	}
	if err := standing(k.service, 0)(); err != nil {
		return run, plain, cost, err
	}
	cost = costOf(n, scrapes[0], scrapes[1])
	p.Done()
	p.Logf("vpp-scale: %s: VPP API calls per vWire: node1 %s; node2 %s", k.name, cost.top[0], cost.top[1])

	p.Stage(fmt.Sprintf("vpp-scale: %d %s vWires by the plain loop, %d at a time", n, k.name, workers), 2*n)
	a, b := nodes[0].plain, nodes[1].plain
	a.nsPath, b.nsPath = nscNS.Path(), epNS.Path()
	if k.wireguard {
		for _, nd := range nodes {
			t := vpp.IPTable{ID: plainTable, Name: "bench-plain"}
			if err := nd.vc.CreateIPTable(ctx, t); err != nil {
				return run, plain, cost, fmt.Errorf("%s: %w", nd.name, err)
			}
			defer func() { _ = nd.vc.DeleteIPTable(context.WithoutCancel(ctx), t) }()
		}
	}
	plain, err = vsPlain(ctx, n, workers, p, func(ctx context.Context, i int) (undoList, error) {
		return plainRemoteVWire(ctx, a, b, k.wireguard, i)
	}, standing(k.service, n), standing(k.service, 0))
	if err != nil {
		return run, plain, cost, fmt.Errorf("plain loop: %w", err)
	}
	p.Done()
	return run, plain, cost, nil
}

// vsPlain times n vWires made by the plain loop build from workers
// goroutines, runs built, then removes them from as many goroutines
// (timed too) and runs gone.
func vsPlain(ctx context.Context, n, workers int, p *Progress, build func(context.Context, int) (undoList, error), built, gone func() error) (run vsRun, err error) {
	undos := make([]undoList, n)
	removeAll := func() {
		for _, u := range undos {
			u.run(ctx)
		}
	}
	run.up, run.upWall, err = pool(ctx, n, workers, p, func(i int) error {
		u, err := build(ctx, i)
		undos[i] = u
		return err
	})
	if err == nil {
		err = built()
	}
	if err != nil {
		removeAll()
		return run, err
	}
	run.down, run.downWall, err = pool(ctx, n, workers, p, func(i int) error {
		undos[i].run(ctx)
		undos[i] = nil
		return nil
	})
	if err != nil {
		removeAll()
		return run, err
	}
	return run, gone()
}

// vsObjects counts what a VPP holds of the objects of the group's vWires.
type vsObjects struct {
	memifs, upMemifs, vxlans, wgs, l2xcs int
}

// plus is o with k times d more of everything.
func (o vsObjects) plus(d vsObjects, k int) vsObjects {
	return vsObjects{memifs: o.memifs + k*d.memifs, upMemifs: o.upMemifs + k*d.upMemifs,
		vxlans: o.vxlans + k*d.vxlans, wgs: o.wgs + k*d.wgs, l2xcs: o.l2xcs + k*d.l2xcs}
}

// countObjects counts interfaces by VPP's names for them (memifN/M,
// vxlan_tunnelN, wgN) and the L2 cross-connects.
func countObjects(ifs []vpp.Interface, l2xcs int) vsObjects {
	o := vsObjects{l2xcs: l2xcs}
	for _, i := range ifs {
		switch {
		case strings.HasPrefix(i.Name, "memif"):
			o.memifs++
			if i.AdminUp {
				o.upMemifs++
			}
		case strings.HasPrefix(i.Name, "vxlan_tunnel"):
			o.vxlans++
		case strings.HasPrefix(i.Name, "wg"):
			o.wgs++
		}
	}
	return o
}

func vsCountAll(ctx context.Context, nodes [2]*vsNode) (out [2]vsObjects, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	for i, nd := range nodes {
		ifs, err := nd.vc.ListInterfaces(ctx)
		if err != nil {
			return out, fmt.Errorf("%s: %w", nd.name, err)
		}
		l2, err := nd.vc.ListL2XCs(ctx)
		if err != nil {
			return out, fmt.Errorf("%s: %w", nd.name, err)
		}
		out[i] = countObjects(ifs, len(l2))
	}
	return out, nil
}
