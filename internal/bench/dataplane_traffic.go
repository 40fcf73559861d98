package bench

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.fd.io/govpp/binapi/vlib"
)

// Traffic: the packet generator's trials, and latency under load.

// LatencyLoads are the shares of NDR latency is measured at.
var LatencyLoads = []float64{0.1, 0.5, 0.9}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// latency pings path's sink from its source LatencyPings times while the
// packet generator sends frames of f at load × ndr, and returns the
// round-trip times' percentiles. VPP's ping times each echo in its main
// loop: the figures include the traffic VPP's own turnaround.
func (e *dpEnv) latency(ctx context.Context, path *dpPath, f FrameSize, load, ndr float64) (LatencyResult, error) {
	l := LatencyResult{Load: load, Rate: load * ndr, Sent: e.cfg.LatencyPings}
	interval := dpPingInterval
	d := time.Duration(e.cfg.LatencyPings)*interval + time.Second
	if l.Rate > 0 {
		names, err := e.streams(ctx, path, f, l.Rate, d)
		defer e.deleteStreams(ctx, names)
		if err != nil {
			return l, err
		}
		if err := e.enableStreams(ctx, true); err != nil {
			return l, err
		}
		defer func() { _ = e.enableStreams(context.WithoutCancel(ctx), false) }()
	}
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	vc := vlib.NewServiceClient(e.traffic.conn)
	reply, err := vc.CliInband(cctx, &vlib.CliInband{Cmd: fmt.Sprintf("ping %s repeat %d interval %.3f",
		path.pingTo, e.cfg.LatencyPings, interval.Seconds())})
	if err != nil {
		return l, fmt.Errorf("traffic VPP: ping: %w", err)
	}
	var rtts []time.Duration
	for _, m := range pingTime.FindAllStringSubmatch(reply.Reply, -1) {
		ms, err := strconv.ParseFloat(m[1], 64)
		if err == nil {
			rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	l.Received = len(rtts)
	l.P50, l.P99 = Percentile(rtts, 50), Percentile(rtts, 99)
	return l, nil
}

// warmUp sends small bursts until frames arrive: the memifs connect, the
// uplink resolves its neighbour, WireGuard makes its handshake.
func (e *dpEnv) warmUp(ctx context.Context, path *dpPath) error {
	return poll(ctx, dpWarmup, func() error {
		r, err := e.send(ctx, path, FrameSize{Bytes: minFrame}, 1000, 200*time.Millisecond)
		if err != nil {
			return permanent{err}
		}
		if r.Received == 0 {
			return fmt.Errorf("no frames arrived from %s at %s", path.src, path.dst)
		}
		return nil
	})
}

// trial sends frames of f at pps (0: unthrottled) for the trial's length.
func (e *dpEnv) trial(ctx context.Context, path *dpPath, f FrameSize, pps float64) (TrialResult, error) {
	return e.send(ctx, path, f, pps, e.cfg.TrialDuration)
}

var (
	pgStreamLine = regexp.MustCompile(`(?m)^\s*(bdp\d+)\s+(Yes|No)\s+(\d+)`)
	rxPacketsRe  = regexp.MustCompile(`rx packets\s+(\d+)`)
)

// send runs the packet generator on path.src for d, with the streams of
// f (Streams) at pps between them, and counts what arrived on path.dst.
func (e *dpEnv) send(ctx context.Context, path *dpPath, f FrameSize, pps float64, d time.Duration) (TrialResult, error) {
	t := e.traffic
	res := TrialResult{Rate: pps}
	names, err := e.streams(ctx, path, f, pps, d)
	defer e.deleteStreams(ctx, names)
	if err != nil {
		return res, err
	}
	before, err := e.rx(ctx, path.dst)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := e.enableStreams(ctx, true); err != nil {
		return res, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if err := e.enableStreams(context.WithoutCancel(ctx), false); err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	out, err := t.cli(ctx, "show packet-generator")
	if err != nil {
		return res, err
	}
	for _, m := range pgStreamLine.FindAllStringSubmatch(out, -1) {
		if slices.Contains(names, m[1]) {
			n, _ := strconv.ParseUint(m[3], 10, 64)
			res.Sent += n
		}
	}
	time.Sleep(dpSettle)
	after, err := e.rx(ctx, path.dst)
	if err != nil {
		return res, err
	}
	res.Received = after - before
	res.Offered = float64(res.Sent) / elapsed.Seconds()
	return res, nil
}

// streams defines the packet generator's streams of f at pps for d on
// path (Streams), disabled, and returns their names (also those made when
// it fails, for deleteStreams).
func (e *dpEnv) streams(ctx context.Context, path *dpPath, f FrameSize, pps float64, d time.Duration) ([]string, error) {
	var names []string
	for _, s := range Streams(f, pps) {
		e.seq++
		name := fmt.Sprintf("bdp%d", e.seq)
		if _, err := e.traffic.cli(ctx, pgStream(name, path.src, path.to, path.ip, s.Bytes, s.Rate, d)); err != nil {
			return names, err
		}
		names = append(names, name)
	}
	return names, nil
}

// enableStreams starts (or stops) every stream of the packet generator at
// once: the bench defines only the streams of one trial at a time, and
// VPP's enable-stream, given several names, enables only the last one.
func (e *dpEnv) enableStreams(ctx context.Context, on bool) error {
	cmd := "packet-generator enable-stream"
	if !on {
		cmd = "packet-generator disable-stream"
	}
	_, err := e.traffic.cli(ctx, cmd)
	return err
}

func (e *dpEnv) deleteStreams(ctx context.Context, names []string) {
	for _, n := range names {
		_, _ = e.traffic.cli(context.WithoutCancel(ctx), "packet-generator delete "+n)
	}
}

func (e *dpEnv) rx(ctx context.Context, ifname string) (uint64, error) {
	out, err := e.traffic.cli(ctx, "show interface "+ifname)
	if err != nil {
		return 0, err
	}
	m := rxPacketsRe.FindStringSubmatch(out)
	if m == nil {
		return 0, nil
	}
	return strconv.ParseUint(m[1], 10, 64)
}

// pgStream is the packet generator's definition of a stream of UDP frames
// of frame bytes to dst at pps for d (unthrottled and unlimited when pps
// is 0): Ethernet frames straight out of ifname, or for an IP-mode memif
// IP packets into ip4-input, routed out of ifname. The FCS is counted in
// frame but not sent; on an IP-mode memif the 14-byte Ethernet header
// goes too.
func pgStream(name, ifname string, dst netip.Addr, ip bool, frame int, pps float64, d time.Duration) string {
	size := frame - 4
	ipLen := size - 14
	if ip {
		size = ipLen
	}
	var b strings.Builder
	fmt.Fprintf(&b, "packet-generator new {\n  name %s\n", name)
	if pps > 0 {
		limit := max(uint64(pps*d.Seconds()+0.5), 1)
		fmt.Fprintf(&b, "  limit %d\n  rate %.0f\n", limit, max(pps, 1))
	} else {
		b.WriteString("  limit -1\n")
	}
	fmt.Fprintf(&b, "  size %d-%d\n", size, size)
	if ip {
		b.WriteString("  interface pg0\n  node ip4-input\n  data {\n")
	} else {
		fmt.Fprintf(&b, "  node %s-output\n  data {\n", ifname)
		b.WriteString("    IP4: 02:fe:00:00:00:01 -> 02:fe:00:00:00:02\n")
	}
	fmt.Fprintf(&b, "    UDP: %s -> %s\n    UDP: 1234 -> 5678\n    length %d\n    incrementing 1\n  }\n}", dpClient, dst, ipLen-20)
	return b.String()
}
