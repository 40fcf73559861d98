package kernel

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// BenchmarkConnectDisconnect builds local KERNEL↔KERNEL vWires (one veth
// pair from a client namespace to an endpoint namespace, see direct.go)
// and removes them, one at a time and 20 at a time: each round
// connects 20 vWires, then disconnects them. It reports the p50 and p99 of
// Connect and of Disconnect, each phase's rate, and the CPU time (user and
// system, which holds the kernel's work for our netlink calls) per vWire
// of each phase: on a shared machine the one figure that load does not
// move much.
//
// Run it as root: go test -run '^$' -bench ConnectDisconnect ./forwarder/kernel/
func BenchmarkConnectDisconnect(b *testing.B) {
	needRoot(b)
	for _, par := range []int{1, 20} {
		b.Run(fmt.Sprintf("parallel-%d", par), func(b *testing.B) {
			_, nodePath := netnsFor(b, "node")
			_, clientPath := netnsFor(b, "nsc")
			_, epPath := netnsFor(b, "nse")
			d := newDP(b, nodePath, "", 0)
			ctx := context.Background()
			if err := d.Start(ctx); err != nil { // as the forwarder does
				b.Fatal(err)
			}
			const round = 20
			var conns, discs []time.Duration
			var connWall, discWall, connCPU, discCPU time.Duration
			seq := 0
			for b.Loop() {
				ids := make([]string, round)
				for i := range ids {
					seq++
					ids[i] = fmt.Sprintf("bench-%d", seq)
				}
				phase := func(op func(i int, id string) error) ([]time.Duration, time.Duration, time.Duration) {
					took := make([]time.Duration, round)
					cpu0 := cpuTime(b)
					start := time.Now()
					var wg sync.WaitGroup
					sem := make(chan struct{}, par)
					for i, id := range ids {
						wg.Add(1)
						sem <- struct{}{}
						go func() {
							defer func() { <-sem; wg.Done() }()
							t0 := time.Now()
							if err := op(i, id); err != nil {
								b.Error(err)
							}
							took[i] = time.Since(t0)
						}()
					}
					wg.Wait()
					return took, time.Since(start), cpuTime(b) - cpu0
				}
				took, wall, cpu := phase(func(i int, id string) error {
					cc := ipContext(fmt.Sprintf("169.254.%d.%d", i, 1), fmt.Sprintf("169.254.%d.%d", i, 2))
					in := &networkservice.Connection{Mechanism: kernelMech(clientPath, fmt.Sprintf("nsc-%d", i)), Context: cc}
					out := &networkservice.Connection{Mechanism: kernelMech(epPath, fmt.Sprintf("nse-%d", i)), Context: cc}
					return d.Connect(ctx, id, in, out)
				})
				conns, connWall, connCPU = append(conns, took...), connWall+wall, connCPU+cpu
				took, wall, cpu = phase(func(_ int, id string) error { return d.Disconnect(ctx, id) })
				discs, discWall, discCPU = append(discs, took...), discWall+wall, discCPU+cpu
			}
			b.StopTimer()
			report := func(ds []time.Duration, wall, cpu time.Duration, name string) {
				slices.Sort(ds)
				ms := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Millisecond) }
				b.ReportMetric(ms(0.5), name+"-p50-ms")
				b.ReportMetric(ms(0.99), name+"-p99-ms")
				b.ReportMetric(float64(len(ds))/wall.Seconds(), name+"/s")
				b.ReportMetric(float64(cpu)/float64(len(ds))/float64(time.Millisecond), name+"-cpu-ms")
			}
			report(conns, connWall, connCPU, "connect")
			report(discs, discWall, discCPU, "disconnect")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
