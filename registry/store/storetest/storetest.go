// Package storetest is the conformance suite every store.Store must pass.
// An implementation's test calls Run with a function that opens a new, empty
// store; the suite checks records, listing, expiry and the change feed, and
// closes each store it opened.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vwire/vwire/registry/store"
)

const (
	// ttl is the expiry used by the expiry tests. etcd will not grant a lease
	// shorter than about two seconds, so a shorter ttl would test etcd's
	// minimum rather than the store.
	ttl = 2 * time.Second
	// patience bounds every wait for an event. It is generous so that a
	// loaded machine does not fail the suite; no test asserts on speed.
	patience = 30 * time.Second
)

// The kinds used by the suite. Real kinds are enough; other is the neighbour
// that must stay isolated.
const (
	kind  = store.KindEndpoint
	other = store.KindService
)

// Run runs the conformance suite against the stores made by open. open must
// return a new, empty store each time it is called; it may use t for
// t.TempDir and t.Cleanup. Expiry subtests run in parallel with each other;
// Run returns once every subtest has finished.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{name: "PutGet", run: testPutGet},
		{name: "ValuesAreCopied", run: testValuesAreCopied},
		{name: "Delete", run: testDelete},
		{name: "ListSortedPerKind", run: testList},
		{name: "InvalidArguments", run: testInvalidArguments},
		{name: "CancelledContext", run: testCancelledContext},
		{name: "Close", run: testClose},
		{name: "WatchSnapshotThenChanges", run: testWatchSnapshot},
		{name: "WatchOrder", run: testWatchOrder},
		{name: "WatchEndsOnCancel", run: testWatchCancel},
		{name: "ManyWatchers", run: testManyWatchers},
		{name: "ConcurrentPuts", run: testConcurrentPuts},
		{name: "TagIndex", run: testTagIndex},
		{name: "TagsMoveBetweenBuckets", run: testTagsMove},
		{name: "InvalidTags", run: testInvalidTags},
		{name: "WatchTag", run: testWatchTag},
		{name: "WatchTagSnapshot", run: testWatchTagSnapshot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, openClosed(t, open))
		})
	}

	expiry := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{name: "Expires", run: testExpires},
		{name: "RePutKeepsAlive", run: testRePutKeepsAlive},
		{name: "ZeroTTLRemovesExpiry", run: testZeroTTLRemovesExpiry},
		{name: "DeleteStopsExpiry", run: testDeleteStopsExpiry},
		{name: "ExpiryUntags", run: testExpiryUntags},
	}
	t.Run("Expiry", func(t *testing.T) {
		for _, tt := range expiry {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				tt.run(t, openClosed(t, open))
			})
		}
	})
}

// openClosed opens a store and closes it when the test ends.
func openClosed(t *testing.T, open func(t *testing.T) store.Store) store.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testPutGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	records := []struct {
		name  string
		value []byte
	}{
		{name: "plain", value: []byte("v1")},
		{name: "empty-value", value: []byte{}},
		{name: "binary", value: []byte{0, 1, 0xff, '\n'}},
		{name: "with/slash", value: []byte("slash")},
		{name: "with space é", value: []byte("unicode")},
	}
	for _, r := range records {
		mustPut(t, s, kind, r.name, r.value)
	}
	for _, r := range records {
		got, err := s.Get(ctx, kind, r.name)
		if err != nil {
			t.Fatalf("Get(%q): %v", r.name, err)
		}
		if !bytes.Equal(got, r.value) {
			t.Errorf("Get(%q) = %q, want %q", r.name, got, r.value)
		}
	}

	mustPut(t, s, kind, "plain", []byte("v2"))
	if got := mustGet(t, s, kind, "plain"); string(got) != "v2" {
		t.Errorf("Get after replace = %q, want %q", got, "v2")
	}

	if _, err := s.Get(ctx, kind, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, other, "plain"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(plain) of another kind error = %v, want ErrNotFound", err)
	}
}

