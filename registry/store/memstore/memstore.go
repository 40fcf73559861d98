// Package memstore keeps registry records in the memory of one process. It
// suits a single registry instance and tests: records do not survive a
// restart and are not shared. Expiry runs on one timer per record; watchers
// get buffered channels, and a watcher that falls a whole buffer behind is
// ended with store.ErrWatchLagged instead of slowing down writers.
//
// Tags are indexed: each tag has a bucket of the names that carry it, so a
// List of one tag reads that bucket only, and watchers are kept by the tag
// they asked for, so a change wakes the watchers of its record's tags (and
// those of every record) and no other.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vwire/vwire/registry/store"
)

// watchBuffer is how many events a watcher may leave unread before it is
// ended with store.ErrWatchLagged.
const watchBuffer = 1024

// ErrClosed is returned by calls on a closed Store and ends its watches.
var ErrClosed = errors.New("store closed")

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	// mu guards every field below and the fields of the records and
	// watchers they hold. Expiry timers and context callbacks take mu
	// too, so every change and every event is ordered by it.
	mu sync.Mutex
	// records holds the live records of each kind.
	records map[store.Kind]map[string]*record
	// names caches each kind's record names in order; nil when a name came
	// or went since (List sorts again).
	names map[store.Kind][]string
	// tagged holds each kind's buckets by tag; a bucket goes when its last
	// record does.
	tagged map[store.Kind]map[string]*bucket
	// watchers holds the open watches of each kind by the tag they watch
	// (store.All for every record).
	watchers map[store.Kind]map[string]map[*watcher]struct{}
	// closed is set by Close; every later call fails with ErrClosed.
	closed bool
}

// record is one stored value. A Put always makes a new record, so an expiry
// timer that fires late can tell its record has been replaced.
type record struct {
	value []byte
	// tags are the record's distinct tags, sorted.
	tags []string
	// expiry removes the record when its ttl runs out; nil without ttl.
	expiry *time.Timer
}

// bucket is the set of records that carry one tag.
type bucket struct {
	names map[string]struct{}
	// sorted caches names in order; nil when a name came or went since.
	sorted []string
}

// watcher is one open watch.
type watcher struct {
	// tag is what the watch selects: store.All or one tag.
	tag string
	// events is closed, under Store.mu, when the watch ends.
	events chan store.Event
	// err says why the watch ended; nil when its context was cancelled.
	err error
	// stopCancel unhooks the watch from its context.
	stopCancel func() bool
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		records:  make(map[store.Kind]map[string]*record),
		names:    make(map[store.Kind][]string),
		tagged:   make(map[store.Kind]map[string]*bucket),
		watchers: make(map[store.Kind]map[string]map[*watcher]struct{}),
	}
}

