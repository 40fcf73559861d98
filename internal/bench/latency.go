package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
// (kernel VXLAN). The baseline is a plain veth pair made with netlink
// between the same namespaces, addressed and up: the kernel's share of a
// vWire, done by hand.
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
	if _, err := m.startEndpoint(ctx, n1, epNS, "nse-lat", latencyService, "172.16.40.0/21"); err != nil {
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
	seq, seqClose, err := sequentialRequestCloses(ctx, m, n1, nscNS, latencyService, cfg.Sequential, p)
	if err != nil {
		return nil, err
	}
	p.Stage(fmt.Sprintf("latency: %d sequential plain veths", cfg.Sequential), cfg.Sequential)
	baseSeq, _, err := vethBaseline(ctx, nscNS, epNS, cfg.Sequential, 1, p, nil, nil)
	if err != nil {
		return nil, err
	}
	rows = append(rows, percentileRows(group, "request→vWire-up, local, sequential", seq, "plain veth", baseSeq)...)
	rows = append(rows, percentileRows(group, "close, local, sequential", seqClose, "request", seq)...)

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
	var snaps [5]cpuSnap // Requests, Closes; then the plain veths
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
	p.Stage(fmt.Sprintf("latency: %d plain veths from %d workers", total, cfg.Parallel), total)
	basePar, baseWall, err := vethBaseline(ctx, nscNS, epNS, total, cfg.Parallel, p, snap(3), snap(4))
	if err != nil {
		return nil, err
	}
	if snapErr != nil {
		return nil, fmt.Errorf("CPU use: %w", snapErr)
	}
	name := fmt.Sprintf("local, %d parallel", cfg.Parallel)
	rows = append(rows, percentileRows(group, "request→vWire-up, "+name, par.up, "plain veth", basePar)...)
	rows = append(rows, Row{Group: group, Name: fmt.Sprintf("vWires up per second, %d parallel", cfg.Parallel),
		Value: par.upRate(), Unit: "/s", Samples: len(par.up)}.
		WithBaseline("plain veth", rate(len(basePar), baseWall)))
	rows = append(rows, percentileRows(group, "close, "+name, par.down, "request", par.up)...)
	rows = append(rows, Row{Group: group, Name: fmt.Sprintf("vWires closed per second, %d parallel", cfg.Parallel),
		Value: par.downRate(), Unit: "/s", Samples: len(par.down)}.
		WithBaseline("requests", par.upRate()))
	wholeBase := 0.0
	if len(basePar) > 0 {
		wholeBase = Millis(snaps[4].busy-snaps[3].busy-snaps[3].self.sub(snaps[3].procs[0]).total()) / float64(len(basePar))
	}
	rows = append(rows, cpu.rows(group, fmt.Sprintf("%d parallel Requests", cfg.Parallel), snaps[0], snaps[1], len(par.up), wholeBase)...)
	rows = append(rows, cpu.rows(group, fmt.Sprintf("%d parallel Closes", cfg.Parallel), snaps[1], snaps[2], len(par.down), 0)...)

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
		rem, err := sequentialRequests(ctx, m, n1, nscNS, latencyRemoteService, cfg.Sequential, p)
		if err != nil {
			return nil, err
		}
		rows = append(rows, percentileRows(group, "request→vWire-up, remote (vxlan), sequential", rem, "plain veth", baseSeq)...)
	}
	p.Done()
	return rows, nil
}

// sequentialRequests times n Requests one after the other, closing each
// before the next.
func sequentialRequests(ctx context.Context, m *mesh, nd *node, ns *Netns, service string, n int, p *Progress) ([]time.Duration, error) {
	requests, _, err := sequentialRequestCloses(ctx, m, nd, ns, service, n, p)
	return requests, err
}

// sequentialRequestCloses is sequentialRequests, and times each Close too.
func sequentialRequestCloses(ctx context.Context, m *mesh, nd *node, ns *Netns, service string, n int, p *Progress) (requests, closes []time.Duration, err error) {
	for i := range n {
		start := time.Now()
		conn, err := m.request(ctx, nd, ns, service, fmt.Sprintf("nsm-s%d", i))
		if err != nil {
			return nil, nil, err
		}
		requests = append(requests, time.Since(start))
		start = time.Now()
		if err := m.closeConn(ctx, nd, conn); err != nil {
			return nil, nil, err
		}
		closes = append(closes, time.Since(start))
		p.Step()
	}
	return requests, closes, nil
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
