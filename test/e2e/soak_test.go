package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/workload/nsc"
)

// The soak of the heal issue: many Request/Close cycles, then many
// concurrent vWires, after which every process of the mesh must be back
// where it started (goroutines, file descriptors, memory) and no
// interface or route the vWires made may remain.
//
// The clients are nsc.Clients in the test process (what `vwire nsc` runs),
// one per client namespace, talking to node1's manager over its unix
// socket with an identity from the mesh's development CA. Half the
// connections go to an endpoint on node1 (veths), half to one on node2
// (veths and a kernel vxlan each side).
//
// By default (make test) it runs a reduced size; VWIRE_SOAK=1 (make soak)
// runs the issue's: 10,000 Request/Close cycles and 1,000 concurrent
// vWires.

// soakSize is how much the soak does.
type soakSize struct {
	Cycles     int // Request/Close cycles, in total
	Concurrent int // vWires up at once
}

const (
	soakWorkers = 10 // client namespaces, one client each
	// soakBatch is how many connections a worker requests in one cycle
	// batch (nsc's Once: request each, then close each).
	soakBatch = 10

	// Ports of the daemons' metrics, on their node's loopback.
	registryMetrics  = "127.0.0.1:9102"
	forwarderMetrics = "127.0.0.1:9103"
)

// Tolerances of "back to baseline", per process, after the soak.
const (
	// Goroutines: the exact count of a quiet process moves by a few
	// (gRPC transports' keepalive and the metrics scrape itself).
	goroutineSlack = 5
	// File descriptors: a gRPC connection that was redialled in between
	// may have landed on another descriptor number, not another count;
	// one or two of slack for a connection being replaced.
	fdSlack = 2
	// Memory: Go keeps freed heap for reuse and returns it to the kernel
	// only slowly (the scavenger), so RSS stays near its high-water mark
	// for minutes. What must come back is the live heap: the Go heap in
	// use (go_memstats_heap_inuse_bytes, which includes garbage not yet
	// collected: up to GOGC=100% of the live heap) must be within twice
	// its baseline plus heapSlack. A leak of 2 KiB per vWire shows after
	// the full soak as 20 MB. RSS, for every process including the ones
	// without metrics, must stay under rssFactor times its baseline plus
	// rssSlack: the bound of a heap that returned to its baseline size
	// but not yet to the kernel.
	heapSlack = 8 << 20
	rssFactor = 2
	rssSlack  = 64 << 20
)

func soakSizeFromEnv() soakSize {
	size := soakSize{Cycles: 400, Concurrent: 100}
	if os.Getenv("VWIRE_SOAK") != "" {
		size = soakSize{Cycles: 10_000, Concurrent: 1_000}
	}
	// VWIRE_SOAK_CYCLES overrides the number of cycles (to run the
	// concurrent rounds at full size alone, for one).
	if n, err := strconv.Atoi(os.Getenv("VWIRE_SOAK_CYCLES")); err == nil && n > 0 {
		size.Cycles = n
	}
	// VWIRE_SOAK_CONCURRENT overrides the number of concurrent vWires of
	// each concurrent round.
	if n, err := strconv.Atoi(os.Getenv("VWIRE_SOAK_CONCURRENT")); err == nil && n > 0 {
		size.Concurrent = n
	}
	return size
}

func TestSoak(t *testing.T) { runSoak(t, soakSizeFromEnv(), VPPEnv{}) }

// soakVPPMemifReserve is the forwarders' --vpp-memif-reserve in the soak
// on VPP: node1 holds 1,500 memifs at the peak of the full soak (both
// sides of the 500 local vWires, the client side of the 500 remote ones).
const soakVPPMemifReserve = 1600

