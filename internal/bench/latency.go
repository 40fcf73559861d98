package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vwire/vwire/forwarder/kernel"
)

// Services and address ranges of the latency endpoints.
const (
	latencyService       = "bench-latency"
	latencyRemoteService = "bench-latency-remote"
)

// measureLatency times Request→vWire-up: from the client's Request to the
// manager's reply, which comes once both forwarders have built the vWire.
// Sequential: cfg.Sequential requests one after the other (each closed
// before the next); parallel: cfg.Parallel×cfg.Rounds Requests from
// cfg.Parallel clients, each sending its next as soon as its last is
// answered, the vWires left standing until all are up, then closed the
// same way (vsMesh: the rate is Requests over the time from the first
// sent to the last answered); remote: sequential through a second node
// (kernel VXLAN), each Close timed too. The baseline is the plain loop (kernel.PlainLoop): the
// netlink requests the kernel dataplane sends for a local vWire, the same
// pair between the same namespaces, sent from this process with nothing
// of vwire above them, one at a time and from as many workers; next to
// it, a plain veth pair made with netlink's Handle (create, address, up:
// less work than a vWire's pair).
func measureLatency(ctx context.Context, m *mesh, cfg Config, p *Progress) ([]Row, error) {
	const group = "latency"
	nscNS, err := m.w.Netns("lat-nsc")
	if err != nil {
		return nil, err
	}
	epNS, err := m.w.Netns("lat-nse")
	if err != nil {
		return nil, err
	}
	n1 := m.nodes[0]
	ep, err := m.startEndpoint(ctx, n1, epNS, "nse-lat", latencyService, "172.16.40.0/21")
	if err != nil {
		return nil, err
	}
	// A first vWire, checked with a ping, warms every cache on the path.
	conn, err := m.request(ctx, n1, nscNS, latencyService, "nsm-warm")
	if err != nil {
		return nil, err
	}
	dst, err := dstAddr(conn)
	if err == nil {
		err = pingUntilReply(ctx, nscNS, dst, 30*time.Second)
	}
	if cerr := m.closeConn(ctx, n1, conn); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("first vWire: %w", err)
	}

	var rows []Row
	// Sequential.
	p.Stage(fmt.Sprintf("latency: %d sequential Requests", cfg.Sequential), cfg.Sequential)
	nodeLog, epLog := logSize(n1.proc.Stderr), logSize(ep.proc.Stderr)
	seq, seqClose, windows, err := sequentialRequestCloses(ctx, m, n1, nscNS, latencyService, cfg.Sequential, p)
	if err != nil {
		return nil, err
	}
	if logLevel() == "debug" {
		rows = append(rows, tailFromLogs(group, n1.proc.Stderr, nodeLog, ep.proc.Stderr, epLog, windows)...)
	}
	r := latencyResult{parallel: cfg.Parallel, seq: vsRun{up: seq, down: seqClose}}
	p.Stage(fmt.Sprintf("latency: %d sequential plain loop pairs", cfg.Sequential), cfg.Sequential)
	if r.plainSeq, err = plainLoopRun(ctx, nscNS, epNS, "pl-s", cfg.Sequential, 1, p, nil, nil); err != nil {
		return nil, fmt.Errorf("plain loop: %w", err)
	}
	p.Stage(fmt.Sprintf("latency: %d sequential plain veths", cfg.Sequential), cfg.Sequential)
	if r.vethSeq, _, err = vethBaseline(ctx, nscNS, epNS, cfg.Sequential, 1, p, nil, nil); err != nil {
		return nil, err
	}

	// Parallel: as vpp-scale's kernel baseline counts (vsMesh), so that
	// the two rates are the same measure.
	total := cfg.Parallel * cfg.Rounds
	p.Stage(fmt.Sprintf("latency: %d Requests from %d clients", total, cfg.Parallel), 2*total)
	req := func(ctx context.Context, i int) (*networkservice.Connection, error) {
		return m.request(ctx, n1, nscNS, latencyService, fmt.Sprintf("nsm-p%d", i))
	}
	// Each process's CPU, the kernel's threads' and the machine's over
	// the Requests and over the Closes.
	cpu := newCPUWatch(m.w)
	var snaps [5]cpuSnap // Requests, Closes; then the plain loop's Connects
	var snapErr error
	snap := func(i int) func() {
		return func() {
			if snapErr == nil {
				snaps[i], snapErr = cpu.snap()
			}
		}
	}
	snap(0)()
	par, _, err := vsMesh(ctx, m, n1, total, cfg.Parallel, p, req, func() error { snap(1)(); return nil }, nil)
	if err != nil {
		return nil, err
	}
	snap(2)()
	r.par = par
	p.Stage(fmt.Sprintf("latency: %d plain loop pairs from %d workers", total, cfg.Parallel), 2*total)
	if r.plainPar, err = plainLoopRun(ctx, nscNS, epNS, "pl-p", total, cfg.Parallel, p, snap(3), snap(4)); err != nil {
		return nil, fmt.Errorf("plain loop: %w", err)
	}
	p.Stage(fmt.Sprintf("latency: %d plain veths from %d workers", total, cfg.Parallel), total)
	if r.vethPar, r.vethWall, err = vethBaseline(ctx, nscNS, epNS, total, cfg.Parallel, p, nil, nil); err != nil {
		return nil, err
	}
	if snapErr != nil {
		return nil, fmt.Errorf("CPU use: %w", snapErr)
	}
	rows = append(rows, latencyRows(group, r)...)
	wholeBase := 0.0
	if len(r.plainPar.up) > 0 {
		wholeBase = Millis(snaps[4].busy-snaps[3].busy-snaps[3].self.sub(snaps[3].procs[0]).total()) / float64(len(r.plainPar.up))
	}
	rows = append(rows, cpu.rows(group, fmt.Sprintf("%d parallel Requests", cfg.Parallel), snaps[0], snaps[1], len(par.up), wholeBase)...)
	rows = append(rows, cpu.rows(group, fmt.Sprintf("%d parallel Closes", cfg.Parallel), snaps[1], snaps[2], len(par.down), 0)...)
	// The plain loop's Connects: its netlink work is this process's
	// (system) and the kernel threads', next to node1's above.
	for _, row := range cpu.rows(group, fmt.Sprintf("plain loop's %d parallel Connects", cfg.Parallel), snaps[3], snaps[4], len(r.plainPar.up), 0) {
		if strings.Contains(row.Name, ": "+cpu.names[0]+",") || strings.HasSuffix(row.Name, ": kernel threads") {
			row.Name = strings.Replace(row.Name, ": "+cpu.names[0]+",", ": this process (the plain loop),", 1)
			rows = append(rows, row)
		}
	}

	// Remote, through node2.
	if len(m.nodes) > 1 {
		rNS, err := m.w.Netns("lat-nse-r")
		if err != nil {
			return nil, err
		}
		if _, err := m.startEndpoint(ctx, m.nodes[1], rNS, "nse-lat-r", latencyRemoteService, "172.16.48.0/21"); err != nil {
			return nil, err
		}
		p.Stage(fmt.Sprintf("latency: %d sequential remote Requests", cfg.Sequential), cfg.Sequential)
		rem, remClose, _, err := sequentialRequestCloses(ctx, m, n1, nscNS, latencyRemoteService, cfg.Sequential, p)
		if err != nil {
			return nil, err
		}
		rows = append(rows, percentileRows(group, "request→vWire-up, remote (vxlan), sequential", rem, "plain loop", r.plainSeq.up)...)
		rows = append(rows, percentileRows(group, "close, remote (vxlan), sequential", remClose, "request", rem)...)
	}
	p.Done()
	return rows, nil
}

