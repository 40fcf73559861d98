package registry

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/registry/store"
)

// maxResyncs bounds how often one watch re-lists after its feed broke
// (a slow consumer, an etcd compaction) before giving up.
const maxResyncs = 5

// message is a registry object that can be decoded from the store.
type message[T any] interface {
	proto.Message
	*T
}

// find answers a Find: the current matches, then, with watch, every later
// change to the matching set. A record that stops matching (changed labels)
// is reported deleted. When the store's feed breaks, it re-lists and sends
// the difference, so a watcher never misses a change.
//
// tag, when not store.All, is a tag every match carries (a service the
// query names): the store then lists, and wakes the watch for, only the
// records that carry it. pre, when not nil, is a cheap test on a stored
// record before it is decoded: false means the record cannot match
// (prefilter in match.go).
func find[T any, P message[T]](ctx context.Context, s *Server, kind store.Kind, tag string, watch bool,
	pre func(store.Entry) bool, match func(P) bool, send func(P, bool) error) error {
	if pre == nil {
		pre = func(store.Entry) bool { return true }
	}
	if !watch {
		entries, err := s.store.List(ctx, kind, tag)
		if err != nil {
			return storeError("find", string(kind), err)
		}
		for _, e := range entries {
			if !pre(e) {
				continue
			}
			if m, ok := decode[T, P](s, e); ok && match(m) {
				if err := send(m, false); err != nil {
					return err
				}
			}
		}
		return nil
	}

	s.metrics.watchers.Add(1)
	defer s.metrics.watchers.Add(-1)
	sent := map[string]P{} // what this watcher believes exists
	for resync := 0; ; resync++ {
		entries, w, err := s.store.ListAndWatch(ctx, kind, tag)
		if err != nil {
			return storeError("watch", string(kind), err)
		}
		if err := sendSnapshot(entries, sent, s, pre, match, send); err != nil {
			return err
		}
		for ev := range w.Events {
			s.metrics.watchEvents.Inc()
			_, had := sent[ev.Name]
			if !had && !pre(ev.Entry) {
				continue
			}
			m, ok := decode[T, P](s, ev.Entry)
			if !ok {
				continue
			}
			switch {
			case !ev.Deleted && match(m):
				sent[ev.Name] = m
				err = send(m, false)
			case had:
				delete(sent, ev.Name)
				err = send(m, true)
			}
			if err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		err = w.Err()
		if err == nil {
			return nil
		}
		if resync >= maxResyncs {
			return status.Errorf(codes.Unavailable, "watch %s: store feed keeps failing: %v", kind, err)
		}
		s.log.Warn("registry watch broke; re-listing", "kind", kind, "err", err, "lagged", errors.Is(err, store.ErrWatchLagged))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(resync) * 100 * time.Millisecond):
		}
	}
}

// sendSnapshot sends the entries that match and, for a resync, deletions of
// what the watcher had that is no longer there.
func sendSnapshot[T any, P message[T]](entries []store.Entry, sent map[string]P, s *Server,
	pre func(store.Entry) bool, match func(P) bool, send func(P, bool) error) error {
	live := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !pre(e) {
			continue
		}
		m, ok := decode[T, P](s, e)
		if !ok || !match(m) {
			continue
		}
		live[e.Name] = true
		if old, had := sent[e.Name]; had && proto.Equal(old, m) {
			continue
		}
		sent[e.Name] = m
		if err := send(m, false); err != nil {
			return err
		}
	}
	for name, old := range sent {
		if !live[name] {
			delete(sent, name)
			if err := send(old, true); err != nil {
				return err
			}
		}
	}
	return nil
}

func decode[T any, P message[T]](s *Server, e store.Entry) (P, bool) {
	m := P(new(T))
	if err := proto.Unmarshal(e.Value, m); err != nil {
		s.log.Error("registry: undecodable record skipped", "name", e.Name, "err", err)
		return nil, false
	}
	return m, true
}
