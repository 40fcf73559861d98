package manager

// Discovery from registry watches.
//
// A Request's discovery needs its network service and the endpoints that
// provide it: two Find calls to the registry, each a round trip the
// registry answers by reading and decoding its store. lookups keeps, per
// network service that Requests name, two registry Find watches (the
// service by name; the endpoints of that service) and answers discovery
// from what they delivered, so that a Request for a watched service makes
// no registry call.
//
// What is cached, and for how long: the service and its endpoints as the
// registry's watches last reported them, for as long as Requests name the
// service at least once per lookupIdle; then both watches close. Expired
// endpoints are never returned (checked against their expiration time on
// every look-up, before the registry's deletion arrives).
//
// Exactness: a watch sends the registry's matches first, then every change
// in order, but nothing marks where its initial state ends. So a watch
// answers nothing until it has been seen to agree with the registry: until
// then discovery asks the registry as before and compares the answer with
// what the watch holds; once they are equal the watch holds the registry's
// state as of that answer, and every later change reaches it as an event
// (an unregistration or expiry as a deletion, applied before the next
// look-up reads the entry). A watch that breaks (registry restart, network)
// is dropped with its entry: discovery asks the registry again and opens a
// new one, at most once per lookupRetry. Registrations and unregistrations
// this manager proxies (its local endpoints, services registered through
// it) make the services they name agree anew before answering, so a
// Request right after its endpoint registered sees it. Registrations
// elsewhere reach the watch within the registry's event latency; a
// look-up that finds no service or no matching endpoint in the cache asks
// the registry before saying NotFound. Names in another domain
// (name@domain) are not cached.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"
)

const (
	// lookupIdle: a watched service that no Request named for this long
	// is no longer watched.
	lookupIdle = time.Minute
	// lookupRetry: after a watch broke, the service is not watched again
	// for this long (discovery asks the registry meanwhile).
	lookupRetry = 5 * time.Second
	// maxLookups bounds the services watched at once (two streams each).
	maxLookups = 1024
)

// lookups is the manager's cache of discovery look-ups.
type lookups struct {
	ns   regapi.NetworkServiceRegistryClient
	nse  regapi.NetworkServiceEndpointRegistryClient
	log  *slog.Logger
	idle time.Duration  // lookupIdle, shorter in tests
	wg   sync.WaitGroup // watch goroutines

	mu      sync.Mutex              // guards the fields below and every entry
	entries map[string]*lookupEntry // by network service name
	failed  map[string]time.Time    // service → when it may be watched again
	ctx     context.Context         // ends at stop
	cancel  context.CancelFunc
	stopped bool
}

// lookupEntry is one watched service. Its fields are guarded by lookups.mu.
type lookupEntry struct {
	service   *regapi.NetworkService                    // nil: not registered
	endpoints map[string]*regapi.NetworkServiceEndpoint // by name
	// svcReady, nseReady: the watch agreed with the registry (see above).
	svcReady, nseReady bool
	// gen counts invalidations: an agreement checked against a registry
	// answer from before the last one does not count.
	gen    uint64
	used   bool // looked up since the last idle check
	cancel context.CancelFunc
	idle   *time.Timer
}

func newLookups(ns regapi.NetworkServiceRegistryClient, nse regapi.NetworkServiceEndpointRegistryClient, log *slog.Logger) *lookups {
	ctx, cancel := context.WithCancel(context.Background())
	return &lookups{ns: ns, nse: nse, log: log, idle: lookupIdle, entries: map[string]*lookupEntry{}, failed: map[string]time.Time{}, ctx: ctx, cancel: cancel}
}

// cacheable tells whether look-ups of a service may be cached.
func cacheable(service string) bool { return service != "" && !strings.Contains(service, "@") }

// service returns the watched network service when its watch agrees with
// the registry (ok), and otherwise the generation that a registry answer
// must be checked against (checkService), starting the watch if needed.
func (l *lookups) service(name string) (ns *regapi.NetworkService, gen uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(name)
	if e == nil {
		return nil, 0, false
	}
	if e.svcReady && e.service != nil {
		return e.service, e.gen, true
	}
	return nil, e.gen, false
}

// endpoints is service for the endpoints of a network service: those not
// expired at now.
func (l *lookups) endpoints(service string, now time.Time) (nses []*regapi.NetworkServiceEndpoint, gen uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(service)
	if e == nil {
		return nil, 0, false
	}
	if !e.nseReady {
		return nil, e.gen, false
	}
	for _, nse := range e.endpoints {
		if !expiredAt(nse, now) {
			nses = append(nses, nse)
		}
	}
	return nses, e.gen, true
}

// checkService compares the registry's answer for a service (nil: not
// registered), got after service returned gen, with the watch.
func (l *lookups) checkService(name string, gen uint64, ns *regapi.NetworkService) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.entries[name]; e != nil && e.gen == gen && !e.svcReady && proto.Equal(e.service, ns) {
		e.svcReady = true
	}
}