// TestSoakVPP is the soak on the VPP dataplane (make test-vpp, make
// soak-vpp): the same cycles and concurrent vWires, MEMIF on both sides
// (clients ask memif://, the endpoints accept MEMIF only), and at the end
// every VPP holds exactly the objects it held at the baseline, and VPP's
// own descriptors are back too. MEMIF, not KERNEL: a KERNEL side on a VPP
// without /dev/vhost-net is a veth and an af_packet whose rings VPP locks
// in memory (10.5 MB RX, 17 MB TX), some 40 GB for 1,000 vWires on this
// 24 GB machine; a memif is a socket and shared memory the workload maps.
// No workload here speaks memif, so these vWires are checked up (reported
// by the clients, their objects in VPP) but not pinged; the memif data path
// is pinged by forwarder/vpp's TestVWireMatrix and measured by
// BenchmarkMemif2Memif.
func TestSoakVPP(t *testing.T) {
	dp := LookupVPP()
	if dp.Skip != "" {
		t.Skip(dp.Skip)
	}
	runSoak(t, soakSizeFromEnv(), dp)
}

func runSoak(t *testing.T, size soakSize, dp VPPEnv) {
	if suite.skip == "" {
		roomForNeighbours(t, size.Concurrent)
	}
	scheme, fwdArgs, epArgs := "kernel", []string{"--metrics-listen", forwarderMetrics}, []string(nil)
	if dp.Bin != "" {
		scheme, epArgs = "memif", []string{"--mechanisms", "MEMIF"}
		fwdArgs = append(fwdArgs, "--vpp-memif-reserve", fmt.Sprint(soakVPPMemifReserve))
	}
	l, m := newMesh(t, MeshOptions{
		Nodes: 2, LogLevel: "info", VPP: dp,
		RegistryArgs:  []string{"--metrics-listen", registryMetrics},
		ManagerArgs:   []string{"--metrics-listen", managerMetrics},
		ForwarderArgs: fwdArgs,
	})
	t.Cleanup(m.ReportVPPHang)
	if dp.Bin != "" {
		t.Cleanup(func() { keepSoakDiagnostics(m) })
	}
	n1, n2 := m.Nodes[0], m.Nodes[1]
	epLocal, epRemote := l.Netns("nse-local"), l.Netns("nse-remote")
	var clientNS []*Netns
	for i := range soakWorkers {
		clientNS = append(clientNS, l.Netns(fmt.Sprintf("s%d", i)))
	}
	before := l.MustSnapshot()
	// Room for Concurrent pairs at once on each endpoint.
	epL := n1.StartICMPResponder(epLocal, EndpointOptions{Name: "nse-local", Service: "soak-local", CIDR: "172.20.0.0/16", Args: epArgs})
	epR := n2.StartICMPResponder(epRemote, EndpointOptions{Name: "nse-remote", Service: "soak-remote", CIDR: "172.21.0.0/16", Args: epArgs})
	// On VPP, KERNEL vWires too (VPP's side of each a VLAN sub-interface
	// of the node's af_packet trunk), to endpoints of their own.
	var kernelEPs []*Endpoint
	if dp.Bin != "" {
		kernelEPs = append(kernelEPs,
			n1.StartICMPResponder(l.Netns("nse-klocal"), EndpointOptions{Name: "nse-klocal", Service: "soak-k-local", CIDR: "172.22.0.0/16", Args: []string{"--mechanisms", "KERNEL"}}),
			n2.StartICMPResponder(l.Netns("nse-kremote"), EndpointOptions{Name: "nse-kremote", Service: "soak-k-remote", CIDR: "172.23.0.0/16", Args: []string{"--mechanisms", "KERNEL"}}))
	}

	procs := []*soakProc{
		{Proc: m.RegistryProc, ns: n1.Netns, metrics: registryMetrics},
		{Proc: n1.Manager, ns: n1.Netns, metrics: managerMetrics},
		{Proc: n2.Manager, ns: n2.Netns, metrics: managerMetrics},
		{Proc: n1.Forwarder, ns: n1.Netns, metrics: forwarderMetrics},
		{Proc: n2.Forwarder, ns: n2.Netns, metrics: forwarderMetrics},
	}
	procs = append(procs, &soakProc{Proc: epL.Proc}, &soakProc{Proc: epR.Proc})
	for _, ep := range kernelEPs {
		procs = append(procs, &soakProc{Proc: ep.Proc})
	}
	if dp.Bin != "" {
		procs = append(procs, &soakProc{Proc: n1.VPP, vpp: true}, &soakProc{Proc: n2.VPP, vpp: true})
	}

	testGoroutines := runtime.NumGoroutine()
	clients := newSoakClients(t, l, n1, clientNS)
	clients.scheme, clients.service = scheme, "soak"
	if dp.Bin != "" {
		clients.describe = func(tg pingTarget) string { return describeSilent(n1, m.Nodes, tg) }
	}

	// A first round sets up what every later one reuses (the managers'
	// connections to each other and to the endpoints); the baseline is
	// taken after it, once the mesh is quiet.
	runCycles(t, clients, 1)
	if len(kernelEPs) > 0 {
		clients.scheme, clients.service = "kernel", "soak-k"
		runCycles(t, clients, 1)
		clients.scheme, clients.service = scheme, "soak"
	}
	l.WaitNoLeak(cleanupTimeout, before)
	time.Sleep(2 * time.Second)
	for _, p := range procs {
		p.base = p.mustStat(t)
		p.peak = p.base
	}
	// Taken now, not with the links: the kernel adds IPv6 link-local
	// routes to the fabric's links a moment after they come up.
	routesBefore := mustRoutes(t, l)
	vppBefore := m.MustVPPSnapshot()

	start := time.Now()
	sampler := startSampler(procs)
	rounds := max(size.Cycles/(soakWorkers*soakBatch), 1)
	runCycles(t, clients, rounds)
	cycles := rounds * soakWorkers * soakBatch
	cycleTime := time.Since(start)
	l.WaitNoLeak(cleanupTimeout, before)
	m.WaitNoVPPLeak(cleanupTimeout, vppBefore)
	t.Logf("%d Request/Close cycles in %v (%.0f/s)", cycles, cycleTime.Round(time.Millisecond), float64(cycles)/cycleTime.Seconds())

	start = time.Now()
	up := runConcurrent(t, clients, size.Concurrent)
	t.Logf("%d concurrent %s vWires: up (pinged if kernel) in %v, all closed in %v", size.Concurrent, scheme, up.Round(time.Millisecond), (time.Since(start) - up).Round(time.Millisecond))
	l.WaitNoLeak(2*cleanupTimeout, before)
	m.WaitNoVPPLeak(2*cleanupTimeout, vppBefore)
	if len(kernelEPs) > 0 {
		clients.scheme, clients.service = "kernel", "soak-k"
		start = time.Now()
		up := runConcurrent(t, clients, size.Concurrent)
		t.Logf("%d concurrent KERNEL vWires on the af_packet trunk: up and pinged in %v, all closed in %v", size.Concurrent, up.Round(time.Millisecond), (time.Since(start) - up).Round(time.Millisecond))
		l.WaitNoLeak(2*cleanupTimeout, before)
		m.WaitNoVPPLeak(2*cleanupTimeout, vppBefore)
	}
	sampler.stop()
	// VPP 25.10 keeps a descriptor of the namespace of every memif socket
	// it opens in another namespace (see vppNetnsLeak): at most one per
	// memif side built, two per local vWire.
	for _, p := range procs {
		p.netnsBound = 2 * (cycles + size.Concurrent)
	}
	clients.close()

	// Back to baseline.
	Eventually(t, 2*time.Minute, "every process is back to its baseline", func() error {
		var errs []error
		for _, p := range procs {
			st, err := p.stat()
			if err != nil {
				return err
			}
			p.after = st
			errs = append(errs, p.check())
		}
		return errors.Join(errs...)
	})
	if d := routesBefore.diff(mustRoutes(t, l)); len(d) > 0 {
		t.Errorf("routes differ after the soak:\n\t%s", strings.Join(d, "\n\t"))
	}
	Eventually(t, cleanupTimeout, "the test process's goroutines are back to their baseline", func() error {
		if n := runtime.NumGoroutine(); n > testGoroutines+goroutineSlack {
			return fmt.Errorf("%d goroutines, %d before the clients", n, testGoroutines)
		}
		return nil
	})
	t.Logf("process figures (baseline / peak / after):\n%s", soakTable(procs))
}