func testValuesAreCopied(t *testing.T, s store.Store) {
	value := []byte("original")
	mustPut(t, s, kind, "a", value)
	copy(value, "XXXXXXXX")
	got := mustGet(t, s, kind, "a")
	if string(got) != "original" {
		t.Fatalf("Get after the caller changed its slice = %q, want %q", got, "original")
	}
	copy(got, "YYYYYYYY")
	if got := mustGet(t, s, kind, "a"); string(got) != "original" {
		t.Fatalf("Get after the caller changed a returned slice = %q, want %q", got, "original")
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "a", []byte("1"))
	mustPut(t, s, kind, "b", []byte("1"))
	mustPut(t, s, other, "a", []byte("other"))

	if err := s.Delete(ctx, kind, "a"); err != nil {
		t.Fatalf("Delete(a): %v", err)
	}
	if _, err := s.Get(ctx, kind, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete error = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, kind, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete error = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, kind, "never"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete(never) error = %v, want ErrNotFound", err)
	}
	wantList(t, s, kind, []store.Entry{{Name: "b", Value: []byte("1")}})
	wantList(t, s, other, []store.Entry{{Name: "a", Value: []byte("other")}})
}

func testList(t *testing.T, s store.Store) {
	// Byte order, not human order: "B" < "a" < "a/b" < "a0".
	for _, name := range []string{"a0", "a", "B", "a/b"} {
		mustPut(t, s, kind, name, []byte("v-"+name))
	}
	mustPut(t, s, other, "a", []byte("other-a"))

	wantList(t, s, kind, []store.Entry{
		{Name: "B", Value: []byte("v-B")},
		{Name: "a", Value: []byte("v-a")},
		{Name: "a/b", Value: []byte("v-a/b")},
		{Name: "a0", Value: []byte("v-a0")},
	})
	wantList(t, s, other, []store.Entry{{Name: "a", Value: []byte("other-a")}})
	wantList(t, s, "empty", nil)
}

func testInvalidArguments(t *testing.T, s store.Store) {
	ctx := t.Context()
	tests := []struct {
		name      string
		kind      store.Kind
		record    string
		ttl       time.Duration
		skipReads bool // the arguments are only wrong for Put
	}{
		{name: "empty kind", kind: "", record: "a"},
		{name: "kind with slash", kind: "a/b", record: "a"},
		{name: "empty name", kind: kind, record: ""},
		{name: "negative ttl", kind: kind, record: "a", ttl: -time.Second, skipReads: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Put(ctx, tt.kind, tt.record, []byte("v"), tt.ttl); err == nil {
				t.Errorf("Put succeeded")
			}
			if tt.skipReads {
				return
			}
			if _, err := s.Get(ctx, tt.kind, tt.record); err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get error = %v, want an argument error", err)
			}
			if err := s.Delete(ctx, tt.kind, tt.record); err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("Delete error = %v, want an argument error", err)
			}
		})
	}
	if _, err := s.List(ctx, "", store.All); err == nil {
		t.Errorf("List of an empty kind name succeeded")
	}
	if _, _, err := s.ListAndWatch(ctx, "a/b", store.All); err == nil {
		t.Errorf("ListAndWatch of a kind with a slash succeeded")
	}
	wantList(t, s, kind, nil)
}

func testCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, kind, "a", []byte("v"), 0); err == nil {
		t.Errorf("Put with a cancelled context succeeded")
	}
	if _, err := s.Get(ctx, kind, "a"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get with a cancelled context error = %v, want the context's error", err)
	}
	if _, err := s.List(ctx, kind, store.All); err == nil {
		t.Errorf("List with a cancelled context succeeded")
	}
	if _, _, err := s.ListAndWatch(ctx, kind, store.All); err == nil {
		t.Errorf("ListAndWatch with a cancelled context succeeded")
	}
}

func testClose(t *testing.T, s store.Store) {
	mustPut(t, s, kind, "a", []byte("1"))
	_, w := mustListAndWatch(t, t.Context(), s, kind)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := drainUntilClosed(t, w); err == nil {
		t.Errorf("watch ended by Close: Err() = nil, want an error")
	}
	if err := s.Put(t.Context(), kind, "b", []byte("1"), 0); err == nil {
		t.Errorf("Put after Close succeeded")
	}
	if _, err := s.Get(t.Context(), kind, "a"); err == nil {
		t.Errorf("Get after Close succeeded")
	}
	if _, _, err := s.ListAndWatch(t.Context(), kind, store.All); err == nil {
		t.Errorf("ListAndWatch after Close succeeded")
	}
}

