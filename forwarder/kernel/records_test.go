package kernel

import (
	"context"
	"encoding/json"
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

	"github.com/vwire/vwire/internal/recordlog"
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

// recordCount is the number of live records in dir's log, as the next run
// would read them.
func recordCount(t *testing.T, dir string) int {
	t.Helper()
	recs, err := recordlog.Read(dir, recordLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := parseRecord(r.Data); err != nil {
			t.Fatalf("pair record %d: %v", r.Key, err)
		}
	}
	return len(recs)
}

// BenchmarkPairRecord is what a local vWire's record costs its Connect
// (write) and, off the caller's path, its Close (the reaper's removal).
func BenchmarkPairRecord(b *testing.B) {
	recs, err := openRecords(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	defer recs.close()
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
		if err := recs.remove(path); err != nil {
			b.Fatal(err)
		}
		writes, removes = append(writes, t1.Sub(t0)), append(removes, time.Since(t1))
	}
	for name, ds := range map[string][]time.Duration{"write": writes, "remove": removes} {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Microsecond), name+"-p50-µs")
	}
}

// TestPairRecordLog: the records' log as the next run reads it. Dropped
// records stay dropped, keys are not reused across runs, a torn last line
// (a host that stopped mid-write) is skipped quietly while a bad line
// elsewhere is reported, records in files of their own (written by runs
// before the log) join the log and their files go, and the log is
// rewritten once dropped lines outnumber live ones. One forwarder at a
// time keeps them.
func TestPairRecordLog(t *testing.T) {
	state := t.TempDir()
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h := &pairHandles{inNS: ns, outNS: ns}
	pair := func(i int) directPair {
		return directPair{in: vethSpec{name: fmt.Sprintf("nsm-c%d", i), netns: "file:///proc/1/fd/5"}, out: vethSpec{name: fmt.Sprintf("nsm-e%d", i), netns: "file:///proc/1/fd/6"}}
	}
	open := func() *records {
		t.Helper()
		r, err := openRecords(state, "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ids := func(r *records) []string {
		t.Helper()
		recs, err := r.list()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rec := range recs {
			got = append(got, rec.ID+"/"+rec.Ends[0].Name+"/"+rec.Ends[1].Name)
		}
		slices.Sort(got)
		return got
	}

	r := open()
	if _, err := openRecords(state, ""); err == nil || !strings.Contains(err.Error(), "another forwarder") {
		t.Fatalf("a second forwarder on the same records: err %v", err)
	}
	keys := map[string]bool{}
	var first string
	for i := range 3 {
		key, err := r.write(fmt.Sprintf("conn-%d", i), h, pair(i))
		if err != nil {
			t.Fatal(err)
		}
		keys[key] = true
		if i == 0 {
			first = key
		}
	}
	if len(keys) != 3 {
		t.Fatalf("keys %v: want 3 distinct", keys)
	}
	recs, _ := r.list()
	if len(recs) != 0 {
		t.Fatalf("a new log lists %d records of a previous run", len(recs))
	}
	if err := r.remove(first); err != nil {
		t.Fatal(err)
	}
	if err := r.remove(first); err != nil { // twice is fine
		t.Fatal(err)
	}
	dropped := "conn-0/nsm-c0/nsm-e0"
	r.close()

	r = open()
	if got := ids(r); len(got) != 2 || slices.Contains(got, dropped) {
		t.Fatalf("after a restart: %v, want the two of the three but %s", got, dropped)
	}
	key, err := r.write("conn-3", h, pair(3))
	if err != nil {
		t.Fatal(err)
	}
	if keys[key] {
		t.Fatalf("key %s of the previous run given again", key)
	}
	r.close()

	// A legacy record file, a torn last line.
	log := filepath.Join(r.dir, recordLog+".log")
	legacy := filepath.Join(r.dir, "abc-1.pair")
	if err := os.WriteFile(legacy, []byte(`{"id":"conn-old","ends":[{"name":"a","netns":"/x","dev":1,"ino":2},{"name":"b","netns":"/y","dev":1,"ino":3}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`+99 {"id":"conn-torn","en`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r = open()
	got := ids(r)
	if len(got) != 4 || !slices.Contains(got, "conn-old/a/b") || !slices.Contains(got, "conn-3/nsm-c3/nsm-e3") {
		t.Fatalf("with a legacy file and a torn line: %v", got)
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Fatalf("the legacy record file stays: %v", err)
	}
	r.close()

	// A bad line that is not the last one is reported (and dropped).
	f, err = os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("+100 {not json\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r = open()
	if recs, err := r.list(); err == nil || !strings.Contains(err.Error(), "pair record 100") || len(recs) != 4 {
		t.Fatalf("a bad line: %d records (want 4), err %v", len(recs), err)
	}

	// Many vWires come and go: the log stays the size of the live ones.
	for i := range 3 * recordlog.CompactAfter {
		key, err := r.write(fmt.Sprintf("churn-%d", i), h, pair(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.remove(key); err != nil {
			t.Fatal(err)
		}
	}
	r.close()
	st, err := os.Stat(log)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(pairRecord{ID: "churn-1000", Ends: []recordEnd{{Name: "nsm-c1000", Path: "file:///proc/1/fd/5"}, {Name: "nsm-e1000", Path: "file:///proc/1/fd/6"}}})
	line := "+1000 " + string(rec) + "\n"
	if max := int64(2*recordlog.CompactAfter+8) * int64(len(line)); st.Size() > max {
		t.Fatalf("log of %d bytes after %d vWires came and went, want at most %d", st.Size(), 3*recordlog.CompactAfter, max)
	}
	if n := recordCount(t, r.dir); n != 4 {
		t.Fatalf("%d live records after the churn, want 4", n)
	}
}

// TestPairRecordLogUpgrade: a pairs.log written by the forwarder before it
// kept its records with internal/recordlog (testdata, made by that code:
// three pairs recorded, keys from 0, the second dropped) is read by this
// one in place: both live records are listed, under keys that stay theirs
// across a restart, can be dropped, and are not given again.
func TestPairRecordLogUpgrade(t *testing.T) {
	old, err := os.ReadFile("testdata/pairs-before-recordlog.log")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	r, err := openRecords(state, "")
	if err != nil {
		t.Fatal(err)
	}
	r.close()
	if err := os.WriteFile(filepath.Join(r.dir, recordLog+".log"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	listed := func() map[string]string { // id -> key
		t.Helper()
		r, err = openRecords(state, "")
		if err != nil {
			t.Fatal(err)
		}
		recs, err := r.list()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, rec := range recs {
			if rec.Ends[0].Name != "nsm-c"+rec.ID[5:] || rec.Ends[1].Path != "file:///proc/1/fd/6" {
				t.Fatalf("record %+v read wrong", rec)
			}
			if !r.has(rec.key) {
				t.Fatalf("record %s listed under key %q, which is not live", rec.ID, rec.key)
			}
			got[rec.ID] = rec.key
		}
		return got
	}
	first := listed()
	if len(first) != 2 || first["conn-a"] == "" || first["conn-c"] == "" {
		t.Fatalf("records of the old log: %v, want conn-a and conn-c", first)
	}
	r.close()
	again := listed()
	if fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("keys after a second restart: %v, want %v", again, first)
	}
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	key, err := r.write("conn-d", &pairHandles{inNS: ns, outNS: ns}, directPair{in: vethSpec{name: "nsm-cd", netns: "file:///proc/1/fd/5"}, out: vethSpec{name: "nsm-ed", netns: "file:///proc/1/fd/6"}})
	if err != nil {
		t.Fatal(err)
	}
	if key == again["conn-a"] || key == again["conn-c"] {
		t.Fatalf("key %s given again", key)
	}
	if err := r.remove(again["conn-a"]); err != nil {
		t.Fatal(err)
	}
	r.close()
	if got := listed(); len(got) != 2 || got["conn-c"] != first["conn-c"] || got["conn-d"] != key {
		t.Fatalf("after dropping conn-a: %v", got)
	}
	r.close()
}