// sequentialRequests times n Requests one after the other, closing each
// before the next.
func sequentialRequests(ctx context.Context, m *mesh, nd *node, ns *Netns, service string, n int, p *Progress) ([]time.Duration, error) {
	requests, _, _, err := sequentialRequestCloses(ctx, m, nd, ns, service, n, p)
	return requests, err
}

// sequentialRequestCloses is sequentialRequests, and times each Close too;
// windows are when each Request was sent and answered.
func sequentialRequestCloses(ctx context.Context, m *mesh, nd *node, ns *Netns, service string, n int, p *Progress) (requests, closes []time.Duration, windows []reqWindow, err error) {
	for i := range n {
		start := time.Now()
		conn, err := m.request(ctx, nd, ns, service, fmt.Sprintf("nsm-s%d", i))
		if err != nil {
			return nil, nil, nil, err
		}
		end := time.Now()
		requests = append(requests, end.Sub(start))
		windows = append(windows, reqWindow{start, end})
		start = time.Now()
		if err := m.closeConn(ctx, nd, conn); err != nil {
			return nil, nil, nil, err
		}
		closes = append(closes, time.Since(start))
		p.Step()
	}
	return requests, closes, windows, nil
}

// tailFromLogs is the sequential Requests' breakdown (tailRows) from
// node1's and the endpoint's logs past the given offsets, or a skipped row
// that says why there is none.
func tailFromLogs(group, nodeLog string, nodeOff int64, epLog string, epOff int64, windows []reqWindow) []Row {
	phases, err := func() ([]reqPhases, error) {
		node, err := logFrom(nodeLog, nodeOff)
		if err != nil {
			return nil, err
		}
		defer node.Close()
		ep, err := logFrom(epLog, epOff)
		if err != nil {
			return nil, err
		}
		defer ep.Close()
		return breakdown(node, ep, windows)
	}()
	if err != nil {
		return []Row{{Group: group, Name: "slowest 1% of local sequential Requests", Skipped: err.Error()}}
	}
	return tailRows(group, phases)
}