func testWatchSnapshot(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "a", []byte("1"))
	mustPut(t, s, kind, "b", []byte("1"))
	mustPut(t, s, kind, "a", []byte("2"))
	mustDelete(t, s, kind, "b")
	mustPut(t, s, kind, "c", []byte("1"))

	entries, w := mustListAndWatch(t, ctx, s, kind)
	want := []store.Entry{{Name: "a", Value: []byte("2")}, {Name: "c", Value: []byte("1")}}
	if !equalEntries(entries, want) {
		t.Fatalf("snapshot = %s, want %s", formatEntries(entries), formatEntries(want))
	}
	// The first event must be the first change after the snapshot: nothing
	// made before it is replayed.
	mustPut(t, s, kind, "d", []byte("1"))
	expectEvents(t, w, put("d", "1"))
}

func testWatchOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, w := mustListAndWatch(t, ctx, s, kind)

	mustPut(t, s, kind, "a", []byte("1"))
	mustPut(t, s, kind, "b", []byte("1"))
	mustPut(t, s, other, "a", []byte("other")) // another kind: not seen
	mustPut(t, s, kind, "a", []byte("2"))
	mustDelete(t, s, kind, "b")
	mustPut(t, s, kind, "b", []byte("3"))
	mustDelete(t, s, other, "a")
	mustDelete(t, s, kind, "a")

	expectEvents(t, w,
		put("a", "1"),
		put("b", "1"),
		put("a", "2"),
		deleted("b", "1"),
		put("b", "3"),
		deleted("a", "2"),
	)
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	_, w := mustListAndWatch(t, ctx, s, kind)
	mustPut(t, s, kind, "a", []byte("1"))
	expectEvents(t, w, put("a", "1"))

	cancel()
	if err := drainUntilClosed(t, w); err != nil {
		t.Errorf("watch ended by its context: Err() = %v, want nil", err)
	}
	// The store itself carries on.
	mustPut(t, s, kind, "b", []byte("1"))
	_, w2 := mustListAndWatch(t, t.Context(), s, kind)
	mustPut(t, s, kind, "c", []byte("1"))
	expectEvents(t, w2, put("c", "1"))
}

func testManyWatchers(t *testing.T, s store.Store) {
	const watchers, changes = 5, 40
	ctx := t.Context()

	var want []store.Event
	for i := range changes {
		name := fmt.Sprintf("r%02d", i%7)
		if i%5 == 4 {
			// Delete what the previous change stored.
			want = append(want, deleted(fmt.Sprintf("r%02d", (i-1)%7), fmt.Sprint(i-1)))
			continue
		}
		want = append(want, put(name, fmt.Sprint(i)))
	}

	feeds := make([]*store.Watch, watchers)
	for i := range feeds {
		_, feeds[i] = mustListAndWatch(t, ctx, s, kind)
	}

	// Every watcher drains concurrently, as real consumers do.
	got := make([][]store.Event, watchers)
	var wg sync.WaitGroup
	for i, w := range feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = collect(w, len(want))
		}()
	}
	for _, ev := range want {
		if ev.Deleted {
			mustDelete(t, s, kind, ev.Name)
			continue
		}
		mustPut(t, s, kind, ev.Name, ev.Value)
	}
	wg.Wait()
	for i := range got {
		if !equalEvents(got[i], want) {
			t.Errorf("watcher %d saw\n%s\nwant\n%s", i, formatEvents(got[i]), formatEvents(want))
		}
	}
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	const writers, names, rounds = 8, 10, 3
	ctx := t.Context()
	_, early := mustListAndWatch(t, ctx, s, kind)

	// The early watcher sees everything; the late one opens while writers
	// run. Both, applied to their snapshot, must end at the final state.
	earlyState := make(map[string]string)
	earlyDone := make(chan error, 1)
	go func() { earlyDone <- replay(early, earlyState) }()

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for n := range names {
					name := fmt.Sprintf("w%d-n%02d", g, n)
					if err := s.Put(ctx, kind, name, []byte(fmt.Sprint(r)), 0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}

	snapshot, late := mustListAndWatch(t, ctx, s, kind)
	lateState := make(map[string]string)
	for _, e := range snapshot {
		lateState[e.Name] = string(e.Value)
	}
	lateDone := make(chan error, 1)
	go func() { lateDone <- replay(late, lateState) }()

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Put: %v", err)
	}
	mustPut(t, s, kind, doneMarker, nil)

	for _, w := range []struct {
		name  string
		done  chan error
		state map[string]string
	}{
		{name: "early", done: earlyDone, state: earlyState},
		{name: "late", done: lateDone, state: lateState},
	} {
		select {
		case err := <-w.done:
			if err != nil {
				t.Fatalf("%s watcher: %v", w.name, err)
			}
		case <-time.After(patience):
			t.Fatalf("%s watcher: no end marker after %v", w.name, patience)
		}
		if len(w.state) != writers*names {
			t.Errorf("%s watcher ends with %d records, want %d", w.name, len(w.state), writers*names)
		}
		for name, value := range w.state {
			if value != fmt.Sprint(rounds-1) {
				t.Errorf("%s watcher: %s = %q, want the last round %d", w.name, name, value, rounds-1)
			}
		}
	}

	entries, err := s.List(ctx, kind, store.All)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(entries) != writers*names+1 {
		t.Errorf("List has %d records, want %d", len(entries), writers*names+1)
	}
}

