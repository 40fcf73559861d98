// Package etcdstore keeps registry records in etcd, so that several registry
// replicas share one set of records and one change feed. A record lives at
// "<prefix><kind>/<name>". A record with a ttl is attached to a lease granted
// for that Put; when the lease runs out etcd deletes the key and every
// watcher sees the deletion, whether or not the replica that wrote it still
// runs. Watches start at the revision of their snapshot, so none miss a
// change or replay an older one.
//
// The index by tag is kept in etcd too, in the same transaction as the
// record, so every replica reads the same index and nothing is cached in a
// replica: a tagged record also has a copy at
// "<prefix>/by-tag/<kind>/<tag>/<name>" for each tag (the tag
// path-escaped) and the list of its tags at "<prefix>/tags-of/<kind>/<name>",
// all on the record's lease, so that expiry removes them in the same
// revision. (Kinds are never empty, so "<prefix>/" is no kind's prefix.) A
// List of one tag is then one range read of its copies, and a watch of one
// tag is an etcd watch of that range: etcd sends it only that tag's changes.
// A Put or Delete reads the record's revision and old tags, then writes
// everything in a transaction that applies only if the record has not
// changed since, and tries again if it has. Records stored by a version
// without the index get their copies at their next Put (an endpoint's next
// refresh).
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vwire/vwire/registry/store"
)

// DefaultPrefix is where records live when Config.Prefix is empty.
const DefaultPrefix = "/vwire/registry/"

const (
	// defaultDialTimeout bounds New's first contact with etcd.
	defaultDialTimeout = 5 * time.Second
	// watchBuffer smooths bursts between etcd and a watch consumer. A
	// consumer that stops reading holds up its own etcd watch only; etcd
	// catches the watch up later or, if it compacted in between, ends it.
	watchBuffer = 64
	// maxAttempts bounds how often a Put or Delete reads and tries again
	// while other writers keep changing the same record.
	maxAttempts = 16
)

// ErrClosed is returned by calls on a closed Store and ends its watches.
var ErrClosed = errors.New("store closed")

// Config says how to reach etcd and where to keep records.
type Config struct {
	// Endpoints are etcd client URLs, such as "https://10.0.0.1:2379".
	Endpoints []string
	// Prefix is put before every key; DefaultPrefix when empty. A "/" is
	// added at the end when missing, so that "/a" and "/ab" never overlap.
	Prefix string
	// DialTimeout bounds connecting to etcd in New; 5 s when zero.
	DialTimeout time.Duration
	// TLS, when set, secures the connections to etcd (LoadTLS reads it from
	// files); every endpoint must then be https. Without it the endpoints
	// are all http, or all https checked against the system's roots.
	TLS *tls.Config
	// Logger receives the store's own log lines; nothing is logged when
	// nil. The etcd client's internal logging is discarded.
	Logger *slog.Logger
}

// Store is a store.Store on etcd. Several Stores, in one process or many,
// may share a prefix: they then see each other's records and changes.
type Store struct {
	client *clientv3.Client
	prefix string
	log    *slog.Logger

	// ctx is cancelled by Close; it ends every watch.
	ctx    context.Context
	cancel context.CancelFunc
	// watches counts the running watch goroutines; Close waits for them.
	watches sync.WaitGroup

	// mu guards closed, so that no watch starts once Close waits.
	mu     sync.Mutex
	closed bool
}

var _ store.Store = (*Store)(nil)

// New connects to etcd and checks, within ctx and cfg.DialTimeout, that the
// cluster answers.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdstore: new: no endpoints")
	}
	https, err := checkSchemes(cfg.Endpoints, cfg.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: new: %w", err)
	}
	tlsConfig := cfg.TLS
	if https && tlsConfig == nil {
		// https without files: the system's roots, no client certificate.
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	dialTimeout := cfg.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = defaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: dialTimeout,
		TLS:         tlsConfig,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: new: connect to %v: %w", cfg.Endpoints, err)
	}
	// The client connects lazily; one read proves the cluster has a leader
	// and lets us in.
	probeCtx, cancelProbe := context.WithTimeout(ctx, dialTimeout)
	defer cancelProbe()
	if _, err := client.Get(probeCtx, prefix, clientv3.WithCountOnly()); err != nil {
		_ = client.Close()
		if tlsConfig != nil {
			// The client retries a refused handshake until the deadline;
			// one handshake of our own says why it was refused.
			if why := diagnoseTLS(ctx, cfg.Endpoints[0], tlsConfig, dialTimeout); why != nil {
				err = fmt.Errorf("%w (TLS with %s: %w)", err, cfg.Endpoints[0], why)
			}
		}
		return nil, fmt.Errorf("etcdstore: new: reach %v: %w", cfg.Endpoints, err)
	}

	s := &Store{client: client, prefix: prefix, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	log.Debug("etcdstore: connected", "endpoints", cfg.Endpoints, "prefix", prefix)
	return s, nil
}

