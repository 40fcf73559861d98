// Package kubestore keeps registry records as Kubernetes custom resources:
// each kind of record is one resource (the registry's NetworkServices and
// NetworkServiceEndpoints are networkservicemesh.io/v1 objects), each
// record one object in one namespace. Several registry replicas may share
// the namespace, and objects created with kubectl are records like any
// other.
//
// Reads come from a local mirror fed by one informer per resource (a list,
// then a watch; no polling): the mirror is a memstore holding what the API
// server last said, so List, the tag index and ListAndWatch behave exactly
// as memstore's, with events in the API server's order. A write goes to
// the API server and returns once the mirror has seen it, so a caller
// reads its own writes.
//
// An object keeps the record's value as it was given, in the annotation
// registry.vwire.io/value (base64), beside a spec a Codec renders from it
// for kubectl users. The annotation registry.vwire.io/spec-hash holds the
// hash of that spec: when the spec no longer matches it (someone edited
// the object) or the object has no value annotation (someone created it),
// the Codec reads the value from the spec instead. Tags are kept in
// registry.vwire.io/tags (a JSON list), or taken from the Codec for objects
// without it.
//
// Expiry: a record put with a ttl has registry.vwire.io/expires (RFC 3339,
// from the writer's clock; replicas' clocks are assumed in step); a record
// read from a spec expires when the spec says (Expiring: an endpoint's
// expiration_time), so that an endpoint applied with kubectl expires as a
// registered one does. Every
// replica's mirror arms a timer for it and, when it fires, deletes the
// object on condition that it is still the same version, so a record that
// was put again meanwhile lives on and a deletion by several replicas at
// once is harmless.
//
// Names: see ObjectName.
package kubestore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/memstore"
)

// The annotations the store keeps on each object.
const (
	AnnotationValue    = "registry.vwire.io/value"
	AnnotationSpecHash = "registry.vwire.io/spec-hash"
	AnnotationTags     = "registry.vwire.io/tags"
	AnnotationExpires  = "registry.vwire.io/expires"
)

const (
	// syncTimeout bounds New's first list of each resource.
	syncTimeout = 30 * time.Second
	// maxAttempts bounds how often a Put reads and writes again while
	// other writers keep changing the same object.
	maxAttempts = 16
	// expireTimeout bounds one expiry deletion.
	expireTimeout = 10 * time.Second
)

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("store closed")

// Codec turns a record's value into an object's spec and back. A nil
// Codec (in Resource) keeps no spec: records are then only in the value
// annotation, and objects without it are ignored.
type Codec interface {
	// Spec renders value as the object's spec; nil for none.
	Spec(name string, value []byte) (map[string]any, error)
	// Value reads the record from an object's spec (nil when it has
	// none), with its tags.
	Value(name string, spec map[string]any) (value []byte, tags []string, err error)
}

// Expiring is a Codec whose records say when they expire (an endpoint's
// expiration_time): a record read from a spec expires then, as one the
// store wrote expires at its ttl.
type Expiring interface {
	// Expires returns the record's expiry, false when it has none.
	Expires(value []byte) (time.Time, bool)
}

// Resource is where the records of one kind live.
type Resource struct {
	// GVR names the custom resource, such as
	// networkservicemesh.io/v1 networkserviceendpoints.
	GVR schema.GroupVersionResource
	// Kind is the object kind, such as NetworkServiceEndpoint.
	Kind  string
	Codec Codec
}

// Config says how to reach the API server and where records live.
type Config struct {
	// REST reaches the API server (rest.InClusterConfig, or a kubeconfig).
	REST *rest.Config
	// Namespace holds the objects.
	Namespace string
	// Resources maps each kind of record to its resource. A kind without
	// one has no records: Put fails, List is empty.
	Resources map[store.Kind]Resource
	// Logger receives the store's own log lines; nothing is logged when
	// nil.
	Logger *slog.Logger
}