func testTagIndex(t *testing.T, s store.Store) {
	mustPutTags(t, s, kind, "a", "va", 0, "x")
	mustPutTags(t, s, kind, "b", "vb", 0, "y", "x", "y") // duplicates count once
	mustPut(t, s, kind, "c", []byte("vc"))
	mustPutTags(t, s, kind, "d", "vd", 0, "y")
	mustPutTags(t, s, kind, "e/f", "vef", 0, "x/y") // slashes in names and tags
	mustPutTags(t, s, other, "a", "other", 0, "x")

	wantTagged(t, s, kind, "x", []store.Entry{{Name: "a", Value: []byte("va")}, {Name: "b", Value: []byte("vb")}})
	wantTagged(t, s, kind, "y", []store.Entry{{Name: "b", Value: []byte("vb")}, {Name: "d", Value: []byte("vd")}})
	wantTagged(t, s, kind, "x/y", []store.Entry{{Name: "e/f", Value: []byte("vef")}})
	wantTagged(t, s, kind, "z", nil)
	wantTagged(t, s, other, "x", []store.Entry{{Name: "a", Value: []byte("other")}})
	wantTagged(t, s, other, "y", nil)
	wantList(t, s, kind, []store.Entry{
		{Name: "a", Value: []byte("va")}, {Name: "b", Value: []byte("vb")}, {Name: "c", Value: []byte("vc")},
		{Name: "d", Value: []byte("vd")}, {Name: "e/f", Value: []byte("vef")},
	})
	// A tagged record reads back like any other.
	if got := mustGet(t, s, kind, "b"); string(got) != "vb" {
		t.Errorf("Get(b) = %q, want %q", got, "vb")
	}
	// Many tags, each its own bucket.
	many := make([]string, store.MaxTags)
	for i := range many {
		many[i] = fmt.Sprintf("t%02d", i)
	}
	mustPutTags(t, s, kind, "many", "vm", 0, many...)
	for _, tag := range many {
		wantTagged(t, s, kind, tag, []store.Entry{{Name: "many", Value: []byte("vm")}})
	}
}