// checkSchemes refuses endpoints whose schemes disagree with each other or
// with the TLS setting: the etcd client would otherwise dial some in the
// wrong protocol and fail with an unhelpful timeout. It reports whether
// the endpoints are https.
func checkSchemes(endpoints []string, withTLS bool) (bool, error) {
	https := withTLS
	for i, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return false, fmt.Errorf("endpoint %q: want http://host:port or https://host:port", e)
		}
		if i == 0 && !withTLS {
			https = u.Scheme == "https"
		}
		switch {
		case (u.Scheme == "https") == https:
		case withTLS:
			return false, fmt.Errorf("endpoint %s: TLS files are given, so it must be https://%s", e, u.Host)
		default:
			return false, fmt.Errorf("endpoint %s: all endpoints must be http or all https", e)
		}
	}
	return https, nil
}

// Put creates or replaces a record, its tags and its copies under them. With
// ttl > 0 they are attached to a new lease of ttl rounded up to whole
// seconds (etcd may grant more); Put again renews them with a new lease, and
// ttl == 0 detaches them from any lease. A lease left behind by a replaced
// record holds no key and simply expires.
func (s *Store) Put(ctx context.Context, kind store.Kind, name string, value []byte, ttl time.Duration, tags ...string) error {
	_, err := s.recordKey(kind, name)
	if err == nil && ttl < 0 {
		err = fmt.Errorf("negative ttl %v", ttl)
	}
	if err == nil {
		tags, err = store.NormalizeTags(tags)
	}
	if err != nil {
		return fmt.Errorf("etcdstore: put %s/%s: %w", kind, name, err)
	}

	var opts []clientv3.OpOption
	if ttl > 0 {
		lease, err := s.client.Grant(ctx, leaseSeconds(ttl))
		if err != nil {
			return fmt.Errorf("etcdstore: put %s/%s: grant %v lease: %w", kind, name, ttl, err)
		}
		opts = append(opts, clientv3.WithLease(lease.ID))
	}
	err = s.update(ctx, kind, name, func(k keys, _ bool, oldTags []string) ([]clientv3.Op, error) {
		ops := []clientv3.Op{clientv3.OpPut(k.record, string(value), opts...)}
		if len(tags) > 0 {
			ops = append(ops, clientv3.OpPut(k.tags, encodeTags(tags), opts...))
		} else if len(oldTags) > 0 {
			ops = append(ops, clientv3.OpDelete(k.tags))
		}
		for _, tag := range tags {
			ops = append(ops, clientv3.OpPut(k.copy(tag), string(value), opts...))
		}
		for _, tag := range oldTags {
			if !slices.Contains(tags, tag) {
				ops = append(ops, clientv3.OpDelete(k.copy(tag)))
			}
		}
		return ops, nil
	})
	if err != nil {
		return fmt.Errorf("etcdstore: put %s/%s: %w", kind, name, err)
	}
	return nil
}

// Get returns one record or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, kind store.Kind, name string) ([]byte, error) {
	key, err := s.recordKey(kind, name)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: get %s/%s: %w", kind, name, err)
	}
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: get %s/%s: %w", kind, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdstore: get %s/%s: %w", kind, name, store.ErrNotFound)
	}
	return resp.Kvs[0].Value, nil
}

// Delete removes a record with its tags and copies; a missing record is
// store.ErrNotFound. The record's lease, if any, is left to expire.
func (s *Store) Delete(ctx context.Context, kind store.Kind, name string) error {
	if _, err := s.recordKey(kind, name); err != nil {
		return fmt.Errorf("etcdstore: delete %s/%s: %w", kind, name, err)
	}
	err := s.update(ctx, kind, name, func(k keys, exists bool, oldTags []string) ([]clientv3.Op, error) {
		if !exists {
			return nil, store.ErrNotFound
		}
		ops := []clientv3.Op{clientv3.OpDelete(k.record)}
		if len(oldTags) > 0 {
			ops = append(ops, clientv3.OpDelete(k.tags))
		}
		for _, tag := range oldTags {
			ops = append(ops, clientv3.OpDelete(k.copy(tag)))
		}
		return ops, nil
	})
	if err != nil {
		return fmt.Errorf("etcdstore: delete %s/%s: %w", kind, name, err)
	}
	return nil
}

