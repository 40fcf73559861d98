package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/goleak"

	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
	"github.com/vwire/vwire/registry/store/storetest"
)

const (
	// ttl is the shortest lease etcd grants with its default timing.
	ttl = 2 * time.Second
	// patience bounds every wait; no test asserts on speed.
	patience = 30 * time.Second
)

func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		// A prefix per subtest gives each one an empty store.
		return open(t, srv, "/test/"+t.Name())
	})
}

func TestReplicasSeeEachOther(t *testing.T) {
	srv := etcdtest.Start(t)
	a := open(t, srv, "")
	b := open(t, srv, "")
	ctx := t.Context()

	_, watchA := mustListAndWatch(t, a, store.KindEndpoint)
	_, watchB := mustListAndWatch(t, b, store.KindEndpoint)
	mustPut(t, a, "from-a", "1", 0)
	mustPut(t, b, "from-b", "1", 0)
	if err := a.Delete(ctx, store.KindEndpoint, "from-b"); err != nil {
		t.Fatalf("a deletes b's record: %v", err)
	}

	// etcd orders all changes, so both replicas see one sequence.
	want := []store.Event{put("from-a", "1"), put("from-b", "1"), deleted("from-b", "1")}
	expectEvents(t, watchA, want...)
	expectEvents(t, watchB, want...)
	if got := mustGet(t, b, "from-a"); got != "1" {
		t.Errorf("b reads a's record = %q, want %q", got, "1")
	}
}

func TestReplicaRestartLosesNothing(t *testing.T) {
	srv := etcdtest.Start(t)
	a := open(t, srv, "")
	b := open(t, srv, "")

	mustPut(t, a, "forever", "1", 0)
	mustPut(t, a, "leased", "2", time.Minute)
	_, watchB := mustListAndWatch(t, b, store.KindEndpoint)

	if err := a.Close(); err != nil {
		t.Fatalf("close a: %v", err)
	}
	restarted := open(t, srv, "")
	entries, err := restarted.List(t.Context(), store.KindEndpoint, store.All)
	if err != nil {
		t.Fatalf("List after restart: %v", err)
	}
	want := []store.Entry{{Name: "forever", Value: []byte("1")}, {Name: "leased", Value: []byte("2")}}
	if !equalEntries(entries, want) {
		t.Errorf("List after restart = %v, want %v", entries, want)
	}

	// Closing a deleted nothing: b's first event is the next write.
	mustPut(t, restarted, "after", "3", 0)
	expectEvents(t, watchB, put("after", "3"))
}

func TestTTLOutlivesWriter(t *testing.T) {
	srv := etcdtest.Start(t)
	a := open(t, srv, "")
	b := open(t, srv, "")

	_, watchB := mustListAndWatch(t, b, store.KindService)
	if err := a.Put(t.Context(), store.KindService, "short", []byte("last"), ttl); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("close a: %v", err)
	}
	expectEventsWithin(t, watchB, ttl+patience, put("short", "last"), deleted("short", "last"))
	if _, err := b.Get(t.Context(), store.KindService, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after expiry error = %v, want ErrNotFound", err)
	}
}

func TestServerRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, srv, "")
	ctx := t.Context()

	mustPut(t, s, "forever", "1", 0)
	mustPut(t, s, "leased", "2", time.Minute)
	mustPut(t, s, "short", "3", ttl)
	_, before := mustListAndWatch(t, s, store.KindEndpoint)

	srv.Restart()

	// The client reconnects on its own; the first calls may still fail.
	eventually(t, "records after restart", func() error {
		for name, want := range map[string]string{"forever": "1", "leased": "2"} {
			got, err := s.Get(ctx, store.KindEndpoint, name)
			if err != nil {
				return err
			}
			if string(got) != want {
				return fmt.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		return nil
	})
	// A lease survives the restart too, and still runs out.
	eventually(t, "short expires after restart", func() error {
		_, err := s.Get(ctx, store.KindEndpoint, "short")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("short still there (err %v)", err)
	})

	// A watch opened before the restart either carries on or ends with an
	// error; it never goes silent.
	mustPut(t, s, "after", "4", 0)
	if err := nextChangeOrEnd(t, before, "after"); err != nil {
		t.Logf("watch from before the restart ended: %v", err)
	}
	_, after := mustListAndWatch(t, s, store.KindEndpoint)
	mustPut(t, s, "later", "5", 0)
	expectEvents(t, after, put("later", "5"))
}

func TestCompactedWatchEnds(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, srv, "")
	ctx := t.Context()

	mustPut(t, s, "a", "1", 0)
	mustPut(t, s, "a", "2", 0)
	resp, err := s.client.Get(ctx, "any")
	if err != nil {
		t.Fatalf("read revision: %v", err)
	}
	if _, err := s.client.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}

	prefix, err := s.rangePrefix(store.KindEndpoint, store.All)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.watch(ctx, store.KindEndpoint, prefix, 1)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	for ev := range w.Events {
		t.Errorf("event from a compacted revision: %v", ev)
	}
	err = w.Err()
	if !errors.Is(err, store.ErrWatchLagged) || !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("Err() = %v, want ErrWatchLagged and ErrCompacted", err)
	}
}