// Store is a store.Store on the Kubernetes API.
type Store struct {
	client    dynamic.Interface
	namespace string
	resources map[store.Kind]Resource
	log       *slog.Logger
	// mirror holds what the informers last delivered.
	mirror *memstore.Store

	// ctx is cancelled by Close; it stops the informers and expiry.
	ctx    context.Context
	cancel context.CancelFunc
	// informers counts the running informers; Close waits for them.
	informers sync.WaitGroup

	// mu guards the fields below.
	mu sync.Mutex
	// seen is, per kind, what the mirror holds of each object.
	seen map[store.Kind]map[string]seenObject
	// lastRV is, per kind, the highest resourceVersion delivered.
	lastRV map[store.Kind]uint64
	// changed is closed and replaced whenever seen or lastRV change, to
	// wake writers that wait for the mirror.
	changed chan struct{}
	// expiries holds the armed expiry timers by kind and record name.
	expiries map[store.Kind]map[string]*time.Timer
	closed   bool
}

// seenObject is the version of an object that the mirror holds.
type seenObject struct {
	uid types.UID
	rv  string
}

var _ store.Store = (*Store)(nil)

// New lists every resource of cfg and starts watching them; it returns
// once the mirror holds the lists, or fails within ctx and 30 s (for
// example when a resource's CRD is not installed or access is denied).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.REST == nil {
		return nil, errors.New("kubestore: new: no API server configuration")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kubestore: new: no namespace")
	}
	client, err := dynamic.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("kubestore: new: client for %s: %w", cfg.REST.Host, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		client:    client,
		namespace: cfg.Namespace,
		resources: cfg.Resources,
		log:       log,
		mirror:    memstore.New(),
		seen:      make(map[store.Kind]map[string]seenObject),
		lastRV:    make(map[store.Kind]uint64),
		changed:   make(chan struct{}),
		expiries:  make(map[store.Kind]map[string]*time.Timer),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	syncCtx, cancelSync := context.WithTimeout(ctx, syncTimeout)
	defer cancelSync()
	for kind, res := range cfg.Resources {
		if err := s.startInformer(syncCtx, kind, res); err != nil {
			s.Close()
			return nil, fmt.Errorf("kubestore: new: %s in namespace %s at %s: %w", res.GVR.Resource, cfg.Namespace, cfg.REST.Host, err)
		}
	}
	log.Debug("kubestore: synced", "host", cfg.REST.Host, "namespace", cfg.Namespace)
	return s, nil
}

// startInformer lists and watches one resource into the mirror and waits
// for the list.
func (s *Store) startInformer(ctx context.Context, kind store.Kind, res Resource) error {
	// One quick list first: a missing CRD or a denied list fails here with
	// the API server's message instead of an informer retrying in silence.
	if _, err := s.client.Resource(res.GVR).Namespace(s.namespace).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return err
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(s.client, res.GVR, s.namespace, 0, cache.Indexers{}, nil).Informer()
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.apply(kind, res, obj, false) },
		UpdateFunc: func(_, obj any) { s.apply(kind, res, obj, false) },
		DeleteFunc: func(obj any) { s.apply(kind, res, obj, true) },
	})
	if err != nil {
		return err
	}
	s.informers.Add(1)
	go func() {
		defer s.informers.Done()
		inf.RunWithContext(s.ctx)
	}()
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return fmt.Errorf("list not received: %w", context.Cause(ctx))
	}
	return nil
}

// apply brings one informer delivery into the mirror. Deliveries of one
// resource come one at a time, in the API server's order.
func (s *Store) apply(kind store.Kind, res Resource, obj any, deleted bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = tomb.Obj, true
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	name, ok := RecordName(u.GetName())
	if !ok {
		s.log.Warn("kubestore: object name not made by vwire; ignored", "resource", res.GVR.Resource, "object", u.GetName())
		return
	}
	ctx := context.Background()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	defer s.wakeLocked()
	if rv, err := strconv.ParseUint(u.GetResourceVersion(), 10, 64); err == nil && rv > s.lastRV[kind] {
		s.lastRV[kind] = rv
	}
	seen := s.seen[kind]
	if seen == nil {
		seen = make(map[string]seenObject)
		s.seen[kind] = seen
	}
	old, had := seen[name]
	if !deleted && had && old.uid == u.GetUID() && old.rv == u.GetResourceVersion() {
		return // a resync of what the mirror holds
	}
	s.stopExpiryLocked(kind, name)

	var (
		value    []byte
		tags     []string
		fromSpec bool
		err      error
	)
	if !deleted {
		value, tags, fromSpec, err = readObject(name, res, u)
		if err != nil {
			s.log.Warn("kubestore: object holds no valid record; ignored", "resource", res.GVR.Resource, "object", u.GetName(), "err", err)
			deleted = true
		}
	}
	if deleted {
		delete(seen, name)
		if had {
			if err := s.mirror.Delete(ctx, kind, name); err != nil && !errors.Is(err, store.ErrNotFound) {
				s.log.Error("kubestore: mirror delete", "kind", kind, "name", name, "err", err)
			}
		}
		return
	}
	seen[name] = seenObject{uid: u.GetUID(), rv: u.GetResourceVersion()}
	if err := s.mirror.Put(ctx, kind, name, value, 0, tags...); err != nil {
		s.log.Error("kubestore: mirror put", "kind", kind, "name", name, "err", err)
		return
	}
	if expires, ok := s.expiry(res, u, value, fromSpec); ok {
		s.armExpiryLocked(kind, res, name, u.GetName(), seenObject{uid: u.GetUID(), rv: u.GetResourceVersion()}, time.Until(expires))
	}
}