// List returns the live records of a kind that carry tag (every one with
// store.All), ordered by name: one range read.
func (s *Store) List(ctx context.Context, kind store.Kind, tag string) ([]store.Entry, error) {
	prefix, err := s.rangePrefix(kind, tag)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: list %s: %w", kind, err)
	}
	entries, _, err := s.list(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: list %s: %w", kind, err)
	}
	return entries, nil
}

// ListAndWatch returns the live records of a kind that carry tag (every one
// with store.All) and a feed of every later change to them. The feed ends
// when ctx is cancelled (Err nil), when the store is closed (ErrClosed), or
// when etcd ends the watch, for example after compacting past it (an error
// that also matches store.ErrWatchLagged) or after losing its leader.
func (s *Store) ListAndWatch(ctx context.Context, kind store.Kind, tag string) ([]store.Entry, *store.Watch, error) {
	prefix, err := s.rangePrefix(kind, tag)
	if err != nil {
		return nil, nil, fmt.Errorf("etcdstore: watch %s: %w", kind, err)
	}
	entries, rev, err := s.list(ctx, prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("etcdstore: watch %s: %w", kind, err)
	}
	w, err := s.watch(ctx, kind, prefix, rev+1)
	if err != nil {
		return nil, nil, err
	}
	return entries, w, nil
}

// keys are the etcd keys of one record.
type keys struct {
	// record holds the value; tags the record's tags, when it has any.
	record, tags string
	// byTag is where the copies of the record's kind are; copy(tag) adds
	// the tag and the record's name.
	byTag, name string
}

func (k keys) copy(tag string) string { return k.byTag + url.PathEscape(tag) + "/" + k.name }

// update reads a record's revision and tags, asks ops for the operations
// that change it, and applies them in one transaction if the record has
// not changed in between; otherwise it reads again. An error from ops ends
// it.
func (s *Store) update(ctx context.Context, kind store.Kind, name string,
	ops func(k keys, exists bool, oldTags []string) ([]clientv3.Op, error)) error {
	record, err := s.recordKey(kind, name)
	if err != nil {
		return err
	}
	k := keys{record: record, tags: s.prefix + "/tags-of/" + string(kind) + "/" + name, byTag: s.byTagPrefix(kind), name: name}
	for range maxAttempts {
		read, err := s.client.Txn(ctx).Then(
			clientv3.OpGet(k.record, clientv3.WithKeysOnly()),
			clientv3.OpGet(k.tags),
		).Commit()
		if err != nil {
			return err
		}
		var rev int64 // 0: no record
		if kvs := read.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			rev = kvs[0].ModRevision
		}
		var oldTags []string
		if kvs := read.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
			if oldTags, err = decodeTags(kvs[0].Value); err != nil {
				return fmt.Errorf("tags at %s: %w", k.tags, err)
			}
		}
		change, err := ops(k, rev != 0, oldTags)
		if err != nil {
			return err
		}
		resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k.record), "=", rev)).Then(change...).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("changed by other writers %d times in a row while this one tried", maxAttempts)
}

// encodeTags joins path-escaped tags with "/", which escaping removes from
// the tags themselves.
func encodeTags(tags []string) string {
	escaped := make([]string, len(tags))
	for i, tag := range tags {
		escaped[i] = url.PathEscape(tag)
	}
	return strings.Join(escaped, "/")
}

