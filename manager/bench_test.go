package manager_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"

	"github.com/vwire/vwire/test/sandbox"
)

// refreshOf is the request an NSM client sends to refresh conn.
func refreshOf(conn *networkservice.Connection) *networkservice.NetworkServiceRequest {
	return &networkservice.NetworkServiceRequest{Connection: conn, MechanismPreferences: request("", nil).MechanismPreferences}
}

// benchRequest measures Request→reply (and the Close after it) through a
// manager and forwarder on the recording dataplane to an icmp-responder.
func benchRequest(b *testing.B, remote bool) {
	sb := sandbox.New(b, sandbox.Options{Nodes: 2})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	node := sb.Nodes[0]
	if remote {
		node = sb.Nodes[1]
	}
	node.ServeICMPResponder("icmp", nil, "icmp")
	cli := sb.Nodes[0].Client("nsc")
	// One deadline for every sub-benchmark's calls: thousands of them on
	// a loaded machine take minutes, not ctxT's one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	b.Cleanup(cancel)
	b.Run("sequential", func(b *testing.B) {
		var reqs, closes []time.Duration
		var reqCPU, closeCPU time.Duration
		cpu0 := processCPU(b)
		for b.Loop() {
			c0, t0 := processCPU(b), time.Now()
			conn, err := cli.Request(ctx, request("icmp", nil))
			if err != nil {
				b.Fatal(err)
			}
			c1, t1 := processCPU(b), time.Now()
			if _, err := cli.Close(ctx, conn); err != nil {
				b.Fatal(err)
			}
			reqs, closes = append(reqs, t1.Sub(t0)), append(closes, time.Since(t1))
			reqCPU, closeCPU = reqCPU+c1-c0, closeCPU+processCPU(b)-c1
		}
		// The whole chain's CPU (client, managers, forwarders, endpoint,
		// registry: one process) per Request+Close and per call (what
		// the process did while the call was in flight); per component
		// with -cpuprofile and go tool pprof -tags (see sandbox), or
		// per component and call with the phases run.
		n := float64(len(reqs))
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Millisecond)/n, "cpu-ms/op")
		b.ReportMetric(float64(reqCPU)/float64(time.Millisecond)/n, "req-cpu-ms")
		b.ReportMetric(float64(closeCPU)/float64(time.Millisecond)/n, "close-cpu-ms")
		b.ReportMetric(percentile(reqs, 50), "req-p50-ms")
		b.ReportMetric(percentile(closes, 50), "close-p50-ms")
	})
	// phases: the Requests first (b.Loop times them), then the Closes of
	// the same connections, so that each kind of call has its own CPU
	// figure and, with -args -phaseprofile DIR, its own CPU profile
	// (DIR/<benchmark>-request.pprof, -close.pprof; split per hop with go
	// tool pprof -tags). The connections stay open until their Closes:
	// the remote chain's watch of the peer manager opens once here, where
	// sequential opens it per connection unless it stays open.
	b.Run("phases", func(b *testing.B) {
		var conns []*networkservice.Connection
		var reqs, closes []time.Duration
		stop := startPhaseProfile(b, "request")
		cpu0 := processCPU(b)
		for b.Loop() {
			t0 := time.Now()
			conn, err := cli.Request(ctx, request("icmp", nil))
			if err != nil {
				b.Fatal(err)
			}
			reqs, conns = append(reqs, time.Since(t0)), append(conns, conn)
		}
		reqCPU := processCPU(b) - cpu0
		stop()
		stop = startPhaseProfile(b, "close")
		cpu0 = processCPU(b)
		for _, conn := range conns {
			t0 := time.Now()
			if _, err := cli.Close(ctx, conn); err != nil {
				b.Fatal(err)
			}
			closes = append(closes, time.Since(t0))
		}
		closeCPU := processCPU(b) - cpu0
		stop()
		n := float64(len(reqs))
		b.ReportMetric(float64(reqCPU)/float64(time.Millisecond)/n, "req-cpu-ms")
		b.ReportMetric(float64(closeCPU)/float64(time.Millisecond)/n, "close-cpu-ms")
		b.ReportMetric(percentile(reqs, 50), "req-p50-ms")
		b.ReportMetric(percentile(closes, 50), "close-p50-ms")
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				conn, err := cli.Request(ctx, request("icmp", nil))
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := cli.Close(ctx, conn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("refresh", func(b *testing.B) {
		conn, err := cli.Request(ctx, request("icmp", nil))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if conn, err = cli.Request(ctx, refreshOf(conn)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLocalRequest(b *testing.B)  { benchRequest(b, false) }
func BenchmarkRemoteRequest(b *testing.B) { benchRequest(b, true) }

// BenchmarkThousandClients: 1,000 clients, each with its own identity and
// connection to the manager, request at once on one node (recording
// dataplane, a local icmp-responder), then close at once. A first round,
// 20 at a time, connects the clients; the second, all at once, is measured: all must be up, and it
// reports Request and Close p50 and p99 and p99/p50. After the Closes the
// process must be back to its goroutines and descriptors from before the
// round.
//
// go test -run '^$' -bench ThousandClients -benchtime 1x ./manager/
func BenchmarkThousandClients(b *testing.B) {
	const n = 1000
	sb := sandbox.New(b, sandbox.Options{Nodes: 1})
	sb.RegisterService(&regapi.NetworkService{Name: "icmp"})
	sb.Nodes[0].ServeICMPResponder("icmp", nil, "icmp")
	clients := make([]*sandbox.Client, n)
	for i := range clients {
		clients[i] = sb.Nodes[0].Client(fmt.Sprintf("nsc-%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// round requests on every client, par at a time, then closes them the
	// same way.
	round := func(par int) (reqs, closes []time.Duration) {
		reqs, closes = make([]time.Duration, n), make([]time.Duration, n)
		conns := make([]*networkservice.Connection, n)
		all := func(f func(i int) error, took []time.Duration) {
			start := make(chan struct{})
			sem := make(chan struct{}, par)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					sem <- struct{}{}
					defer func() { <-sem }()
					t0 := time.Now()
					if err := f(i); err != nil {
						b.Errorf("client %d: %v", i, err)
					}
					took[i] = time.Since(t0)
				}()
			}
			close(start)
			wg.Wait()
		}
		all(func(i int) (err error) {
			conns[i], err = clients[i].Request(ctx, request("icmp", nil))
			return err
		}, reqs)
		if b.Failed() {
			b.FailNow()
		}
		if got := len(sb.Nodes[0].Dataplane.Live()); got != n {
			b.Fatalf("%d vWires up, want %d", got, n)
		}
		all(func(i int) error { _, err := clients[i].Close(ctx, conns[i]); return err }, closes)
		return reqs, closes
	}
	round(20) // every client connects to the manager
	settle := func() (int, int) {
		runtime.GC()
		return runtime.NumGoroutine(), openFDs(b)
	}
	goroutines, fds := settle()
	for b.Loop() {
		reqs, closes := round(n)
		b.StopTimer()
		for _, m := range []struct {
			name string
			ds   []time.Duration
		}{{"req", reqs}, {"close", closes}} {
			slices.Sort(m.ds)
			p50, p99 := m.ds[n/2], m.ds[n*99/100]
			b.ReportMetric(float64(p50)/float64(time.Millisecond), m.name+"-p50-ms")
			b.ReportMetric(float64(p99)/float64(time.Millisecond), m.name+"-p99-ms")
			b.ReportMetric(float64(p99)/float64(p50), m.name+"-p99/p50")
		}
		b.StartTimer()
	}
	b.StopTimer()
	if got := len(sb.Nodes[0].Dataplane.Live()); got != 0 {
		b.Fatalf("%d vWires left after Close", got)
	}
	// What the round started ends with it (allowing for the runtime's own
	// goroutines to come and go).
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := settle()
		if g <= goroutines+2 && f <= fds {
			b.ReportMetric(float64(g-goroutines), "goroutines-left")
			b.ReportMetric(float64(f-fds), "fds-left")
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after Close: %d goroutines (%d before), %d descriptors (%d before)", g, goroutines, f, fds)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var phaseProfile = flag.String("phaseprofile", "", "directory where the phases benchmarks write a CPU profile of their Requests and one of their Closes")

// startPhaseProfile starts the CPU profile of one phase of b when
// -phaseprofile is set; the returned func stops it.
func startPhaseProfile(b *testing.B, phase string) (stop func()) {
	if *phaseProfile == "" {
		return func() {}
	}
	name := strings.NewReplacer("/", "-", " ", "_").Replace(b.Name()) + "-" + phase + ".pprof"
	f, err := os.Create(filepath.Join(*phaseProfile, name))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatalf("%s (not together with -cpuprofile): %v", name, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// percentile returns the p-th percentile of ds in milliseconds.
func percentile(ds []time.Duration, p int) float64 {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[len(ds)*p/100]) / float64(time.Millisecond)
}

// processCPU is the CPU time (user and system) the process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func openFDs(tb testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents)
}