// vethBaseline times n plain veth pairs from a to b, parallel at a time:
// create with the peer in b, address both ends, set both up. It returns
// each pair's time and the time for all. Each worker has netlink sockets
// of its own, opened before the timing; the pairs are deleted after it.
// before and after, when set, are called right before and after the
// timed part.
func vethBaseline(ctx context.Context, a, b *Netns, n, parallel int, p *Progress, before, after func()) ([]time.Duration, time.Duration, error) {
	nsA, err := netns.GetFromName(a.Name)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", a.Label, err)
	}
	defer nsA.Close()
	nsB, err := netns.GetFromName(b.Name)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", b.Label, err)
	}
	defer nsB.Close()

	durs := make([]time.Duration, n)
	errs := make([]error, n)
	work := make(chan int)
	start := make(chan struct{})
	var wg sync.WaitGroup
	abort := func(err error) ([]time.Duration, time.Duration, error) {
		close(start)
		close(work)
		wg.Wait()
		return nil, 0, err
	}
	for range max(parallel, 1) {
		hA, err := netlink.NewHandleAt(nsA)
		if err != nil {
			return abort(err)
		}
		hB, err := netlink.NewHandleAt(nsB)
		if err != nil {
			hA.Delete()
			return abort(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer hA.Delete()
			defer hB.Delete()
			<-start
			for i := range work {
				name := fmt.Sprintf("vb%d", i)
				// 10.114.x.y/31 pairs, one per i.
				ipA := net.IPv4(10, 114, byte(i/128), byte(i%128*2))
				ipB := net.IPv4(10, 114, byte(i/128), byte(i%128*2+1))
				t0 := time.Now()
				errs[i] = plainVeth(hA, hB, nsB, name, ipA, ipB)
				durs[i] = time.Since(t0)
				p.Step()
			}
		}()
	}
	if before != nil {
		before()
	}
	t0 := time.Now()
	close(start)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(t0)
	if after != nil {
		after()
	}
	if err := deleteVeths(nsA, n); err != nil {
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	return durs, took, nil
}

// deleteVeths deletes the baseline's pairs vb0..vb<n-1> that exist.
func deleteVeths(ns netns.NsHandle, n int) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Delete()
	for i := range n {
		name := fmt.Sprintf("vb%d", i)
		if l, err := h.LinkByName(name); err == nil {
			if err := h.LinkDel(l); err != nil {
				return fmt.Errorf("delete %s: %w", name, err)
			}
		}
	}
	return nil
}

// plainVeth makes one veth pair named name in both namespaces, addressed
// and up.
func plainVeth(hA, hB *netlink.Handle, nsB netns.NsHandle, name string, ipA, ipB net.IP) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name, PeerNamespace: netlink.NsFd(int(nsB))}
	if err := hA.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	for _, side := range []struct {
		h  *netlink.Handle
		ip net.IP
	}{{hA, ipA}, {hB, ipB}} {
		l, err := side.h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := side.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: side.ip, Mask: net.CIDRMask(31, 32)}}); err != nil {
			return fmt.Errorf("address %s: %w", name, err)
		}
		if err := side.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", name, err)
		}
	}
	return nil
}

// latencyResult is what the latency group's local rows are made of:
// vwire's Requests and Closes, the plain loop's Connects and Disconnects
// (the same netlink requests without vwire), and plain veth pairs, one at
// a time and from parallel workers.
type latencyResult struct {
	parallel         int
	seq, plainSeq    vsRun // the walls of the sequential runs are not used
	par, plainPar    vsRun
	vethSeq, vethPar []time.Duration
	vethWall         time.Duration
}

