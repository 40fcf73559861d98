// Package store defines the storage contract behind the registry: a keyed set of
// opaque records per kind, with optional expiry and an ordered change feed.
// The registry server owns encoding and matching; a store only keeps bytes.
// Two implementations exist: memstore (a single process) and etcdstore
// (several registry replicas sharing one etcd cluster).
package store

import (
	"context"
	"errors"
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
	// unless Put again before; ttl == 0 keeps it until deleted.
	Put(ctx context.Context, kind Kind, name string, value []byte, ttl time.Duration) error
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, kind Kind, name string) ([]byte, error)
	// Delete removes a record; deleting a missing record returns ErrNotFound.
	Delete(ctx context.Context, kind Kind, name string) error
	// List returns every live record of a kind, ordered by name.
	List(ctx context.Context, kind Kind) ([]Entry, error)
	// ListAndWatch returns the live records and a feed of every later change,
	// until ctx is cancelled.
	ListAndWatch(ctx context.Context, kind Kind) ([]Entry, *Watch, error)
	// Close releases the store; it is safe to call twice.
	Close() error
}
