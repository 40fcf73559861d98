package manager

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/store/memstore"
)

// lookupEnv is a real registry (memory store) served over gRPC with mTLS,
// a manager's discovery wired to it, and an admin connection that changes
// the registry behind the manager's back (as another node's manager would).
type lookupEnv struct {
	m     *Manager
	ns    regapi.NetworkServiceRegistryClient
	nse   regapi.NetworkServiceEndpointRegistryClient
	stopR func() // stops the registry's server
}

func newLookupEnv(t *testing.T, idle time.Duration) *lookupEnv {
	t.Helper()
	ca, err := identity.OpenCA(t.TempDir(), "lookups.test", true)
	if err != nil {
		t.Fatal(err)
	}
	source := func(name string) identity.Source {
		id, err := ca.ComponentID(name)
		if err != nil {
			t.Fatal(err)
		}
		src, err := identity.NewCASource(ca, id, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	regSrc := source("registry")
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	srv, err := registry.New(registry.Config{Store: st, Source: regSrc})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(regSrc, identity.AuthorizeTrustDomain(regSrc), slog.New(slog.DiscardHandler))
	srv.Register(gs)
	l, err := grpcutil.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	dial := func(name string) *grpcutil.Conn {
		src := source(name)
		cc, err := grpcutil.DialPeer(l.Addr().String(), src, identity.AuthorizeTrustDomain(src))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	mc, admin := dial("manager"), dial("admin")
	m := &Manager{
		regNS: regapi.NewNetworkServiceRegistryClient(mc), regNSE: regapi.NewNetworkServiceEndpointRegistryClient(mc),
		endpoints: map[string]*localEndpoint{}, log: slog.New(slog.DiscardHandler),
	}
	m.lookups = newLookups(m.regNS, m.regNSE, m.log)
	m.lookups.idle = idle
	t.Cleanup(m.lookups.stop)
	return &lookupEnv{m: m, ns: regapi.NewNetworkServiceRegistryClient(admin), nse: regapi.NewNetworkServiceEndpointRegistryClient(admin), stopR: gs.Stop}
}

func (e *lookupEnv) register(t *testing.T, name string, labels map[string]string, expires time.Time) {
	t.Helper()
	if _, err := e.nse.Register(ctxTest(t), &regapi.NetworkServiceEndpoint{
		Name: name, Url: "tcp://127.0.0.1:1", NetworkServiceNames: []string{"svc"},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"svc": {Labels: labels}},
		ExpirationTime:       timestamppb.New(expires),
	}); err != nil {
		t.Fatal(err)
	}
}

// discover runs discovery for a Request for "svc" with labels; it
// returns the candidates' names and whether the cache answered.
func (e *lookupEnv) discover(t *testing.T, labels map[string]string) (names []string, cached bool, err error) {
	t.Helper()
	tg, cached, err := e.m.discoverFrom(ctxTest(t), &networkservice.Connection{NetworkService: "svc", Labels: labels}, true)
	if err != nil {
		return nil, cached, err
	}
	for _, n := range tg.endpoints {
		names = append(names, n.GetName())
	}
	slices.Sort(names)
	return names, cached, nil
}

// cachedHas reports whether the manager's watch holds endpoint name of svc.
func (e *lookupEnv) cachedHas(name string) bool {
	e.m.lookups.mu.Lock()
	defer e.m.lookups.mu.Unlock()
	ent := e.m.lookups.entries["svc"]
	return ent != nil && ent.endpoints[name] != nil
}

func ctxTest(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLookupsFollowRegistry: discovery answers from the registry until its
// watches agree with it, then from them; a change made at the registry by
// someone else (unregistration, new labels, a new endpoint) is what
// discovery sees once the watch delivered it, and an endpoint whose
// unregistration arrived is never a candidate again.
func TestLookupsFollowRegistry(t *testing.T) {
	e := newLookupEnv(t, time.Minute)
	ctx := ctxTest(t)
	if _, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "svc", Matches: []*regapi.Match{{
		SourceSelector: map[string]string{"app": "x"},
		Routes:         []*regapi.Destination{{DestinationSelector: map[string]string{"color": "red"}}},
	}}}); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour)
	e.register(t, "a", map[string]string{"color": "red"}, hour)
	e.register(t, "b", map[string]string{"color": "red"}, hour)

	names, cached, err := e.discover(t, map[string]string{"app": "x"})
	if err != nil || cached || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("first discovery: %v cached=%v err=%v; want [a b] from the registry", names, cached, err)
	}
	waitUntil(t, "the watches to agree with the registry", func() bool {
		_, cached, err := e.discover(t, map[string]string{"app": "x"})
		return err == nil && cached
	})

	// b unregisters at the registry: from the moment its deletion reached
	// the watch, it is never a candidate.
	if _, err := e.nse.Unregister(ctx, &regapi.NetworkServiceEndpoint{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	for gone := false; !gone; {
		gone = !e.cachedHas("b")
		names, cached, err := e.discover(t, map[string]string{"app": "x"})
		if err != nil || !cached {
			t.Fatalf("discovery after b's unregistration: %v cached=%v err=%v", names, cached, err)
		}
		if gone && slices.Contains(names, "b") {
			t.Fatalf("b selected after its unregistration reached the watch: %v", names)
		}
	}

	// a changes colour: no candidate in the cache, so discovery asks the
	// registry and says NotFound as before.
	e.register(t, "a", map[string]string{"color": "blue"}, hour)
	waitUntil(t, "a's new labels", func() bool {
		_, _, err := e.discover(t, map[string]string{"app": "x"})
		return status.Code(err) == codes.NotFound
	})
	if _, err := e.m.discover(ctx, &networkservice.Connection{NetworkService: "svc", Labels: map[string]string{"app": "x"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("discover with no red endpoint: %v, want NotFound", err)
	}
	// c registers elsewhere: the watch brings it.
	e.register(t, "c", map[string]string{"color": "red"}, hour)
	waitUntil(t, "c in the cache", func() bool {
		names, cached, err := e.discover(t, map[string]string{"app": "x"})
		return err == nil && cached && slices.Equal(names, []string{"c"})
	})

	// The service changes its matches: the watch brings them too.
	if _, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the service's new matches", func() bool {
		names, cached, err := e.discover(t, map[string]string{"app": "x"})
		return err == nil && cached && slices.Equal(names, []string{"a", "c"})
	})
}

// TestLookupsExpiry: an endpoint whose registration expired is not a
// candidate even before the registry's deletion reaches the watch.
func TestLookupsExpiry(t *testing.T) {
	e := newLookupEnv(t, time.Minute)
	if _, err := e.ns.Register(ctxTest(t), &regapi.NetworkService{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	e.register(t, "long", nil, time.Now().Add(time.Hour))
	short := time.Now().Add(2 * time.Second)
	e.register(t, "short", nil, short)
	waitUntil(t, "the watches to agree with the registry", func() bool {
		names, cached, err := e.discover(t, nil)
		return err == nil && cached && len(names) == 2
	})
	for time.Now().Before(short.Add(time.Second)) {
		names, _, err := e.discover(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !time.Now().Before(short) && slices.Contains(names, "short") {
			t.Fatalf("expired endpoint offered: %v", names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLookupsInvalidate: a change this manager made through the registry
// (a registration it proxied) is seen by the next discovery, before the
// watch delivers it, because the watch must agree with the registry again.
func TestLookupsInvalidate(t *testing.T) {
	e := newLookupEnv(t, time.Minute)
	if _, err := e.ns.Register(ctxTest(t), &regapi.NetworkService{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	e.register(t, "a", nil, time.Now().Add(time.Hour))
	waitUntil(t, "the watches to agree with the registry", func() bool {
		_, cached, err := e.discover(t, nil)
		return err == nil && cached
	})
	e.register(t, "b", nil, time.Now().Add(time.Hour))
	e.m.lookups.invalidate("svc")
	names, cached, err := e.discover(t, nil)
	if err != nil || cached || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("discovery right after an invalidation: %v cached=%v err=%v; want [a b] from the registry", names, cached, err)
	}
}

// TestLookupsWatchBreaks: when the registry goes away the watches end and
// discovery stops answering from them (it fails as the registry does);
// a service nobody asks for is no longer watched after the idle time.
func TestLookupsWatchBreaks(t *testing.T) {
	e := newLookupEnv(t, 300*time.Millisecond)
	if _, err := e.ns.Register(ctxTest(t), &regapi.NetworkService{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	e.register(t, "a", nil, time.Now().Add(time.Hour))
	waitUntil(t, "the watches to agree with the registry", func() bool {
		_, cached, err := e.discover(t, nil)
		return err == nil && cached
	})
	waitUntil(t, "the idle service's watches to close", func() bool {
		e.m.lookups.mu.Lock()
		defer e.m.lookups.mu.Unlock()
		return len(e.m.lookups.entries) == 0
	})
	waitUntil(t, "the watches to agree again", func() bool {
		_, cached, err := e.discover(t, nil)
		return err == nil && cached
	})
	e.stopR()
	waitUntil(t, "the broken watches to be dropped", func() bool {
		_, cached, _ := e.discover(t, nil)
		return !cached
	})
	if _, cached, err := e.discover(t, nil); err == nil || cached {
		t.Fatalf("discovery without a registry: cached=%v err=%v; want the registry's error", cached, err)
	}
}