// latencyRows are the local rows: each of vwire's next to the plain loop,
// and the plain loop's next to the plain veth.
func latencyRows(group string, r latencyResult) []Row {
	const plain, veth = "plain loop", "plain veth"
	var rows []Row
	rows = append(rows, percentileRows(group, "request→vWire-up, local, sequential", r.seq.up, plain, r.plainSeq.up)...)
	rows = append(rows, percentileRows(group, "plain loop (vwire's netlink requests), sequential", r.plainSeq.up, veth, r.vethSeq)...)
	rows = append(rows, percentileRows(group, "close, local, sequential", r.seq.down, "request", r.seq.up)...)
	rows = append(rows, percentileRows(group, "plain loop's close, sequential", r.plainSeq.down, "vwire's close", r.seq.down)...)
	name := fmt.Sprintf("local, %d parallel", r.parallel)
	rows = append(rows, percentileRows(group, "request→vWire-up, "+name, r.par.up, plain, r.plainPar.up)...)
	rows = append(rows, percentileRows(group, fmt.Sprintf("plain loop, %d parallel", r.parallel), r.plainPar.up, veth, r.vethPar)...)
	rows = append(rows,
		Row{Group: group, Name: fmt.Sprintf("vWires up per second, %d parallel", r.parallel),
			Value: r.par.upRate(), Unit: "/s", Samples: len(r.par.up)}.WithBaseline(plain, r.plainPar.upRate()),
		Row{Group: group, Name: fmt.Sprintf("plain loop pairs up per second, %d parallel", r.parallel),
			Value: r.plainPar.upRate(), Unit: "/s", Samples: len(r.plainPar.up)}.WithBaseline(veth, rate(len(r.vethPar), r.vethWall)))
	rows = append(rows, percentileRows(group, "close, "+name, r.par.down, "request", r.par.up)...)
	rows = append(rows,
		Row{Group: group, Name: fmt.Sprintf("vWires closed per second, %d parallel", r.parallel),
			Value: r.par.downRate(), Unit: "/s", Samples: len(r.par.down)}.WithBaseline("requests", r.par.upRate()),
		Row{Group: group, Name: fmt.Sprintf("plain loop pairs closed per second, %d parallel", r.parallel),
			Value: r.plainPar.downRate(), Unit: "/s", Samples: len(r.plainPar.down)}.WithBaseline("vwire's", r.par.downRate()))
	return rows
}

// plainLoopRun makes n pairs with the plain loop between a and b from
// parallel workers, as the latency group's vWires are made: one at a time
// (each disconnected before the next) when parallel is 1, else all
// connected first (vsMesh's pool), then all disconnected. before and
// after, when set, run right before and after the Connects. The pairs
// are deleted (the loop's reaper) before it returns.
func plainLoopRun(ctx context.Context, a, b *Netns, prefix string, n, parallel int, p *Progress, before, after func()) (vsRun, error) {
	var run vsRun
	l, err := kernel.NewPlainLoop(a.Path(), b.Path())
	if err != nil {
		return run, err
	}
	defer l.Close()
	pair := func(i int) kernel.PlainPair {
		// 10.115.x.y/32 pairs, one per i.
		ip := func(k int) netip.Prefix {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 115, byte(i / 128), byte(i%128*2 + k)}), 32)
		}
		return kernel.PlainPair{Name: fmt.Sprintf("%s%d", prefix, i), Client: ip(1), Endpoint: ip(0)}
	}
	made := make([]bool, n)
	defer func() {
		for i, m := range made {
			if m {
				_ = l.Disconnect(pair(i).Name)
			}
		}
	}()
	if parallel <= 1 {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return run, err
			}
			t0 := time.Now()
			if err := l.Connect(pair(i)); err != nil {
				return run, err
			}
			run.up = append(run.up, time.Since(t0))
			t0 = time.Now()
			if err := l.Disconnect(pair(i).Name); err != nil {
				return run, err
			}
			run.down = append(run.down, time.Since(t0))
			p.Step()
		}
		return run, nil
	}
	if before != nil {
		before()
	}
	run.up, run.upWall, err = pool(ctx, n, parallel, p, func(i int) error {
		err := l.Connect(pair(i))
		made[i] = err == nil
		return err
	})
	if after != nil {
		after()
	}
	if err != nil {
		return run, err
	}
	run.down, run.downWall, err = pool(ctx, n, parallel, p, func(i int) error {
		err := l.Disconnect(pair(i).Name)
		made[i] = false
		return err
	})
	return run, err
}