// checkEndpoints compares the registry's answer for a service's endpoints
// (those not expired at now), got after endpoints returned gen, with the
// watch.
func (l *lookups) checkEndpoints(service string, gen uint64, nses []*regapi.NetworkServiceEndpoint, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[service]
	if e == nil || e.gen != gen || e.nseReady {
		return
	}
	n := 0
	for name, have := range e.endpoints {
		if expiredAt(have, now) {
			continue
		}
		n++
		i := indexByName(nses, name)
		if i < 0 || !proto.Equal(have, nses[i]) {
			return
		}
	}
	if n == len(nses) {
		e.nseReady = true
	}
}

func indexByName(nses []*regapi.NetworkServiceEndpoint, name string) int {
	for i, n := range nses {
		if n.GetName() == name {
			return i
		}
	}
	return -1
}

func expiredAt(nse *regapi.NetworkServiceEndpoint, now time.Time) bool {
	exp := nse.GetExpirationTime()
	return exp != nil && !exp.AsTime().After(now)
}

// invalidate makes the watches of services agree with the registry again
// before they answer: for a change this manager made through the registry,
// which the watches may not have delivered yet.
func (l *lookups) invalidate(services ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range services {
		if e := l.entries[s]; e != nil {
			e.gen++
			e.svcReady, e.nseReady = false, false
		}
	}
}

// entryLocked returns the entry of a service, starting its watches when
// there is none (nil when it is not to be cached or not now).
func (l *lookups) entryLocked(name string) *lookupEntry {
	if e := l.entries[name]; e != nil {
		e.used = true
		return e
	}
	if !cacheable(name) || l.stopped || len(l.entries) >= maxLookups {
		return nil
	}
	if t, ok := l.failed[name]; ok {
		if time.Now().Before(t) {
			return nil
		}
		delete(l.failed, name)
	}
	ctx, cancel := context.WithCancel(l.ctx)
	e := &lookupEntry{endpoints: map[string]*regapi.NetworkServiceEndpoint{}, cancel: cancel, used: true}
	l.entries[name] = e
	e.idle = time.AfterFunc(l.idle, func() { l.idleCheck(name, e) })
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.drop(name, e, l.followService(ctx, name, e))
	}()
	go func() {
		defer l.wg.Done()
		l.drop(name, e, l.followEndpoints(ctx, name, e))
	}()
	return e
}

// idleCheck drops e unless it was used since the last check.
func (l *lookups) idleCheck(name string, e *lookupEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries[name] != e {
		return
	}
	if e.used {
		e.used = false
		e.idle.Reset(l.idle)
		return
	}
	e.cancel()
	delete(l.entries, name)
}

// drop removes e after one of its watches ended with err.
func (l *lookups) drop(name string, e *lookupEntry, err error) {
	e.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries[name] != e {
		return // already dropped (idle, the other watch, stop)
	}
	e.idle.Stop()
	delete(l.entries, name)
	if l.ctx.Err() == nil {
		l.failed[name] = time.Now().Add(lookupRetry)
		l.log.Debug("registry watch for discovery ended; asking the registry", "service", name, "err", err)
	}
}

// followService applies the service watch's events to e until it breaks.
func (l *lookups) followService(ctx context.Context, name string, e *lookupEntry) error {
	stream, err := l.ns.Find(ctx, &regapi.NetworkServiceQuery{Watch: true, NetworkService: &regapi.NetworkService{Name: name}})
	if err != nil {
		return err
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			return eofClosed(err)
		}
		ns := r.GetNetworkService()
		if ns.GetName() != name {
			continue // not ours (a registry answers only the name asked)
		}
		l.mu.Lock()
		if r.GetDeleted() {
			e.service = nil
		} else {
			e.service = ns
		}
		l.mu.Unlock()
	}
}

// followEndpoints applies the endpoint watch's events to e until it breaks.
func (l *lookups) followEndpoints(ctx context.Context, service string, e *lookupEntry) error {
	stream, err := l.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{Watch: true,
		NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{service}}})
	if err != nil {
		return err
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			return eofClosed(err)
		}
		nse := r.GetNetworkServiceEndpoint()
		l.mu.Lock()
		if r.GetDeleted() {
			delete(e.endpoints, nse.GetName())
		} else {
			e.endpoints[nse.GetName()] = nse
		}
		l.mu.Unlock()
	}
}

// errWatchEnded: the registry ended a watch (it should not).
var errWatchEnded = errors.New("registry ended the watch")

func eofClosed(err error) error {
	if errors.Is(err, io.EOF) {
		return errWatchEnded
	}
	return err
}

// stop closes every watch and waits for their goroutines.
func (l *lookups) stop() {
	l.mu.Lock()
	l.stopped = true
	l.cancel()
	for name, e := range l.entries {
		e.idle.Stop()
		delete(l.entries, name)
	}
	l.mu.Unlock()
	l.wg.Wait()
}
