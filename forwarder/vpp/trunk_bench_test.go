package vpp

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"google.golang.org/protobuf/proto"
)

// BenchmarkKernelScale builds VWIRE_KERNEL_VWIRES (default 1,000) KERNEL
// vWires at once (20 goroutines) on one VPP over the KERNEL trunk, of IP
// payload (VWIRE_KERNEL_PAYLOAD=ethernet: Ethernet, l2xc), pings a
// sample of them, and reports vWires/s, what each costs in memory (the
// host's MemAvailable, VPP's RSS) and the VLANs left after Close. Its
// memory figures are the host's, so other processes blur them: run it on
// a quiet machine.
//
//	VPP_BIN=... go test -run '^$' -bench KernelScale -benchtime 1x ./forwarder/vpp/
func BenchmarkKernelScale(b *testing.B) {
	needVPP(b)
	n := 1000
	if s := os.Getenv("VWIRE_KERNEL_VWIRES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxVLAN/2 {
			b.Fatalf("VWIRE_KERNEL_VWIRES=%q: want 1 to %d (two VLANs a vWire)", s, maxVLAN/2)
		}
		n = v
	}
	pl := payload.IP
	if os.Getenv("VWIRE_KERNEL_PAYLOAD") == "ethernet" {
		pl = payload.Ethernet
	}
	const workers = 20
	ctx := context.Background()
	dp := startNode(b, newNS(b, "node"), "")
	nsc, nse := newNS(b, "nsc"), newNS(b, "nse")
	addr := func(i, host int) string { return fmt.Sprintf("10.%d.%d.%d", 100+i/250, i%250, host) }
	var rate, memKB, rssKB float64
	for iter := range b.N {
		avail0, rss0 := memAvailableKB(b), rssKB0(b, dp)
		ids := make(chan int)
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed int
			last   error
		)
		start := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ids {
					cc := ipCtx(addr(i, 1), addr(i, 2))
					in := &networkservice.Connection{Mechanism: kernelMech(nsc.path, fmt.Sprintf("k%d", i)), Context: cc, Payload: pl}
					out := &networkservice.Connection{Mechanism: kernelMech(nse.path, fmt.Sprintf("k%d", i)), Context: proto.Clone(cc).(*networkservice.ConnectionContext), Payload: pl}
					if err := dp.Connect(ctx, fmt.Sprintf("ks-%d-%d", iter, i), in, out); err != nil {
						mu.Lock()
						failed, last = failed+1, err
						mu.Unlock()
					}
				}
			}()
		}
		for i := range n {
			ids <- i
		}
		close(ids)
		wg.Wait()
		took := time.Since(start)
		if failed > 0 {
			b.Fatalf("%d of %d KERNEL vWires failed; last: %v", failed, n, last)
		}
		rate = float64(n) / took.Seconds()
		memKB = float64(avail0-memAvailableKB(b)) / float64(n)
		rssKB = float64(rssKB0(b, dp)-rss0) / float64(n)
		for _, i := range []int{0, n / 3, n / 2, n - 1} {
			eventually(b, 20*time.Second, func() error {
				out, err := exec.Command("ip", "netns", "exec", nsc.name, "ping", "-c1", "-W1", addr(i, 2)).CombinedOutput()
				if err != nil {
					return fmt.Errorf("ping %s: %v: %s", addr(i, 2), err, out)
				}
				return nil
			})
		}
		b.Logf("%d KERNEL vWires (%s payload) up in %v (%.0f/s), %d VLANs in use, pinged a sample", n, pl, took.Round(time.Millisecond), rate, dp.trunk.inUse())
		for i := range n {
			if err := dp.Disconnect(ctx, fmt.Sprintf("ks-%d-%d", iter, i)); err != nil {
				b.Fatal(err)
			}
		}
		if got := dp.trunk.inUse(); got != 0 {
			b.Fatalf("%d VLANs in use after closing every vWire", got)
		}
	}
	b.ReportMetric(rate, "vwires/s")
	b.ReportMetric(memKB, "host-kB/vwire")
	b.ReportMetric(rssKB, "vpp-rss-kB/vwire")
	b.ReportMetric(0, "ns/op")
}

// memAvailableKB is the host's MemAvailable.
func memAvailableKB(t testing.TB) int64 {
	return procKB(t, "/proc/meminfo", "MemAvailable:")
}

// rssKB0 is the resident size of the dataplane's VPP.
func rssKB0(t testing.TB, d *Dataplane) int64 {
	d.mu.Lock()
	pid := d.proc.Pid()
	d.mu.Unlock()
	return procKB(t, fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
}

func procKB(t testing.TB, file, key string) int64 {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), key); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("%s: no %s", file, key)
	return 0
}
