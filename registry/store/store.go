// Package store defines the storage contract behind the registry: a keyed set of
// opaque records per kind, with optional expiry, an index by tag and an
// ordered change feed. The registry server owns encoding and matching; a
// store only keeps bytes and the tags it is given (the registry tags each
// endpoint with its network service names), so that a look-up or a watch
// of one tag touches only the records that carry it. Two implementations
// exist: memstore (a single process) and etcdstore (several registry
// replicas sharing one etcd cluster).
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Kind names a family of records: one key space per kind.
type Kind string

// The kinds the registry keeps.
const (
	KindService  Kind = "ns"
	KindEndpoint Kind = "nse"
)

// Entry is one stored record. Its Value may be shared with the store and
// with other readers: read it, never write to it.
type Entry struct {
	Name  string
	Value []byte
}

// Event is one change seen by a watcher. For a deletion (explicit or by expiry)
// Value holds the record as it was last stored.
type Event struct {
	Entry
	Deleted bool
}

// All is the tag argument of List and ListAndWatch that selects every
// record of a kind, tagged or not.
const All = ""

// MaxTags is how many distinct tags one record may carry. It keeps a Put
// within etcd's default limit of 128 operations per transaction.
const MaxTags = 50

// Sentinel errors.
var (
	ErrNotFound = errors.New("not found")
	// ErrWatchLagged ends a watch whose consumer fell too far behind; the
	// watcher must list again.
	ErrWatchLagged = errors.New("watcher fell behind")
)

// Watch is a live change feed. Events is closed when the watch ends; Err then
// tells why (nil when the context was cancelled).
type Watch struct {
	Events <-chan Event
	Err    func() error
}

// Store is the registry's persistence contract. Every method is safe for
// concurrent use. Implementations must deliver events for one name in the
// order the changes were made, and a watch opened with ListAndWatch must see
// every change made after its snapshot and none made before it.
type Store interface {
	// Put creates or replaces a record. ttl > 0 makes it expire ttl from now
	// unless Put again before; ttl == 0 keeps it until deleted. tags
	// replace the record's tags: non-empty strings, duplicates ignored, at
	// most MaxTags distinct ones.
	Put(ctx context.Context, kind Kind, name string, value []byte, ttl time.Duration, tags ...string) error
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, kind Kind, name string) ([]byte, error)
	// Delete removes a record; deleting a missing record returns ErrNotFound.
	Delete(ctx context.Context, kind Kind, name string) error
	// List returns the live records of a kind that carry tag (every one
	// with All), ordered by name. Its cost grows with the records it
	// returns, not with the kind's size.
	List(ctx context.Context, kind Kind, tag string) ([]Entry, error)
	// ListAndWatch returns what List returns and a feed of every later
	// change to those records, until ctx is cancelled. With a tag, the feed
	// holds only changes to records that carry the tag before or after
	// the change: a record that gains the tag comes as a put, and one that
	// loses it as a deletion whose Value is the record as it was while it
	// carried the tag. Changes to other records do not reach the watch.
	ListAndWatch(ctx context.Context, kind Kind, tag string) ([]Entry, *Watch, error)
	// Close releases the store; it is safe to call twice.
	Close() error
}

// NormalizeTags returns tags sorted and without duplicates (nil for none),
// or an error if one is empty or there are more than MaxTags distinct ones.
// Stores call it on every Put.
func NormalizeTags(tags []string) ([]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	out := slices.Compact(slices.Sorted(slices.Values(tags)))
	if out[0] == "" {
		return nil, errors.New("empty tag")
	}
	if len(out) > MaxTags {
		return nil, fmt.Errorf("%d tags, at most %d allowed", len(out), MaxTags)
	}
	return out, nil
}