func testTagsMove(t *testing.T, s store.Store) {
	ctx := t.Context()
	x := func(v string) []store.Entry { return []store.Entry{{Name: "a", Value: []byte(v)}} }
	steps := []struct {
		name  string
		do    func()
		xWant []store.Entry
		yWant []store.Entry
	}{
		{name: "tagged x", do: func() { mustPutTags(t, s, kind, "a", "1", 0, "x") }, xWant: x("1")},
		{name: "moved to y", do: func() { mustPutTags(t, s, kind, "a", "2", 0, "y") }, yWant: x("2")},
		{name: "both", do: func() { mustPutTags(t, s, kind, "a", "3", time.Hour, "x", "y") }, xWant: x("3"), yWant: x("3")},
		{name: "untagged", do: func() { mustPut(t, s, kind, "a", []byte("4")) }},
		{name: "tagged again", do: func() { mustPutTags(t, s, kind, "a", "5", time.Hour, "y") }, yWant: x("5")},
		{name: "deleted", do: func() { mustDelete(t, s, kind, "a") }},
		{name: "back after delete", do: func() { mustPutTags(t, s, kind, "a", "6", 0, "x") }, xWant: x("6")},
	}
	for _, step := range steps {
		step.do()
		t.Logf("step %q", step.name)
		wantTagged(t, s, kind, "x", step.xWant)
		wantTagged(t, s, kind, "y", step.yWant)
	}
	if _, err := s.Get(ctx, kind, "a"); err != nil {
		t.Errorf("Get(a) after the steps: %v", err)
	}
}

func testInvalidTags(t *testing.T, s store.Store) {
	ctx := t.Context()
	tooMany := make([]string, store.MaxTags+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint(i)
	}
	tests := []struct {
		name string
		tags []string
	}{
		{name: "empty tag", tags: []string{"x", ""}},
		{name: "too many", tags: tooMany},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Put(ctx, kind, "a", []byte("v"), 0, tt.tags...); err == nil {
				t.Errorf("Put with tags %q succeeded", tt.tags)
			}
		})
	}
	wantList(t, s, kind, nil)
	wantTagged(t, s, kind, "x", nil)
}

// testWatchTag: a watch of a tag sees the changes to records that carry it
// (a record that loses it as a deletion) and nothing else; a watch of
// every record sees every change.
func testWatchTag(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, wx := mustListAndWatchTag(t, ctx, s, kind, "x")
	_, wy := mustListAndWatchTag(t, ctx, s, kind, "y")
	_, wall := mustListAndWatch(t, ctx, s, kind)

	mustPutTags(t, s, kind, "a", "1", 0, "x")
	mustPutTags(t, s, kind, "b", "1", 0, "y")
	mustPutTags(t, s, other, "c", "1", 0, "x") // another kind
	mustPutTags(t, s, kind, "a", "2", 0, "x", "y")
	mustPutTags(t, s, kind, "a", "3", 0, "y") // leaves x
	mustPut(t, s, kind, "u", []byte("1"))     // no tag
	mustDelete(t, s, kind, "b")
	mustDelete(t, s, kind, "a")
	mustDelete(t, s, kind, "u")
	// Each watch's last event: nothing else may come before it.
	mustPutTags(t, s, kind, "end", "1", 0, "x", "y")

	expectEvents(t, wx, put("a", "1"), put("a", "2"), deleted("a", "2"), put("end", "1"))
	expectEvents(t, wy, put("b", "1"), put("a", "2"), put("a", "3"), deleted("b", "1"), deleted("a", "3"), put("end", "1"))
	expectEvents(t, wall, put("a", "1"), put("b", "1"), put("a", "2"), put("a", "3"), put("u", "1"),
		deleted("b", "1"), deleted("a", "3"), deleted("u", "1"), put("end", "1"))
}

func testWatchTagSnapshot(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPutTags(t, s, kind, "a", "1", 0, "x")
	mustPutTags(t, s, kind, "b", "1", 0, "y")
	mustPutTags(t, s, kind, "c", "1", 0, "x", "y")
	mustPutTags(t, s, kind, "c", "2", 0, "y")

	entries, w := mustListAndWatchTag(t, ctx, s, kind, "x")
	want := []store.Entry{{Name: "a", Value: []byte("1")}}
	if !equalEntries(entries, want) {
		t.Fatalf("snapshot of x = %s, want %s", formatEntries(entries), formatEntries(want))
	}
	mustPutTags(t, s, kind, "b", "2", 0, "x")
	expectEvents(t, w, put("b", "2"))
}

// testExpiryUntags: an expired record leaves its tags' buckets, and their
// watchers see it go.
func testExpiryUntags(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPutTags(t, s, kind, "kept", "1", 0, "x")
	_, w := mustListAndWatchTag(t, ctx, s, kind, "x")

	mustPutTags(t, s, kind, "a", "1", ttl, "x", "y")
	expectEvents(t, w, put("a", "1"))
	expectEventsWithin(t, w, ttl+patience, deleted("a", "1"))
	wantTagged(t, s, kind, "x", []store.Entry{{Name: "kept", Value: []byte("1")}})
	wantTagged(t, s, kind, "y", nil)
}