func TestPrefixesDoNotOverlap(t *testing.T) {
	srv := etcdtest.Start(t)
	short := open(t, srv, "/overlap/a")
	long := open(t, srv, "/overlap/ab")

	mustPut(t, short, "x", "1", 0)
	entries, err := long.List(t.Context(), store.KindEndpoint, store.All)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("store with prefix /overlap/ab lists %v from /overlap/a", entries)
	}
}

func TestNewFailsWithoutEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	endpoints := srv.Endpoints()
	srv.Stop()

	_, err := New(t.Context(), Config{Endpoints: endpoints, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatalf("New with etcd stopped succeeded")
	}
	if _, err := New(t.Context(), Config{}); err == nil {
		t.Fatalf("New without endpoints succeeded")
	}
}

func TestNoGoroutinesOutliveClose(t *testing.T) {
	srv := etcdtest.Start(t)
	// The embedded server's goroutines are not ours; some start after it
	// is ready.
	ignoreServer := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/embed.(*serveCtx).startHandler.func1"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver.(*EtcdServer).GoAttach.func1"),
	}

	s := open(t, srv, "")
	ctx, cancel := context.WithCancel(t.Context())
	_, cancelled := mustListAndWatchCtx(t, ctx, s, store.KindService)
	_, _ = mustListAndWatch(t, s, store.KindService)
	mustPut(t, s, "a", "1", time.Minute)
	cancel()
	for range cancelled.Events {
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	goleak.VerifyNone(t, ignoreServer...)
}

func TestLeaseSeconds(t *testing.T) {
	tests := []struct {
		ttl  time.Duration
		want int64
	}{
		{ttl: time.Nanosecond, want: 1},
		{ttl: 999 * time.Millisecond, want: 1},
		{ttl: time.Second, want: 1},
		{ttl: time.Second + time.Nanosecond, want: 2},
		{ttl: 2500 * time.Millisecond, want: 3},
		{ttl: time.Minute, want: 60},
	}
	for _, tt := range tests {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			if got := leaseSeconds(tt.ttl); got != tt.want {
				t.Errorf("leaseSeconds(%v) = %d, want %d", tt.ttl, got, tt.want)
			}
		})
	}
}

// open connects a Store to srv under prefix and closes it when the test
// ends.
func open(t *testing.T, srv *etcdtest.Server, prefix string) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{Endpoints: srv.Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustPut(t *testing.T, s *Store, name, value string, ttl time.Duration) {
	t.Helper()
	if err := s.Put(t.Context(), store.KindEndpoint, name, []byte(value), ttl); err != nil {
		t.Fatalf("Put(%s): %v", name, err)
	}
}

func mustGet(t *testing.T, s *Store, name string) string {
	t.Helper()
	v, err := s.Get(t.Context(), store.KindEndpoint, name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return string(v)
}

func mustListAndWatch(t *testing.T, s *Store, kind store.Kind) ([]store.Entry, *store.Watch) {
	t.Helper()
	return mustListAndWatchCtx(t, t.Context(), s, kind)
}

func mustListAndWatchCtx(t *testing.T, ctx context.Context, s *Store, kind store.Kind) ([]store.Entry, *store.Watch) {
	t.Helper()
	entries, w, err := s.ListAndWatch(ctx, kind, store.All)
	if err != nil {
		t.Fatalf("ListAndWatch(%s): %v", kind, err)
	}
	return entries, w
}

func put(name, value string) store.Event {
	return store.Event{Entry: store.Entry{Name: name, Value: []byte(value)}}
}

func deleted(name, value string) store.Event {
	return store.Event{Entry: store.Entry{Name: name, Value: []byte(value)}, Deleted: true}
}

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
				t.Fatalf("watch ended before event %d: %v", i, w.Err())
			}
			if ev.Name != wantEv.Name || ev.Deleted != wantEv.Deleted || !bytes.Equal(ev.Value, wantEv.Value) {
				t.Fatalf("event %d = %+v, want %+v", i, ev, wantEv)
			}
		case <-deadline:
			t.Fatalf("no event %d (%+v) within %v", i, wantEv, wait)
		}
	}
}

// nextChangeOrEnd waits until w reports a put of name, skipping other
// events, or ends; it returns the watch's error in the second case.
func nextChangeOrEnd(t *testing.T, w *store.Watch, name string) error {
	t.Helper()
	deadline := time.After(patience)
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				err := w.Err()
				if err == nil {
					t.Fatalf("watch ended without an error")
				}
				return err
			}
			if ev.Name == name && !ev.Deleted {
				return nil
			}
		case <-deadline:
			t.Fatalf("watch neither reported %s nor ended within %v", name, patience)
		}
	}
}

// eventually polls check until it returns nil, failing the test after
// patience.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, patience, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func equalEntries(a, b []store.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