func decodeTags(value []byte) ([]string, error) {
	var tags []string
	for escaped := range strings.SplitSeq(string(value), "/") {
		tag, err := url.PathUnescape(escaped)
		if err != nil {
			return nil, err
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// Close ends every watch, waits for them, and disconnects from etcd. Records
// and their leases stay in etcd. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	s.cancel()
	s.watches.Wait()
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcdstore: close: %w", err)
	}
	return nil
}

// list reads the records under prefix (a kind's or a tag's) and returns
// them with the revision they were read at.
func (s *Store) list(ctx context.Context, prefix string) ([]store.Entry, int64, error) {
	// etcd returns a range in key order; within one prefix that is name
	// order.
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	entries := make([]store.Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		entries = append(entries, store.Entry{Name: strings.TrimPrefix(string(kv.Key), prefix), Value: kv.Value})
	}
	return entries, resp.Header.Revision, nil
}

// watch feeds every change under prefix (a kind's or a tag's) from
// revision rev on, until ctx or the store ends.
func (s *Store) watch(ctx context.Context, kind store.Kind, prefix string, rev int64) (*store.Watch, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("etcdstore: watch %s: %w", kind, ErrClosed)
	}
	s.watches.Add(1)
	s.mu.Unlock()

	watchCtx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(s.ctx, cancel)
	// WithRequireLeader: a member cut off from its cluster ends the watch
	// instead of going silent.
	changes := s.client.Watch(clientv3.WithRequireLeader(watchCtx), prefix,
		clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV())

	events := make(chan store.Event, watchBuffer)
	var (
		mu     sync.Mutex
		reason error // guarded by mu; set before events is closed
	)
	go func() {
		defer s.watches.Done()
		defer cancel()
		defer stopOnClose()

		err := s.forward(watchCtx, kind, prefix, rev, changes, events)
		switch {
		case ctx.Err() != nil:
			err = nil
		case s.ctx.Err() != nil:
			err = fmt.Errorf("etcdstore: watch %s: %w", kind, ErrClosed)
		default:
			s.log.Debug("etcdstore: watch ended", "kind", kind, "error", err)
		}
		mu.Lock()
		reason = err
		mu.Unlock()
		close(events)
	}()

	errOf := func() error {
		mu.Lock()
		defer mu.Unlock()
		return reason
	}
	return &store.Watch{Events: events, Err: errOf}, nil
}

// forward turns etcd watch responses into events until the watch or ctx
// ends, and says why it ended.
func (s *Store) forward(ctx context.Context, kind store.Kind, prefix string, rev int64, changes clientv3.WatchChan, events chan<- store.Event) error {
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok = <-changes:
		}
		if !ok {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("etcdstore: watch %s: etcd closed the watch", kind)
		}
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("etcdstore: watch %s from revision %d: %w: %w", kind, rev, store.ErrWatchLagged, err)
			}
			return fmt.Errorf("etcdstore: watch %s: %w", kind, err)
		}
		for _, ev := range resp.Events {
			out := store.Event{Entry: store.Entry{
				Name:  strings.TrimPrefix(string(ev.Kv.Key), prefix),
				Value: ev.Kv.Value,
			}}
			if ev.Type == mvccpb.DELETE {
				out.Deleted = true
				out.Value = nil
				if ev.PrevKv != nil {
					out.Value = ev.PrevKv.Value
				} else {
					// etcd keeps the previous value unless it was compacted away.
					s.log.Warn("etcdstore: deletion without its last value", "kind", kind, "name", out.Name)
				}
			}
			select {
			case events <- out:
			case <-ctx.Done():
				return ctx.Err()
			}
			rev = ev.Kv.ModRevision + 1
		}
	}
}

// kindPrefix returns the key prefix of a kind's records. Kinds may not hold
// "/", so that no kind's prefix is inside another's.
func (s *Store) kindPrefix(kind store.Kind) (string, error) {
	if err := s.ctx.Err(); err != nil {
		return "", ErrClosed
	}
	if kind == "" || strings.Contains(string(kind), "/") {
		return "", fmt.Errorf("invalid kind %q: want a non-empty name without %q", kind, "/")
	}
	return s.prefix + string(kind) + "/", nil
}

// rangePrefix returns the key prefix of a kind's records, or with a tag of
// the copies of the records that carry it.
func (s *Store) rangePrefix(kind store.Kind, tag string) (string, error) {
	prefix, err := s.kindPrefix(kind)
	if err != nil || tag == store.All {
		return prefix, err
	}
	return s.byTagPrefix(kind) + url.PathEscape(tag) + "/", nil
}

// byTagPrefix is where the copies of a kind's tagged records are, under
// "<prefix>/": no kind's prefix, as kinds are never empty.
func (s *Store) byTagPrefix(kind store.Kind) string {
	return s.prefix + "/by-tag/" + string(kind) + "/"
}

// recordKey returns the key of one record.
func (s *Store) recordKey(kind store.Kind, name string) (string, error) {
	prefix, err := s.kindPrefix(kind)
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", errors.New("empty record name")
	}
	return prefix + name, nil
}

// leaseSeconds rounds ttl up to whole seconds, at least one.
func leaseSeconds(ttl time.Duration) int64 {
	return max(1, int64((ttl+time.Second-1)/time.Second))
}