// doneMarker is the record whose Put tells replay the writers are finished.
const doneMarker = "~done"

// replay applies events to state until the done marker arrives. A put of a
// value older than the one held means events came out of order.
func replay(w *store.Watch, state map[string]string) error {
	for ev := range w.Events {
		if ev.Name == doneMarker {
			return nil
		}
		if ev.Deleted {
			return fmt.Errorf("unexpected deletion of %s", ev.Name)
		}
		if old, ok := state[ev.Name]; ok && string(ev.Value) < old {
			return fmt.Errorf("%s went from %q back to %q", ev.Name, old, ev.Value)
		}
		state[ev.Name] = string(ev.Value)
	}
	return fmt.Errorf("watch ended before the end marker: %v", w.Err())
}

// The expiry tests below never assert that something happened quickly.
// Where a step must come before a ttl runs out, they time it; if the machine
// stalled for a whole ttl, a record may rightly have expired and the test
// accepts that or, when it can no longer judge, runs the round again.

func testExpires(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, kind, "kept", []byte("1"))
	_, w := mustListAndWatch(t, ctx, s, kind)

	mustPut(t, s, kind, "a", []byte("1"))
	mustPutTTL(t, s, kind, "a", []byte("2"), ttl)
	expectEvents(t, w, put("a", "1"), put("a", "2"))
	expectEventsWithin(t, w, ttl+patience, deleted("a", "2"))

	if _, err := s.Get(ctx, kind, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an expired record error = %v, want ErrNotFound", err)
	}
	wantList(t, s, kind, []store.Entry{{Name: "kept", Value: []byte("1")}})
}

func testRePutKeepsAlive(t *testing.T, s store.Store) {
	// A round the machine stalled in for a whole ttl cannot be judged (alive
	// may rightly have expired): it is run again, a few times at most.
	const rounds = 3
	var stalls []string
	for round := range rounds {
		stall, judged := rePutRound(t, s, round)
		if judged {
			return
		}
		stalls = append(stalls, stall.String())
	}
	t.Fatalf("the test stalled for a whole ttl (%v) in each of %d rounds (%s): the store could not be judged", ttl, rounds, strings.Join(stalls, ", "))
}

// rePutRound: control expires on its own; alive is Put again every quarter
// ttl. When control is gone, alive must still be there. It reports the
// longest gap between Puts and whether the round could be judged.
func rePutRound(t *testing.T, s store.Store, round int) (time.Duration, bool) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, w := mustListAndWatch(t, ctx, s, kind)
	control, alive := fmt.Sprintf("control-%d", round), fmt.Sprintf("alive-%d", round)

	mustPutTTL(t, s, kind, control, []byte("c"), ttl)
	lastPut := time.Now() // when the Put that set alive's ttl started
	mustPutTTL(t, s, kind, alive, []byte("0"), ttl)
	var stall time.Duration // the longest time alive went without a Put
	refresh := time.NewTicker(ttl / 4)
	defer refresh.Stop()
	deadline := time.After(ttl + patience)
	for refreshes := 1; ; {
		select {
		case <-refresh.C:
			start := time.Now()
			mustPutTTL(t, s, kind, alive, []byte(fmt.Sprint(refreshes)), ttl)
			stall = max(stall, time.Since(lastPut))
			lastPut = start
			refreshes++
		case ev, ok := <-w.Events:
			if !ok {
				t.Fatalf("watch ended: %v", w.Err())
			}
			if ev.Deleted && ev.Name == alive {
				if stall >= ttl {
					return stall, false
				}
				t.Fatalf("%s expired although it was Put again every %v (longest gap %v)", alive, ttl/4, stall)
			}
			if ev.Deleted && ev.Name == control {
				_, err := s.Get(ctx, kind, alive)
				if err != nil && time.Since(lastPut) >= ttl {
					return max(stall, time.Since(lastPut)), false
				}
				if err != nil {
					t.Fatalf("Get(%s) after %s expired: %v", alive, control, err)
				}
				if err := s.Delete(ctx, kind, alive); err != nil {
					t.Fatalf("Delete(%s): %v", alive, err)
				}
				return stall, true
			}
		case <-deadline:
			t.Fatalf("%s did not expire within %v", control, ttl+patience)
		}
	}
}

func testZeroTTLRemovesExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, w := mustListAndWatch(t, ctx, s, kind)

	start := time.Now()
	mustPutTTL(t, s, kind, "a", []byte("1"), ttl)
	mustPut(t, s, kind, "a", []byte("2"))
	slow := time.Since(start) >= ttl
	// control outlives a's first ttl by a second, so by the time it goes,
	// a would have gone too if that ttl were still attached.
	mustPutTTL(t, s, kind, "control", []byte("c"), ttl+time.Second)

	expectEvents(t, w, put("a", "1"))
	rest := []store.Event{put("a", "2"), put("control", "c")}
	// If the test was slow, a may rightly have expired before the second
	// Put recreated it.
	if ev := nextEvent(t, w); !slow || !equalEvent(ev, deleted("a", "1")) {
		if !equalEvent(ev, rest[0]) {
			t.Fatalf("event %s, want %s", formatEvent(ev), formatEvent(rest[0]))
		}
		rest = rest[1:]
	}
	expectEvents(t, w, rest...)
	expectEventsWithin(t, w, ttl+time.Second+patience, deleted("control", "c"))
	if got := mustGet(t, s, kind, "a"); string(got) != "2" {
		t.Fatalf("Get(a) = %q, want %q", got, "2")
	}
}

func testDeleteStopsExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, w := mustListAndWatch(t, ctx, s, kind)

	// a's first incarnation had a ttl; the new one, stored after the delete,
	// must not be removed when that ttl runs out.
	start := time.Now()
	mustPutTTL(t, s, kind, "a", []byte("1"), ttl)
	if err := s.Delete(ctx, kind, "a"); err != nil {
		// Only acceptable if a could have expired already; the events
		// are the same either way.
		if !errors.Is(err, store.ErrNotFound) || time.Since(start) < ttl {
			t.Fatalf("Delete(a): %v", err)
		}
	}
	mustPut(t, s, kind, "a", []byte("2"))
	mustPutTTL(t, s, kind, "control", []byte("c"), ttl+time.Second)

	expectEvents(t, w, put("a", "1"), deleted("a", "1"), put("a", "2"), put("control", "c"))
	expectEventsWithin(t, w, ttl+time.Second+patience, deleted("control", "c"))
	if got := mustGet(t, s, kind, "a"); string(got) != "2" {
		t.Fatalf("Get(a) = %q, want %q", got, "2")
	}
}

func put(name, value string) store.Event {
	return store.Event{Entry: store.Entry{Name: name, Value: []byte(value)}}
}

func deleted(name, value string) store.Event {
	return store.Event{Entry: store.Entry{Name: name, Value: []byte(value)}, Deleted: true}
}

func mustPut(t *testing.T, s store.Store, kind store.Kind, name string, value []byte) {
	t.Helper()
	mustPutTTL(t, s, kind, name, value, 0)
}

func mustPutTTL(t *testing.T, s store.Store, kind store.Kind, name string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Put(t.Context(), kind, name, value, ttl); err != nil {
		t.Fatalf("Put(%s/%s, ttl %v): %v", kind, name, ttl, err)
	}
}

func mustPutTags(t *testing.T, s store.Store, kind store.Kind, name, value string, ttl time.Duration, tags ...string) {
	t.Helper()
	if err := s.Put(t.Context(), kind, name, []byte(value), ttl, tags...); err != nil {
		t.Fatalf("Put(%s/%s, ttl %v, tags %q): %v", kind, name, ttl, tags, err)
	}
}

func mustGet(t *testing.T, s store.Store, kind store.Kind, name string) []byte {
	t.Helper()
	v, err := s.Get(t.Context(), kind, name)
	if err != nil {
		t.Fatalf("Get(%s/%s): %v", kind, name, err)
	}
	return v
}

