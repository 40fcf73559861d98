package vpp

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"go.fd.io/govpp/binapi/memclnt"

	"github.com/vwire/vwire/mechanisms/memif"
)

// BenchmarkMemifConnectSteps measures where a local memif vWire's Connect
// spends its time on a real VPP (VPP_BIN; poll-sleep-usec 100 as `vwire
// bench`'s nodes, or VWIRE_POLL_SLEEP; VWIRE_SCALE_WORKERS workers): one
// Connect at a time, each followed by its Disconnect outside the timer,
// with VPP's event log tracing every API message (`event-logger trace
// api`), cleared before each Connect and read after it. It reports, as
// p50 over the Connects: the Connect (connect-us); per message, the time
// VPP's handler ran, barrier included (<msg>-vpp-us); all handlers of one
// Connect summed (vpp-busy-us); from the first message's start to the last
// one's end in VPP (vpp-span-us), and the longest stretch in between with
// no handler running (vpp-wait-us: VPP waiting for the next round trip);
// and VPP's CPU with one vWire standing and no call (vpp-idle-cpu-%: what
// the poll sleep saves).
// The sockets are abstract in a namespace of their own (what a workload's
// memif mechanism names: VPP creates each listener inside it) or files in
// the state directory.
func BenchmarkMemifConnectSteps(b *testing.B) {
	needVPP(b)
	for _, where := range []string{"abstract", "file"} {
		b.Run(where, func(b *testing.B) {
			dp := startNode(b, newNS(b, "node"), "", func(c *Config) {
				c.Workers, c.PollSleepUsec = scaleWorkers(b), pollSleep(b)
			})
			wl := newNS(b, "wl")
			mech := func(name string) *networkservice.Mechanism {
				if where == "file" {
					return memifMech(name + ".sock")
				}
				return memif.New(memif.Params{SocketFile: "@" + name, NetNSURL: "file://" + wl.path})
			}
			ctx := context.Background()
			vppCLI(b, dp, "event-logger resize 20000")
			vppCLI(b, dp, "event-logger trace api")
			var took, busy, span, wait []time.Duration
			handler := map[string][]time.Duration{}
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				vppCLI(b, dp, "event-logger clear")
				id := fmt.Sprintf("steps-%d", i)
				b.StartTimer()
				start := time.Now()
				err := dp.Connect(ctx, id, conn(mech(id+"-c"), payload.Ethernet), conn(mech(id+"-e"), payload.Ethernet))
				took = append(took, time.Since(start))
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				calls := elogCalls(vppCLI(b, dp, "show event-logger all"))
				if len(calls) == 0 {
					b.Fatal("VPP's event log holds no API message of the Connect")
				}
				var sum, gap time.Duration
				for k, c := range calls {
					handler[c.msg] = append(handler[c.msg], c.took())
					sum += c.took()
					if k > 0 {
						gap = max(gap, c.start-calls[k-1].end)
					}
				}
				busy, wait = append(busy, sum), append(wait, gap)
				span = append(span, calls[len(calls)-1].end-calls[0].start)
				if err := dp.Disconnect(ctx, id); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			// What the poll sleep buys: VPP's CPU with one vWire standing
			// and nothing asked of it (its memifs admin up, no workload).
			if err := dp.Connect(ctx, "steps-idle", conn(mech("steps-idle-c"), payload.Ethernet), conn(mech("steps-idle-e"), payload.Ethernet)); err != nil {
				b.Fatal(err)
			}
			cpu0, wall0 := vppCPU(b, dp), time.Now()
			time.Sleep(2 * time.Second)
			b.ReportMetric(100*float64(vppCPU(b, dp)-cpu0)/float64(time.Since(wall0)), "vpp-idle-cpu-%")
			if err := dp.Disconnect(ctx, "steps-idle"); err != nil {
				b.Fatal(err)
			}
			us := func(ds []time.Duration) float64 {
				slices.Sort(ds)
				return float64(quantile(ds, 0.5)) / 1e3
			}
			b.ReportMetric(us(took), "connect-us")
			b.ReportMetric(us(busy), "vpp-busy-us")
			b.ReportMetric(us(span), "vpp-span-us")
			b.ReportMetric(us(wait), "vpp-wait-us")
			for msg, ds := range handler {
				b.ReportMetric(us(ds), msg+"-vpp-us")
				b.ReportMetric(float64(len(ds))/float64(b.N), msg+"-calls")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// elogCall is one API message's handler run in VPP's event log, times
// from the log's start.
type elogCall struct {
	msg        string
	start, end time.Duration
}

func (c elogCall) took() time.Duration { return c.end - c.start }

var elogLine = regexp.MustCompile(`^\s*([0-9.]+):\s+api-msg(-done\([a-z-]+\))?:\s+(\S+)`)

// elogCalls reads `show event-logger` output: each API message's handler
// run (its start and done events), in order, leaving out the benchmark's
// own (the CLI, control pings).
func elogCalls(out string) []elogCall {
	var calls []elogCall
	var cur *elogCall
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		mm := elogLine.FindStringSubmatch(sc.Text())
		if mm == nil {
			continue
		}
		sec, err := strconv.ParseFloat(mm[1], 64)
		if err != nil {
			continue
		}
		at := time.Duration(sec * 1e9)
		switch {
		case mm[2] == "":
			cur = &elogCall{msg: mm[3], start: at}
		case cur != nil && cur.msg == mm[3]:
			cur.end = at
			if cur.msg != "cli_inband" && cur.msg != "control_ping" {
				calls = append(calls, *cur)
			}
			cur = nil
		}
	}
	return calls
}

// pollSleep is the poll-sleep-usec of these benchmarks' VPP:
// VWIRE_POLL_SLEEP, else 100 (what `vwire bench`'s nodes run).
func pollSleep(t testing.TB) int {
	t.Helper()
	v := os.Getenv("VWIRE_POLL_SLEEP")
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("VWIRE_POLL_SLEEP=%q: want 0 or more", v)
	}
	return n
}

// BenchmarkPipelineDepth times one pipelined round trip of n control
// pings on a real VPP (poll-sleep-usec 100, or VWIRE_POLL_SLEEP): what a
// round trip costs before any handler's work, and what each message adds.
func BenchmarkPipelineDepth(b *testing.B) {
	needVPP(b)
	dp := startNode(b, newNS(b, "node"), "", func(c *Config) {
		c.Workers, c.PollSleepUsec = scaleWorkers(b), pollSleep(b)
	})
	for _, n := range []int{1, 2, 4, 8, 12} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			calls := make([]pipelined, n)
			for i := range calls {
				calls[i] = pipelined{req: &memclnt.ControlPing{}, wrap: func(err error) error { return err }}
			}
			var took []time.Duration
			for range b.N {
				start := time.Now()
				if err := dp.vpp.pipeline(context.Background(), calls...); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(quantile(took, 0.5))/1e3, "p50-us")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkMemifCreateListener splits memif_create_v2's time in VPP (its
// handler, from the event log, p50) between the interface and its socket's
// listener: each memif made on a socket of its own (VPP creates the
// listener, inside the namespace for an abstract socket) against each made
// on one socket that already listens. Each memif (and its own socket) is
// removed before the next is made, as Connect and Disconnect go.
func BenchmarkMemifCreateListener(b *testing.B) {
	needVPP(b)
	dp := startNode(b, newNS(b, "node"), "", func(c *Config) {
		c.Workers, c.PollSleepUsec = scaleWorkers(b), pollSleep(b)
	})
	wl := newNS(b, "wl")
	ctx := context.Background()
	cl := dp.vpp
	vppCLI(b, dp, "event-logger resize 20000")
	vppCLI(b, dp, "event-logger trace api")
	sockName := func(kind string, i int) string {
		if kind == "file" {
			return fmt.Sprintf("%s/lst-%d.sock", dp.memifDir, i)
		}
		return fmt.Sprintf("abstract:lst-%d,netns_name=%s", i, wl.path)
	}
	if err := os.MkdirAll(dp.memifDir, 0o755); err != nil {
		b.Fatal(err)
	}
	seq := 0
	for _, kind := range []string{"abstract", "file"} {
		for _, shared := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/shared=%v", kind, shared), func(b *testing.B) {
				var socks []uint32
				var memifs []SwIfIndex
				defer func() {
					for _, m := range memifs {
						_ = cl.DeleteMemif(ctx, m)
					}
					for _, s := range socks {
						_ = cl.DeleteMemifSocket(ctx, s)
					}
				}()
				newSock := func() uint32 {
					seq++
					id, err := cl.CreateMemifSocket(ctx, sockName(kind, seq))
					if err != nil {
						b.Fatal(err)
					}
					socks = append(socks, id)
					return id
				}
				var sock uint32
				if shared {
					sock = newSock()
					m, err := cl.CreateMemif(ctx, MemifSpec{SocketID: sock, ID: 0})
					if err != nil {
						b.Fatal(err)
					}
					memifs = append(memifs, m)
				}
				var handler []time.Duration
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					spec := MemifSpec{SocketID: sock, ID: uint32(i + 1)}
					if !shared {
						spec = MemifSpec{SocketID: newSock()}
					}
					vppCLI(b, dp, "event-logger clear")
					b.StartTimer()
					m, err := cl.CreateMemif(ctx, spec)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					for _, c := range elogCalls(vppCLI(b, dp, "show event-logger all")) {
						if c.msg == "memif_create_v2" {
							handler = append(handler, c.took())
						}
					}
					// Removed at once, as a Disconnect would: the next
					// create reuses its nodes, as a Connect's does.
					if err := cl.DeleteMemif(ctx, m); err != nil {
						b.Fatal(err)
					}
					if !shared {
						if err := cl.DeleteMemifSocket(ctx, spec.SocketID); err != nil {
							b.Fatal(err)
						}
						socks = socks[:len(socks)-1]
					}
					b.StartTimer()
				}
				b.StopTimer()
				slices.Sort(handler)
				b.ReportMetric(float64(quantile(handler, 0.5))/1e3, "memif_create_v2-vpp-us")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// TestElogCalls reads VPP 25.10's `show event-logger` lines: each
// message's start and done paired, in order, the CLI and control pings
// left out, a done without its start skipped.
func TestElogCalls(t *testing.T) {
	out := `2000 of 20000 events in buffer, logger running
               4.240257126: api-msg-done(mp-safe): control_ping
               4.242086990: api-msg: memif_socket_filename_add_del_v2
               4.242254930: api-msg-done(barrier): memif_socket_filename_add_del_v2
               4.242255954: api-msg: memif_create_v2
               4.242578774: api-msg-done(barrier): memif_create_v2
               4.242600000: api-msg: cli_inband
               4.242700000: api-msg-done(barrier): cli_inband
               4.243075012: api-msg: sw_interface_tag_add_del
               4.243166201: api-msg-done(mp-safe): sw_interface_tag_add_del
`
	got := elogCalls(out)
	want := []struct {
		msg  string
		took time.Duration
	}{
		{"memif_socket_filename_add_del_v2", 167940 * time.Nanosecond},
		{"memif_create_v2", 322820 * time.Nanosecond},
		{"sw_interface_tag_add_del", 91189 * time.Nanosecond},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d calls %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		// The float seconds of the log round to a few ns.
		if d := got[i].took() - w.took; got[i].msg != w.msg || d < -10 || d > 10 {
			t.Errorf("call %d: %s took %v, want %s %v", i, got[i].msg, got[i].took(), w.msg, w.took)
		}
	}
}