// Put creates or replaces a record and its tags. With ttl > 0 the record
// is removed ttl from now unless Put again before.
func (s *Store) Put(ctx context.Context, kind store.Kind, name string, value []byte, ttl time.Duration, tags ...string) error {
	tags, err := store.NormalizeTags(tags)
	if err == nil {
		err = checkPut(ctx, kind, name, ttl)
	}
	if err != nil {
		return fmt.Errorf("memstore: put %s/%s: %w", kind, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: put %s/%s: %w", kind, name, ErrClosed)
	}

	records := s.records[kind]
	if records == nil {
		records = make(map[string]*record)
		s.records[kind] = records
	}
	old := records[name]
	var oldTags []string
	if old != nil {
		old.stopExpiry()
		oldTags = old.tags
	} else {
		delete(s.names, kind)
	}
	rec := &record{value: bytes.Clone(value), tags: tags}
	if ttl > 0 {
		rec.expiry = time.AfterFunc(ttl, func() { s.expire(kind, name, rec) })
	}
	records[name] = rec
	for _, tag := range oldTags {
		if !slices.Contains(tags, tag) {
			s.untagLocked(kind, tag, name)
		}
	}
	for _, tag := range tags {
		if !slices.Contains(oldTags, tag) {
			s.tagLocked(kind, tag, name)
		}
	}

	put := store.Event{Entry: store.Entry{Name: name, Value: rec.value}}
	s.notifyLocked(kind, store.All, put)
	for _, tag := range tags {
		s.notifyLocked(kind, tag, put)
	}
	// Watchers of a tag the record lost see it go, as it was.
	for _, tag := range oldTags {
		if !slices.Contains(tags, tag) {
			s.notifyLocked(kind, tag, store.Event{Entry: store.Entry{Name: name, Value: old.value}, Deleted: true})
		}
	}
	return nil
}

// Get returns a copy of one record or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, kind store.Kind, name string) ([]byte, error) {
	if err := checkRecord(ctx, kind, name); err != nil {
		return nil, fmt.Errorf("memstore: get %s/%s: %w", kind, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("memstore: get %s/%s: %w", kind, name, ErrClosed)
	}
	rec := s.records[kind][name]
	if rec == nil {
		return nil, fmt.Errorf("memstore: get %s/%s: %w", kind, name, store.ErrNotFound)
	}
	return bytes.Clone(rec.value), nil
}

// Delete removes a record and stops its expiry; a missing record is
// store.ErrNotFound.
func (s *Store) Delete(ctx context.Context, kind store.Kind, name string) error {
	if err := checkRecord(ctx, kind, name); err != nil {
		return fmt.Errorf("memstore: delete %s/%s: %w", kind, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: delete %s/%s: %w", kind, name, ErrClosed)
	}
	rec := s.records[kind][name]
	if rec == nil {
		return fmt.Errorf("memstore: delete %s/%s: %w", kind, name, store.ErrNotFound)
	}
	s.removeLocked(kind, name, rec)
	return nil
}

// List returns the live records of a kind that carry tag (every one with
// store.All), ordered by name.
func (s *Store) List(ctx context.Context, kind store.Kind, tag string) ([]store.Entry, error) {
	if err := checkKind(ctx, kind); err != nil {
		return nil, fmt.Errorf("memstore: list %s: %w", kind, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("memstore: list %s: %w", kind, ErrClosed)
	}
	return s.listLocked(kind, tag), nil
}

// ListAndWatch returns the live records of a kind that carry tag (every one
// with store.All) and a feed of every later change to them. The feed ends
// when ctx is cancelled (Err nil), when the store is closed (ErrClosed) or
// when the consumer leaves watchBuffer events unread
// (store.ErrWatchLagged).
func (s *Store) ListAndWatch(ctx context.Context, kind store.Kind, tag string) ([]store.Entry, *store.Watch, error) {
	if err := checkKind(ctx, kind); err != nil {
		return nil, nil, fmt.Errorf("memstore: watch %s: %w", kind, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, fmt.Errorf("memstore: watch %s: %w", kind, ErrClosed)
	}

	entries := s.listLocked(kind, tag)
	w := &watcher{tag: tag, events: make(chan store.Event, watchBuffer)}
	if s.watchers[kind] == nil {
		s.watchers[kind] = make(map[string]map[*watcher]struct{})
	}
	if s.watchers[kind][tag] == nil {
		s.watchers[kind][tag] = make(map[*watcher]struct{})
	}
	s.watchers[kind][tag][w] = struct{}{}
	// If ctx is already done the callback runs at once, in its own
	// goroutine, and waits for mu: the watch is registered by then.
	w.stopCancel = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.endWatchLocked(kind, w, nil)
	})

	errOf := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		return w.err
	}
	return entries, &store.Watch{Events: w.events, Err: errOf}, nil
}

// Close stops every expiry timer and ends every watch with ErrClosed. It is
// safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, records := range s.records {
		for _, rec := range records {
			rec.stopExpiry()
		}
	}
	s.records = nil
	for kind, byTag := range s.watchers {
		for _, watchers := range byTag {
			for w := range watchers {
				s.endWatchLocked(kind, w, ErrClosed)
			}
		}
	}
	return nil
}

// expire is run by rec's timer. It removes rec unless a Put, Delete or
// Close got there first.
func (s *Store) expire(kind store.Kind, name string, rec *record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.records[kind][name] != rec {
		return
	}
	s.removeLocked(kind, name, rec)
}

// removeLocked deletes rec, takes it out of its tags' buckets and tells
// the watchers. s.mu must be held.
func (s *Store) removeLocked(kind store.Kind, name string, rec *record) {
	rec.stopExpiry()
	delete(s.records[kind], name)
	delete(s.names, kind)
	for _, tag := range rec.tags {
		s.untagLocked(kind, tag, name)
	}
	ev := store.Event{Entry: store.Entry{Name: name, Value: rec.value}, Deleted: true}
	s.notifyLocked(kind, store.All, ev)
	for _, tag := range rec.tags {
		s.notifyLocked(kind, tag, ev)
	}
}