// expiry returns when the record an object holds expires. A record read
// from the spec (an object created or edited with kubectl) expires when
// the spec says, if the Codec reads an expiry from it; otherwise, and for
// records the store wrote, at the expires annotation.
func (s *Store) expiry(res Resource, u *unstructured.Unstructured, value []byte, fromSpec bool) (time.Time, bool) {
	if e, ok := res.Codec.(Expiring); ok && fromSpec {
		if at, ok := e.Expires(value); ok {
			return at, true
		}
	}
	at, ok := u.GetAnnotations()[AnnotationExpires]
	if !ok {
		return time.Time{}, false
	}
	expires, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		s.log.Warn("kubestore: bad expiry; the record does not expire", "object", u.GetName(), "expires", at, "err", err)
		return time.Time{}, false
	}
	return expires, true
}

// readObject returns the record an object holds, and whether it was read
// from the spec.
func readObject(name string, res Resource, u *unstructured.Unstructured) ([]byte, []string, bool, error) {
	ann := u.GetAnnotations()
	spec, _, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil {
		return nil, nil, false, fmt.Errorf("spec: %w", err)
	}
	encoded, hasValue := ann[AnnotationValue]
	if hasValue && (res.Codec == nil || ann[AnnotationSpecHash] == specHash(spec)) {
		value, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			return nil, nil, false, fmt.Errorf("annotation %s: %w", AnnotationValue, err)
		}
		var tags []string
		if t, ok := ann[AnnotationTags]; ok {
			if err := json.Unmarshal([]byte(t), &tags); err != nil {
				return nil, nil, false, fmt.Errorf("annotation %s: %w", AnnotationTags, err)
			}
		}
		return value, tags, false, nil
	}
	if res.Codec == nil {
		return nil, nil, false, fmt.Errorf("no %s annotation", AnnotationValue)
	}
	value, tags, err := res.Codec.Value(name, spec)
	if err != nil {
		return nil, nil, false, err
	}
	tags, err = store.NormalizeTags(tags)
	return value, tags, true, err
}