// soakProc is one daemon of the mesh and its figures.
type soakProc struct {
	*Proc
	ns      *Netns // where metrics serve; nil without metrics
	metrics string

	vpp bool // a VPP: its namespace descriptors are checked apart

	base, after procStat
	mu          sync.Mutex // guards peak
	peak        procStat
	// netnsBound is how many namespace descriptors a VPP may have gained
	// (VPP 25.10's leak, see vppNetnsLeak).
	netnsBound int
}

// procStat is what the soak watches of a process. Goroutines and Heap are
// -1 for a process without metrics.
type procStat struct {
	Goroutines int
	FDs        int
	Threads    int
	RSS        int64 // bytes
	Heap       int64 // bytes of Go heap in use
	NetnsFDs   int   // descriptors of network namespaces (in FDs too)
}

func (p *soakProc) stat() (procStat, error) {
	st := procStat{Goroutines: -1, Heap: -1}
	pid := p.Pid()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, fmt.Errorf("%s: %w", p, err)
	}
	st.FDs = len(fds)
	for _, e := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && isNetnsFD(target) {
			st.NetnsFDs++
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("%s: %w", p, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(status)))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			st.RSS = n << 10 // kB
		case "Threads":
			st.Threads = int(n)
		}
	}
	if p.ns != nil {
		ms, err := scrapeMetrics(p.ns, p.metrics)
		if err != nil {
			return st, fmt.Errorf("%s: %w", p, err)
		}
		st.Goroutines = int(ms["go_goroutines"])
		st.Heap = int64(ms["go_memstats_heap_inuse_bytes"])
	}
	return st, nil
}

