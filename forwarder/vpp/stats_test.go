package vpp

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/mock"
)

// mockIfCounters makes st's directory hold ifCounterNames with data, at
// indexes of their own among other entries, as a VPP's segment does.
func mockIfCounters(st *mock.StatsAdapter, data map[string]adapter.Stat) {
	var listed, dir []adapter.StatEntry
	listed = append(listed, adapter.StatEntry{StatIdentifier: adapter.StatIdentifier{Index: 0, Name: []byte("/sys/heartbeat")}})
	for i, n := range ifCounterNames {
		e := adapter.StatEntry{StatIdentifier: adapter.StatIdentifier{Index: uint32(10 + i), Name: []byte(n)}, Data: data[n]}
		e.Type = data[n].Type()
		listed = append(listed, e)
		dir = append(dir, e)
	}
	st.MockStats(listed)
	st.MockDir(&adapter.StatDir{Entries: dir})
}

// countingStats is a stats segment that counts its listings and records
// the indexes each read asked for.
type countingStats struct {
	ids   []adapter.StatIdentifier
	byIdx map[uint32]adapter.StatEntry
	lists int
	reads [][]uint32
	busy  int // reads still to fail with ErrStatsDataBusy
	// listBusy: listings still to fail with ErrStatsDataBusy
	listBusy int
}

func (s *countingStats) ListStats(...string) ([]adapter.StatIdentifier, error) {
	s.lists++
	if s.listBusy > 0 {
		s.listBusy--
		return nil, adapter.ErrStatsDataBusy
	}
	return s.ids, nil
}

func (s *countingStats) PrepareDirOnIndex(idx ...uint32) (*adapter.StatDir, error) {
	s.reads = append(s.reads, slices.Clone(idx))
	if s.busy > 0 {
		s.busy--
		return nil, adapter.ErrStatsDataBusy
	}
	d := &adapter.StatDir{}
	for _, i := range idx {
		d.Entries = append(d.Entries, s.byIdx[i])
	}
	return d, nil
}

// newCountingStats lays out ifCounterNames from index base, each counting
// interface i as i+1 packets (and bytes 100 times that, drops: 1 per
// counter), on two threads.
func newCountingStats(base uint32, interfaces int) *countingStats {
	s := &countingStats{byIdx: map[uint32]adapter.StatEntry{}}
	for k, n := range ifCounterNames {
		var data adapter.Stat
		switch n {
		case statRx, statTx:
			th := make([]adapter.CombinedCounter, interfaces)
			for i := range th {
				th[i] = adapter.CombinedCounter{uint64(i + 1), uint64(100 * (i + 1))}
			}
			data = adapter.CombinedCounterStat{th, make([]adapter.CombinedCounter, interfaces)}
		default:
			th := make([]adapter.Counter, interfaces)
			for i := range th {
				th[i] = 1
			}
			data = adapter.SimpleCounterStat{make([]adapter.Counter, interfaces), th}
		}
		id := adapter.StatIdentifier{Index: base + uint32(k), Name: []byte(n)}
		s.ids = append(s.ids, id)
		s.byIdx[id.Index] = adapter.StatEntry{StatIdentifier: id, Type: data.Type(), Data: data}
	}
	return s
}

// TestIfCountersListOnce: the directory is listed once; every read after
// asks for the five counters' entries only, by index. Before, every read
// (every Request's metrics) listed the whole directory again after any
// interface was created, and read twenty counters and every name.
func TestIfCountersListOnce(t *testing.T) {
	s := newCountingStats(40, 8)
	r := &ifCounters{s: s}
	for range 3 {
		got, err := r.read(2, 5)
		if err != nil {
			t.Fatal(err)
		}
		want := map[SwIfIndex]Counters{
			2: {RxPackets: 3, RxBytes: 300, TxPackets: 3, TxBytes: 300, Drops: 3},
			5: {RxPackets: 6, RxBytes: 600, TxPackets: 6, TxBytes: 600, Drops: 3},
		}
		if len(got) != len(want) || got[2] != want[2] || got[5] != want[5] {
			t.Fatalf("read %v, want %v", got, want)
		}
	}
	if s.lists != 1 {
		t.Fatalf("directory listed %d times for 3 reads, want 1", s.lists)
	}
	for _, idx := range s.reads {
		if !slices.Equal(idx, []uint32{40, 41, 42, 43, 44}) {
			t.Fatalf("read entries %v, want the five counters' 40..44", idx)
		}
	}
}

// TestIfCountersRelistOnChange: entries that moved (a VPP that restarted)
// or a read VPP changed the directory under are read again after a new
// listing, not reported.
func TestIfCountersRelistOnChange(t *testing.T) {
	s := newCountingStats(40, 4)
	r := &ifCounters{s: s}
	if _, err := r.read(1); err != nil {
		t.Fatal(err)
	}
	moved := newCountingStats(70, 4)
	// The old indexes now hold other entries.
	for i := uint32(40); i < 45; i++ {
		moved.byIdx[i] = adapter.StatEntry{StatIdentifier: adapter.StatIdentifier{Index: i, Name: []byte("/err/other")}, Data: adapter.ScalarStat(0)}
	}
	r.s = moved
	got, err := r.read(1)
	if err != nil {
		t.Fatal(err)
	}
	if got[1].RxPackets != 2 {
		t.Fatalf("read %v after the directory moved", got)
	}
	if moved.lists == 0 || !slices.Equal(moved.reads[len(moved.reads)-1], []uint32{70, 71, 72, 73, 74}) {
		t.Fatalf("not listed again: %d listings, reads %v", moved.lists, moved.reads)
	}
}

// TestIfCountersBadSegment: interfaces the segment does not count are
// left out (no panic); a segment without the counters is a clear error.
func TestIfCountersBadSegment(t *testing.T) {
	r := &ifCounters{s: newCountingStats(0, 3)}
	got, err := r.read(2, 3, 99)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[2]; !ok || len(got) != 1 {
		t.Fatalf("read %v, want interface 2 only", got)
	}
	empty := &ifCounters{s: &countingStats{}}
	if _, err := empty.read(1); err == nil || !strings.Contains(err.Error(), "has no /if/rx") {
		t.Fatalf("segment without interface counters: %v", err)
	}
	busy := newCountingStats(0, 3)
	busy.busy = 1
	if got, err := (&ifCounters{s: busy}).read(1); err != nil || got[1].RxPackets != 2 {
		t.Fatalf("busy once: %v, %v", got, err)
	}
	listBusy := newCountingStats(0, 3)
	listBusy.listBusy = 1
	if got, err := (&ifCounters{s: listBusy}).read(1); err != nil || got[1].RxPackets != 2 {
		t.Fatalf("listing busy once: %v, %v", got, err)
	}
	busy.busy = ifCounterReads
	if _, err := (&ifCounters{s: busy}).read(1); !errors.Is(err, adapter.ErrStatsDataBusy) {
		t.Fatalf("always busy: %v, want ErrStatsDataBusy", err)
	}
}