func mustDelete(t *testing.T, s store.Store, kind store.Kind, name string) {
	t.Helper()
	if err := s.Delete(t.Context(), kind, name); err != nil {
		t.Fatalf("Delete(%s/%s): %v", kind, name, err)
	}
}

func mustListAndWatch(t *testing.T, ctx context.Context, s store.Store, kind store.Kind) ([]store.Entry, *store.Watch) {
	t.Helper()
	return mustListAndWatchTag(t, ctx, s, kind, store.All)
}

func mustListAndWatchTag(t *testing.T, ctx context.Context, s store.Store, kind store.Kind, tag string) ([]store.Entry, *store.Watch) {
	t.Helper()
	entries, w, err := s.ListAndWatch(ctx, kind, tag)
	if err != nil {
		t.Fatalf("ListAndWatch(%s, tag %q): %v", kind, tag, err)
	}
	return entries, w
}

func wantList(t *testing.T, s store.Store, kind store.Kind, want []store.Entry) {
	t.Helper()
	wantTagged(t, s, kind, store.All, want)
}

// wantTagged checks List of one tag.
func wantTagged(t *testing.T, s store.Store, kind store.Kind, tag string, want []store.Entry) {
	t.Helper()
	got, err := s.List(t.Context(), kind, tag)
	if err != nil {
		t.Fatalf("List(%s, tag %q): %v", kind, tag, err)
	}
	if !equalEntries(got, want) {
		t.Errorf("List(%s, tag %q) = %s, want %s", kind, tag, formatEntries(got), formatEntries(want))
	}
}

// expectEvents waits for exactly the next len(want) events.
func expectEvents(t *testing.T, w *store.Watch, want ...store.Event) {
	t.Helper()
	expectEventsWithin(t, w, patience, want...)
}

func expectEventsWithin(t *testing.T, w *store.Watch, wait time.Duration, want ...store.Event) {
	t.Helper()
	deadline := time.After(wait)
	for i, wantEv := range want {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				t.Fatalf("watch ended before event %d (%s): %v", i, formatEvent(wantEv), w.Err())
			}
			if !equalEvent(ev, wantEv) {
				t.Fatalf("event %d = %s, want %s", i, formatEvent(ev), formatEvent(wantEv))
			}
		case <-deadline:
			t.Fatalf("no event %d (%s) within %v", i, formatEvent(wantEv), wait)
		}
	}
}

// nextEvent waits for the next event.
func nextEvent(t *testing.T, w *store.Watch) store.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events:
		if !ok {
			t.Fatalf("watch ended: %v", w.Err())
		}
		return ev
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
	}
	panic("unreachable")
}

// collect reads n events, or fewer if the watch ends or stalls.
func collect(w *store.Watch, n int) []store.Event {
	var got []store.Event
	deadline := time.After(patience)
	for len(got) < n {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-deadline:
			return got
		}
	}
	return got
}

// drainUntilClosed discards events until the watch ends and returns Err().
func drainUntilClosed(t *testing.T, w *store.Watch) error {
	t.Helper()
	deadline := time.After(patience)
	for {
		select {
		case _, ok := <-w.Events:
			if !ok {
				return w.Err()
			}
		case <-deadline:
			t.Fatalf("watch still open %v after it should have ended", patience)
		}
	}
}

func equalEntries(a, b []store.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y store.Entry) bool {
		return x.Name == y.Name && bytes.Equal(x.Value, y.Value)
	})
}

func equalEvent(a, b store.Event) bool {
	return a.Name == b.Name && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value)
}

func equalEvents(a, b []store.Event) bool {
	return slices.EqualFunc(a, b, equalEvent)
}

func formatEntries(entries []store.Entry) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, e := range entries {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", e.Name, e.Value)
	}
	b.WriteString("]")
	return b.String()
}

func formatEvent(ev store.Event) string {
	if ev.Deleted {
		return fmt.Sprintf("delete %s (was %q)", ev.Name, ev.Value)
	}
	return fmt.Sprintf("put %s=%q", ev.Name, ev.Value)
}

func formatEvents(events []store.Event) string {
	var b bytes.Buffer
	for _, ev := range events {
		b.WriteString("  " + formatEvent(ev) + "\n")
	}
	return b.String()
}