func (p *soakProc) mustStat(t *testing.T) procStat {
	t.Helper()
	st, err := p.stat()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// check says how p.after is not back to p.base, or nil.
func (p *soakProc) check() error {
	b, a := p.base, p.after
	var bad []string
	if b.Goroutines >= 0 && a.Goroutines > b.Goroutines+goroutineSlack {
		bad = append(bad, fmt.Sprintf("%d goroutines, %d at baseline", a.Goroutines, b.Goroutines))
	}
	switch {
	case p.vpp:
		if other, otherBase := a.FDs-a.NetnsFDs, b.FDs-b.NetnsFDs; other > otherBase+fdSlack {
			bad = append(bad, fmt.Sprintf("%d file descriptors besides namespaces', %d at baseline (now: %s)", other, otherBase, fdKinds(p.Pid())))
		}
		if grew := a.NetnsFDs - b.NetnsFDs; grew > p.netnsBound {
			bad = append(bad, fmt.Sprintf("%d more namespace descriptors, more than VPP 25.10's leak of at most %d", grew, p.netnsBound))
		}
	case a.FDs > b.FDs+fdSlack:
		bad = append(bad, fmt.Sprintf("%d file descriptors, %d at baseline (now: %s)", a.FDs, b.FDs, fdKinds(p.Pid())))
	}
	if b.Heap >= 0 && a.Heap > 2*b.Heap+heapSlack {
		bad = append(bad, fmt.Sprintf("heap in use %s, %s at baseline", mib(a.Heap), mib(b.Heap)))
	}
	if a.RSS > rssFactor*b.RSS+rssSlack {
		bad = append(bad, fmt.Sprintf("RSS %s, %s at baseline", mib(a.RSS), mib(b.RSS)))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", p.Name, strings.Join(bad, ", "))
}

// vppNetnsLeak: VPP 25.10's clib_socket_init (src/vppinfra/socket.c), asked
// for a socket in another network namespace ("netns_name=" or
// "netns_pid=", as vwire asks for each abstract memif socket of a
// workload), opens that namespace, enters it, then overwrites the
// descriptor with the one of its own namespace and closes only that: one
// descriptor per memif listener or connection, pinning the namespace, for
// as long as VPP runs. Nothing vwire sends avoids it (every form of the
// request opens the namespace anew); the soak checks VPP's other
// descriptors against the baseline and these against that bound.

// isNetnsFD reports whether a descriptor's link target is a network
// namespace (a bind mount under /run/netns, or nsfs's "net:[inode]").
func isNetnsFD(target string) bool {
	return strings.HasPrefix(target, "/run/netns/") || strings.HasPrefix(target, "/var/run/netns/") || strings.HasPrefix(target, "net:[")
}

// fdKinds counts a process's descriptors by what they are (socket, pipe,
// anon_inode:[eventfd], a file's directory...), so that a failed check
// says which kind did not come back.
func fdKinds(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	n := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		kind, _, found := strings.Cut(target, ":[")
		if !found {
			if i := strings.LastIndexByte(target, '/'); i > 0 {
				kind = target[:i] + "/"
			}
		}
		n[kind]++
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		out = append(out, fmt.Sprintf("%s %d", k, n[k]))
	}
	return strings.Join(out, ", ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// sampler records each process's peak figures while the soak runs.
type sampler struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startSampler(procs []*soakProc) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			for _, p := range procs {
				st, err := p.stat()
				if err != nil {
					continue
				}
				p.mu.Lock()
				p.peak.Goroutines = max(p.peak.Goroutines, st.Goroutines)
				p.peak.FDs = max(p.peak.FDs, st.FDs)
				p.peak.NetnsFDs = max(p.peak.NetnsFDs, st.NetnsFDs)
				p.peak.Threads = max(p.peak.Threads, st.Threads)
				p.peak.RSS = max(p.peak.RSS, st.RSS)
				p.peak.Heap = max(p.peak.Heap, st.Heap)
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() { s.cancel(); <-s.done }

// soakTable renders the figures of every process.
func soakTable(procs []*soakProc) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "process\tgoroutines\tfds\tnetns fds\tthreads\tRSS MiB\theap MiB")
	for _, p := range procs {
		p.mu.Lock()
		pk := p.peak
		p.mu.Unlock()
		row := func(f func(procStat) float64, format string) string {
			v := func(st procStat) string {
				x := f(st)
				if x < 0 {
					return "-"
				}
				return fmt.Sprintf(format, x)
			}
			return v(p.base) + " / " + v(pk) + " / " + v(p.after)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name,
			row(func(s procStat) float64 { return float64(s.Goroutines) }, "%.0f"),
			row(func(s procStat) float64 { return float64(s.FDs) }, "%.0f"),
			row(func(s procStat) float64 { return float64(s.NetnsFDs) }, "%.0f"),
			row(func(s procStat) float64 { return float64(s.Threads) }, "%.0f"),
			row(func(s procStat) float64 { return float64(s.RSS) / (1 << 20) }, "%.1f"),
			row(func(s procStat) float64 {
				if s.Heap < 0 {
					return -1
				}
				return float64(s.Heap) / (1 << 20)
			}, "%.1f"))
	}
	w.Flush()
	return b.String()
}

// soakClients are one nsc.Client per client namespace, in this process.
type soakClients struct {
	src     identity.Source
	conns   []*grpcutil.Conn
	ns      []*Netns
	dialURL string
	t       *testing.T
	scheme  string // of every target: kernel, or memif (not pinged)
	service string // targets go to <service>-local and <service>-remote
	// describe, when set, says where a KERNEL vWire that carries no
	// ping stands (describeSilent on the clients' node).
	describe func(pingTarget) string
}

// maxDescribed bounds how many silent vWires a failed round describes.
const maxDescribed = 8

func newSoakClients(t *testing.T, l *Lab, n *MeshNode, nss []*Netns) *soakClients {
	t.Helper()
	// The identity comes from the development CA, never from a Workload
	// API of the test's environment.
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	src, err := identity.New(context.Background(), identity.Config{StateDir: l.Dir, Component: "soak"})
	if err != nil {
		t.Fatal(err)
	}
	c := &soakClients{src: src, ns: nss, dialURL: n.ConnectTo(), t: t}
	for range nss {
		cc, err := grpcutil.DialPeer(c.dialURL, src, identity.AuthorizeTrustDomain(src))
		if err != nil {
			c.close()
			t.Fatal(err)
		}
		c.conns = append(c.conns, cc)
	}
	t.Cleanup(c.close)
	return c
}

// close closes the gRPC connections and the identity; safe to call twice.
func (c *soakClients) close() {
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = nil
	if c.src != nil {
		c.src.Close()
		c.src = nil
	}
}

// client returns worker i's client, reporting to out.
func (c *soakClients) client(i int, out io.Writer) *nsc.Client {
	cl, err := nsc.New(c.conns[i], nsc.Config{
		Source:   c.src,
		Name:     "soak-" + c.ns[i].Label,
		NetNSURL: "file:///var/run/netns/" + c.ns[i].Name,
		Output:   out,
		Format:   "json",
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// soakTargets are n targets of scheme with interface (or memif socket)
// names prefix0..., alternately to the services service-local and
// service-remote.
func soakTargets(t *testing.T, scheme, service, prefix string, n int) []nsc.Target {
	t.Helper()
	var ts []nsc.Target
	for i := range n {
		svc := service + "-local"
		if i%2 == 1 {
			svc = service + "-remote"
		}
		tg, err := nsc.ParseTarget(fmt.Sprintf("%s://%s/%s%d", scheme, svc, prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tg)
	}
	return ts
}

// runCycles has every worker request soakBatch connections and close them,
// rounds times, all workers at once. The first failure stops every worker
// (the others' rounds would only bury it, minutes later, in their logs)
// and says when it happened, to find it in the daemons' logs.
func runCycles(t *testing.T, c *soakClients, rounds int) {
	t.Helper()
	eg, ctx := errgroup.WithContext(context.Background())
	for i := range c.ns {
		cl := c.client(i, nil)
		targets := soakTargets(t, c.scheme, c.service, "s", soakBatch)
		eg.Go(func() error {
			for r := range rounds {
				if ctx.Err() != nil {
					return nil
				}
				if err := cl.Once(ctx, targets); err != nil {
					return fmt.Errorf("%s round %d, at %s: %w", c.ns[i].Label, r, time.Now().UTC().Format("15:04:05.000"), err)
				}
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		t.Fatal(err)
	}
}

// runConcurrent brings n vWires up at once (n/workers per client), pings
// across every one, then stops the clients, which close them. It returns
// how long bringing them up and pinging took.
func runConcurrent(t *testing.T, c *soakClients, n int) time.Duration {
	t.Helper()
	per := max(n/len(c.ns), 1)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var eg errgroup.Group
	sinks := make([]*reportSink, len(c.ns))
	for i := range c.ns {
		sinks[i] = &reportSink{latest: map[string]nsc.Report{}}
		cl := c.client(i, sinks[i])
		targets := soakTargets(t, c.scheme, c.service, "v", per)
		eg.Go(func() error { return cl.Run(ctx, targets) })
	}
	Eventually(t, 10*time.Minute, fmt.Sprintf("%d vWires are up", per*len(c.ns)), func() error {
		up := 0
		for _, s := range sinks {
			up += s.count()
		}
		if up < per*len(c.ns) {
			return fmt.Errorf("%d up", up)
		}
		return nil
	})
	var targets []pingTarget
	for i, s := range sinks {
		for url, r := range s.reports() {
			targets = append(targets, pingTarget{NS: c.ns[i], Addr: Addr(r.DstIPs[0]), What: c.ns[i].Label + " " + url})
		}
	}
	if c.scheme == "kernel" {
		failed, err := pingAll(targets, pingTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) > 0 {
			var names []string
			for i, f := range failed {
				names = append(names, fmt.Sprintf("%s (%s: %s)", f.What, f.NS.Label, f.Addr))
				if c.describe != nil && i < maxDescribed {
					t.Logf("silent vWire %s (%s → %s):\n%s", f.What, f.NS.Label, f.Addr, c.describe(f))
				}
			}
			t.Fatalf("%d of %d vWires carry no ping within %v: %s", len(failed), len(targets), pingTimeout, strings.Join(names, ", "))
		}
	}
	took := time.Since(start)
	cancel()
	if err := eg.Wait(); err != nil {
		t.Fatal(err)
	}
	return took
}

// reportSink takes a client's JSON reports and keeps each URL's latest
// connection.
type reportSink struct {
	mu     sync.Mutex // guards latest
	latest map[string]nsc.Report
}

func (s *reportSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r nsc.Report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return 0, err
		}
		switch r.Event {
		case "connected", "changed":
			s.latest[r.URL] = r
		case "closed", "expired":
			delete(s.latest, r.URL)
		}
	}
	return len(b), nil
}

func (s *reportSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.latest)
}

func (s *reportSink) reports() map[string]nsc.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]nsc.Report{}
	for k, v := range s.latest {
		out[k] = v
	}
	return out
}

// routeSet is, per namespace label, its routes in every table.
type routeSet map[string][]string

func mustRoutes(t *testing.T, l *Lab) routeSet {
	t.Helper()
	rs := routeSet{}
	for _, ns := range l.Namespaces() {
		var routes []string
		for _, family := range []string{"-4", "-6"} {
			out, err := ns.IP(family, "route", "show", "table", "all")
			if err != nil {
				t.Fatalf("%s: ip route: %v: %s", ns.Label, err, out)
			}
			for _, line := range strings.Split(out, "\n") {
				if line = strings.TrimSpace(line); line != "" {
					routes = append(routes, line)
				}
			}
		}
		slices.Sort(routes)
		rs[ns.Label] = routes
	}
	return rs
}

// diff lists routes added ("+ ns: route") or gone ("- ns: route").
func (rs routeSet) diff(now routeSet) []string {
	var d []string
	for ns, routes := range now {
		for _, r := range routes {
			if !slices.Contains(rs[ns], r) {
				d = append(d, "+ "+ns+": "+r)
			}
		}
	}
	for ns, routes := range rs {
		for _, r := range routes {
			if !slices.Contains(now[ns], r) {
				d = append(d, "- "+ns+": "+r)
			}
		}
	}
	slices.Sort(d)
	return d
}

// The kernel's IPv4 neighbour table is one for every namespace, and each
// vWire needs an entry on either side: past gc_thresh3 (1024 by default)
// the kernel drops packets ("neighbor table overflow"), whatever vwire
// does. roomForNeighbours raises the thresholds, host-wide, for the
// duration of the test when the default would not hold n vWires; it puts
// the old values back at the end.
func roomForNeighbours(t *testing.T, n int) {
	t.Helper()
	need := 4*n + 1024
	for _, k := range []string{"gc_thresh3", "gc_thresh2"} {
		path := "/proc/sys/net/ipv4/neigh/default/" + k
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		old, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if old >= need {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(need)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s raised from %d to %d for %d vWires", k, old, need, n)
		t.Cleanup(func() { os.WriteFile(path, b, 0o644) })
	}
}
