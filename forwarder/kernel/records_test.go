package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestRestartRemovesUnclaimedPairs: local pairs (nothing of them in the
// forwarder's namespace) outlive a forwarder that stops without closing
// them, as a crash would. The next run, on the same state directory, keeps
// the pair whose connection is refreshed and, after the grace, deletes the
// others: one whose Close never came, one the reaper had not deleted yet
// (down, in its group), one whose namespace's recorded path names no
// namespace any more (found by its identity), and forgets the record of one
// whose namespace went (the pair went with it).
func TestRestartRemovesUnclaimedPairs(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, nodePath := netnsFor(t, "node")
	client, clientPath := netnsFor(t, "nsc")
	ep, epPath := netnsFor(t, "nse")
	epGone, epGonePath := netnsFor(t, "nse")
	moved, movedPath := netnsFor(t, "nse")
	// A path of its own for the last namespace (as /proc/<pid>/fd/<n> is
	// for a workload's), which will name nothing after the restart.
	bind := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(bind, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(movedPath, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(bind, unix.MNT_DETACH)
		}
	}()
	state := t.TempDir()
	open := func(grace time.Duration) *Dataplane {
		d, err := New(Config{NetNSPath: nodePath, Grace: grace, WireGuard: WireGuardOff, StateDir: state})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	conns := func(i int, clientPath, epPath string) (*networkservice.Connection, *networkservice.Connection) {
		cc := ipContext(fmt.Sprintf("169.254.17.%d", 4*i+1), fmt.Sprintf("169.254.17.%d", 4*i+2))
		return &networkservice.Connection{Mechanism: kernelMech(clientPath, fmt.Sprintf("nsm-c%d", i)), Context: cc},
			&networkservice.Connection{Mechanism: kernelMech(epPath, fmt.Sprintf("nsm-e%d", i)), Context: cc}
	}
	ids := []string{"conn-live", "conn-gone", "conn-closing", "conn-nsgone", "conn-moved"}
	// Both ends of the last pair in the namespace that only its identity
	// will find.
	clients := []string{clientPath, clientPath, clientPath, clientPath, bind}
	eps := []string{epPath, epPath, epPath, epGonePath, bind}
	d1 := open(time.Hour)
	for i, id := range ids {
		in, out := conns(i, clients[i], eps[i])
		if err := d1.Connect(ctx, id, in, out); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	// The state a Close the reaper had not finished leaves.
	run(t, "ip", "-n", client, "link", "set", "nsm-c2", "down", "group", fmt.Sprint(reapGroup))
	d1.Close() // no Disconnect: as if it had crashed
	run(t, "ip", "netns", "del", epGone)
	if err := unix.Unmount(bind, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if n := recordCount(t, d1.recs.dir); n != len(ids) {
		t.Fatalf("%d pair records after the stop, want %d", n, len(ids))
	}

	d2 := open(time.Second)
	defer d2.Close()
	if err := d2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	in, out := conns(0, clientPath, epPath)
	if err := d2.Connect(ctx, "conn-live", in, out); err != nil {
		t.Fatalf("refresh after the restart: %v", err)
	}
	// The grace's end: the removal runs in the background.
	for deadline := time.Now().Add(time.Minute); recordCount(t, d2.recs.dir) > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("pair records left a minute after a grace of a second: %d", recordCount(t, d2.recs.dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ns := range []string{client, ep, moved} {
		got := links(t, ns)
		for _, id := range ids[1:] {
			if strings.Contains(got, "vwire/wl/"+id) { // no id is a prefix of another
				t.Errorf("%s: the unclaimed pair of %s is still there:\n%s", ns, id, got)
			}
		}
		if ns != moved && !strings.Contains(got, "vwire/wl/conn-live") {
			t.Errorf("%s: the refreshed pair went:\n%s", ns, got)
		}
	}
	if err := ping(client, "169.254.17.2"); err != nil {
		t.Fatalf("the refreshed pair after the grace: %v", err)
	}
	if err := d2.Disconnect(ctx, "conn-live"); err != nil {
		t.Fatal(err)
	}
	d2.reap.flush()
	if n := recordCount(t, d2.recs.dir); n != 0 {
		t.Fatalf("%d pair records after the last Close", n)
	}
	for _, ns := range []string{client, ep} {
		if got := links(t, ns); strings.Contains(got, "vwire/") {
			t.Fatalf("%s: links left:\n%s", ns, got)
		}
	}
}

func recordCount(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.pair"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// BenchmarkPairRecord is what a local vWire's record costs its Connect
// (write) and, off the caller's path, its Close (the reaper's removal).
func BenchmarkPairRecord(b *testing.B) {
	recs, err := openRecords(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	ns, err := netns.Get()
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	h := &pairHandles{inNS: ns, outNS: ns}
	p := directPair{in: vethSpec{name: "nsm-c", netns: "file:///proc/1234/fd/56"}, out: vethSpec{name: "nsm-e", netns: "file:///proc/1234/fd/57"}}
	var writes, removes []time.Duration
	for b.Loop() {
		t0 := time.Now()
		path, err := recs.write("0f8b1c9e-6a43-4d8e-9a51-3b2f7c0d4e21", h, p)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := removeRecord(path); err != nil {
			b.Fatal(err)
		}
		writes, removes = append(writes, t1.Sub(t0)), append(removes, time.Since(t1))
	}
	for name, ds := range map[string][]time.Duration{"write": writes, "remove": removes} {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Microsecond), name+"-p50-µs")
	}
}