// specHash is the hash of a spec as JSON (json.Marshal sorts map keys).
func specHash(spec map[string]any) string {
	data, err := json.Marshal(spec)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// armExpiryLocked deletes the object at version v after d, unless the
// mirror sees another version first. s.mu must be held.
func (s *Store) armExpiryLocked(kind store.Kind, res Resource, name, object string, v seenObject, d time.Duration) {
	if s.expiries[kind] == nil {
		s.expiries[kind] = make(map[string]*time.Timer)
	}
	s.expiries[kind][name] = time.AfterFunc(max(d, 0), func() {
		ctx, cancel := context.WithTimeout(s.ctx, expireTimeout)
		defer cancel()
		uid, rv := v.uid, v.rv
		err := s.client.Resource(res.GVR).Namespace(s.namespace).Delete(ctx, object,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case err == nil:
			s.log.Debug("kubestore: expired", "kind", kind, "name", name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err), s.ctx.Err() != nil:
			// Gone, put again, or deleted by another replica; or closing.
		default:
			s.log.Warn("kubestore: delete expired record", "kind", kind, "name", name, "err", err)
		}
	})
}

// stopExpiryLocked stops the expiry timer of a record. s.mu must be held.
func (s *Store) stopExpiryLocked(kind store.Kind, name string) {
	if t, ok := s.expiries[kind][name]; ok {
		t.Stop()
		delete(s.expiries[kind], name)
	}
}

func (s *Store) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitMirror waits until done, called with s.mu held, reports true.
func (s *Store) waitMirror(ctx context.Context, done func() bool) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if done() {
			s.mu.Unlock()
			return nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the watch to deliver the change: %w", ctx.Err())
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// Put creates or replaces the record's object and waits until the mirror
// holds it.
func (s *Store) Put(ctx context.Context, kind store.Kind, name string, value []byte, ttl time.Duration, tags ...string) error {
	res, object, err := s.check(ctx, kind, name)
	if err == nil && ttl < 0 {
		err = fmt.Errorf("negative ttl %v", ttl)
	}
	if err == nil {
		tags, err = store.NormalizeTags(tags)
	}
	if err == nil && res == nil {
		err = fmt.Errorf("kind %q has no resource", kind)
	}
	if err != nil {
		return fmt.Errorf("kubestore: put %s/%s: %w", kind, name, err)
	}
	desired, err := s.object(*res, name, object, value, ttl, tags)
	if err != nil {
		return fmt.Errorf("kubestore: put %s/%s: %w", kind, name, err)
	}
	objects := s.client.Resource(res.GVR).Namespace(s.namespace)
	var written *unstructured.Unstructured
	for attempt := 0; written == nil; attempt++ {
		if attempt == maxAttempts {
			return fmt.Errorf("kubestore: put %s/%s: changed by other writers %d times in a row while this one tried", kind, name, maxAttempts)
		}
		current, err := objects.Get(ctx, object, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			written, err = objects.Create(ctx, desired.DeepCopy(), metav1.CreateOptions{})
		case err == nil:
			next := desired.DeepCopy()
			next.SetResourceVersion(current.GetResourceVersion())
			next.SetLabels(current.GetLabels())
			next.SetAnnotations(mergeAnnotations(current.GetAnnotations(), desired.GetAnnotations()))
			written, err = objects.Update(ctx, next, metav1.UpdateOptions{})
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			written = nil
			continue
		}
		if err != nil {
			return fmt.Errorf("kubestore: put %s/%s: %w", kind, name, err)
		}
	}
	if err := s.waitWritten(ctx, kind, written); err != nil {
		return fmt.Errorf("kubestore: put %s/%s: %w", kind, name, err)
	}
	return nil
}

// waitWritten waits until the mirror has seen the version written, or a
// later one of the kind.
func (s *Store) waitWritten(ctx context.Context, kind store.Kind, written *unstructured.Unstructured) error {
	rv, err := strconv.ParseUint(written.GetResourceVersion(), 10, 64)
	if err != nil {
		// resourceVersion is opaque in general; etcd-backed API servers
		// use etcd's revision. Without that, wait for this very version.
		name, _ := RecordName(written.GetName())
		return s.waitMirror(ctx, func() bool { return s.seen[kind][name].rv == written.GetResourceVersion() })
	}
	return s.waitMirror(ctx, func() bool { return s.lastRV[kind] >= rv })
}

// object builds the object that holds a record.
func (s *Store) object(res Resource, name, object string, value []byte, ttl time.Duration, tags []string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(res.GVR.GroupVersion().String())
	u.SetKind(res.Kind)
	u.SetNamespace(s.namespace)
	u.SetName(object)
	ann := map[string]string{AnnotationValue: base64.StdEncoding.EncodeToString(value)}
	if len(tags) > 0 {
		data, err := json.Marshal(tags)
		if err != nil {
			return nil, err
		}
		ann[AnnotationTags] = string(data)
	}
	if ttl > 0 {
		ann[AnnotationExpires] = time.Now().Add(ttl).UTC().Format(time.RFC3339Nano)
	}
	if res.Codec != nil {
		spec, err := res.Codec.Spec(name, value)
		if err != nil {
			return nil, fmt.Errorf("spec: %w", err)
		}
		if spec != nil {
			u.Object["spec"] = spec
		}
		ann[AnnotationSpecHash] = specHash(spec)
	}
	u.SetAnnotations(ann)
	return u, nil
}

// mergeAnnotations keeps annotations others set (kubectl's last applied
// configuration, for one) and replaces the store's own.
func mergeAnnotations(current, ours map[string]string) map[string]string {
	out := make(map[string]string, len(current)+len(ours))
	for k, v := range current {
		if !strings.HasPrefix(k, "registry.vwire.io/") {
			out[k] = v
		}
	}
	for k, v := range ours {
		out[k] = v
	}
	return out
}

// Get returns one record from the mirror, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, kind store.Kind, name string) ([]byte, error) {
	if _, _, err := s.check(ctx, kind, name); err != nil {
		return nil, fmt.Errorf("kubestore: get %s/%s: %w", kind, name, err)
	}
	value, err := s.mirror.Get(ctx, kind, name)
	if err != nil {
		return nil, fmt.Errorf("kubestore: get %s/%s: %w", kind, name, s.mirrorErr(err))
	}
	return value, nil
}

// Delete removes the record's object and waits until the mirror has let
// go of it; a missing record is store.ErrNotFound.
func (s *Store) Delete(ctx context.Context, kind store.Kind, name string) error {
	res, object, err := s.check(ctx, kind, name)
	if err != nil {
		return fmt.Errorf("kubestore: delete %s/%s: %w", kind, name, err)
	}
	if res == nil {
		return fmt.Errorf("kubestore: delete %s/%s: %w", kind, name, store.ErrNotFound)
	}
	objects := s.client.Resource(res.GVR).Namespace(s.namespace)
	current, err := objects.Get(ctx, object, metav1.GetOptions{})
	if err == nil {
		uid := current.GetUID()
		err = objects.Delete(ctx, object, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err == nil {
			err = s.waitMirror(ctx, func() bool { return s.seen[kind][name].uid != uid })
		}
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Gone, or replaced by a new object since the read: either way
		// the record this call saw no longer exists.
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("kubestore: delete %s/%s: %w", kind, name, err)
	}
	return nil
}

// List returns the records of a kind that carry tag, from the mirror.
func (s *Store) List(ctx context.Context, kind store.Kind, tag string) ([]store.Entry, error) {
	if err := s.checkKind(ctx, kind); err != nil {
		return nil, fmt.Errorf("kubestore: list %s: %w", kind, err)
	}
	entries, err := s.mirror.List(ctx, kind, tag)
	if err != nil {
		return nil, fmt.Errorf("kubestore: list %s: %w", kind, s.mirrorErr(err))
	}
	return entries, nil
}

// ListAndWatch returns the records of a kind that carry tag and a feed of
// every later change, from the mirror: changes arrive in the order the
// API server made them. The feed ends when ctx is cancelled (Err nil),
// when the store is closed, or when the consumer falls behind
// (store.ErrWatchLagged).
func (s *Store) ListAndWatch(ctx context.Context, kind store.Kind, tag string) ([]store.Entry, *store.Watch, error) {
	if err := s.checkKind(ctx, kind); err != nil {
		return nil, nil, fmt.Errorf("kubestore: watch %s: %w", kind, err)
	}
	entries, w, err := s.mirror.ListAndWatch(ctx, kind, tag)
	if err != nil {
		return nil, nil, fmt.Errorf("kubestore: watch %s: %w", kind, s.mirrorErr(err))
	}
	return entries, w, nil
}

// Close stops the informers and expiry timers and ends every watch. The
// objects stay in the API server. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, timers := range s.expiries {
		for _, t := range timers {
			t.Stop()
		}
	}
	s.wakeLocked()
	s.mu.Unlock()

	s.cancel()
	s.informers.Wait()
	return s.mirror.Close()
}

func (s *Store) mirrorErr(err error) error {
	if errors.Is(err, memstore.ErrClosed) {
		return ErrClosed
	}
	return err
}

// checkKind rejects a done context, a closed store and a kind that
// cannot be a key prefix.
func (s *Store) checkKind(ctx context.Context, kind store.Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if kind == "" || strings.Contains(string(kind), "/") {
		return fmt.Errorf("invalid kind %q: want a non-empty name without %q", kind, "/")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// check is checkKind plus a record name that maps to an object name. It
// returns the kind's resource (nil when it has none) and the object name.
func (s *Store) check(ctx context.Context, kind store.Kind, name string) (*Resource, string, error) {
	if err := s.checkKind(ctx, kind); err != nil {
		return nil, "", err
	}
	if name == "" {
		return nil, "", errors.New("empty record name")
	}
	object, ok := ObjectName(name)
	if !ok {
		return nil, "", fmt.Errorf("name of %d bytes too long to be held by a Kubernetes object", len(name))
	}
	res, ok := s.resources[kind]
	if !ok {
		return nil, object, nil
	}
	return &res, object, nil
}