// tagLocked adds name to tag's bucket. s.mu must be held.
func (s *Store) tagLocked(kind store.Kind, tag, name string) {
	buckets := s.tagged[kind]
	if buckets == nil {
		buckets = make(map[string]*bucket)
		s.tagged[kind] = buckets
	}
	b := buckets[tag]
	if b == nil {
		b = &bucket{names: make(map[string]struct{})}
		buckets[tag] = b
	}
	b.names[name] = struct{}{}
	b.sorted = nil
}

// untagLocked takes name out of tag's bucket. s.mu must be held.
func (s *Store) untagLocked(kind store.Kind, tag, name string) {
	b := s.tagged[kind][tag]
	if b == nil {
		return
	}
	delete(b.names, name)
	b.sorted = nil
	if len(b.names) == 0 {
		delete(s.tagged[kind], tag)
	}
}

// listLocked returns the records of a kind that carry tag (all of them
// with store.All) in name order. Values are shared, not copied: a record's
// value never changes once stored (a Put makes a new one), and readers do
// not write to it (store.Entry). s.mu must be held.
func (s *Store) listLocked(kind store.Kind, tag string) []store.Entry {
	records := s.records[kind]
	var names []string
	if tag == store.All {
		var ok bool
		if names, ok = s.names[kind]; !ok {
			names = slices.Sorted(maps.Keys(records))
			s.names[kind] = names
		}
	} else if b := s.tagged[kind][tag]; b != nil {
		if b.sorted == nil {
			b.sorted = slices.Sorted(maps.Keys(b.names))
		}
		names = b.sorted
	}
	entries := make([]store.Entry, 0, len(names))
	for _, name := range names {
		entries = append(entries, store.Entry{Name: name, Value: records[name].value})
	}
	return entries
}

// notifyLocked hands ev to every watcher of kind and tag without
// blocking; a watcher with a full buffer is ended with
// store.ErrWatchLagged. Each watcher gets its own copy of the value. s.mu
// must be held.
func (s *Store) notifyLocked(kind store.Kind, tag string, ev store.Event) {
	for w := range s.watchers[kind][tag] {
		own := ev
		own.Value = bytes.Clone(ev.Value)
		select {
		case w.events <- own:
		default:
			s.endWatchLocked(kind, w, fmt.Errorf("memstore: watch %s: %d events unread: %w", kind, watchBuffer, store.ErrWatchLagged))
		}
	}
}

// endWatchLocked ends w with err unless it has ended already. s.mu must be
// held.
func (s *Store) endWatchLocked(kind store.Kind, w *watcher, err error) {
	watchers := s.watchers[kind][w.tag]
	if _, ok := watchers[w]; !ok {
		return
	}
	delete(watchers, w)
	if len(watchers) == 0 {
		delete(s.watchers[kind], w.tag)
	}
	w.err = err
	close(w.events)
	w.stopCancel()
}

// stopExpiry stops the record's timer, if it has one.
func (r *record) stopExpiry() {
	if r.expiry != nil {
		r.expiry.Stop()
	}
}

// checkKind rejects a done context and a kind that cannot be a key prefix.
// Kinds may not hold "/" so that every store can use "<kind>/<name>" keys.
func checkKind(ctx context.Context, kind store.Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if kind == "" || strings.Contains(string(kind), "/") {
		return fmt.Errorf("invalid kind %q: want a non-empty name without %q", kind, "/")
	}
	return nil
}

// checkRecord is checkKind plus a non-empty record name.
func checkRecord(ctx context.Context, kind store.Kind, name string) error {
	if err := checkKind(ctx, kind); err != nil {
		return err
	}
	if name == "" {
		return errors.New("empty record name")
	}
	return nil
}

// checkPut is checkRecord plus a ttl that is not negative.
func checkPut(ctx context.Context, kind store.Kind, name string, ttl time.Duration) error {
	if err := checkRecord(ctx, kind, name); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("negative ttl %v", ttl)
	}
	return nil
}
