package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/etcdstore"
	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
	"github.com/vwire/vwire/registry/store/memstore"
)

// TestWatchWakesOnlyForItsService: among many endpoints of other services
// that come, refresh and go, a watch of one service is woken only by
// changes to that service's endpoints, and a watch without a filter by
// every change. Wake-ups are counted by the registry's
// vwire_registry_watch_events_total; no timing is involved: each watch's
// last event is read before the count, and the store delivers each
// watch's changes in order, so every earlier wake-up has been counted.
func TestWatchWakesOnlyForItsService(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{name: "memory", open: func(t *testing.T) store.Store {
			st := memstore.New()
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{name: "etcd", open: func(t *testing.T) store.Store {
			srv := etcdtest.Start(t)
			st, err := etcdstore.New(t.Context(), etcdstore.Config{Endpoints: srv.Endpoints()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
	}
	for _, tt := range stores {
		t.Run(tt.name, func(t *testing.T) {
			testWatchWakeups(t, tt.open(t))
		})
	}
}

func testWatchWakeups(t *testing.T, st store.Store) {
	const (
		others = 1000 // endpoints of other services, registered first
		churn  = 300  // changes to them while the watches run
	)
	metrics := prometheus.NewRegistry()
	e := serveWithMetrics(t, st, metrics)
	// Each call has its own deadline: the thousand-odd calls together
	// take what a loaded machine gives them (one deadline for all of them
	// failed under -race while CI ran beside it). The watch streams last
	// the test.
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 30*time.Second)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exp := timestamppb.New(time.Now().Add(time.Hour))
	register := func(name string, services ...string) {
		t.Helper()
		cctx, ccancel := call()
		defer ccancel()
		if _, err := e.nse.Register(cctx, &regapi.NetworkServiceEndpoint{Name: name, Url: "tcp://127.0.0.1:1",
			NetworkServiceNames: services, ExpirationTime: exp}); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
	}
	unregister := func(name string) {
		t.Helper()
		cctx, ccancel := call()
		defer ccancel()
		if _, err := e.nse.Unregister(cctx, &regapi.NetworkServiceEndpoint{Name: name}); err != nil {
			t.Fatalf("unregister %s: %v", name, err)
		}
	}
	other := func(i int) string { return fmt.Sprintf("other-%d", i%100) }
	for i := range others {
		register(fmt.Sprintf("nse-%d", i), other(i))
	}
	register("target-1", "target")
	register("target-2", "target", other(1))

	target, err := e.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{Watch: true,
		NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"target"}}})
	if err != nil {
		t.Fatal(err)
	}
	all, err := e.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvNames(t, target, 2); got != "+target-1 +target-2" {
		t.Fatalf("target watch starts with %q", got)
	}
	recvNames(t, all, others+2)
	before := watchEvents(t, metrics) // 0: snapshots are not changes

	// Other services churn: new endpoints, refreshes, unregistrations.
	changes := 0
	for i := range churn {
		switch i % 3 {
		case 0:
			register(fmt.Sprintf("churn-%d", i), other(i))
		case 1:
			register(fmt.Sprintf("nse-%d", i), other(i))
		case 2:
			unregister(fmt.Sprintf("churn-%d", i-2))
		}
		changes++
	}
	// An endpoint that takes the service up and gives it back, then a new
	// one: the only changes the target watch may see.
	register("mover", other(7))
	register("mover", other(7), "target")
	register("mover", other(7))
	register("target-3", "target")
	changes += 4

	if got := recvNames(t, target, 3); got != "+mover -mover +target-3" {
		t.Fatalf("target watch saw %q", got)
	}
	got := recvNames(t, all, changes)
	if last := got[strings.LastIndex(got, " ")+1:]; last != "+target-3" {
		t.Fatalf("unfiltered watch ends with %q, want +target-3", last)
	}
	// The unfiltered watch was woken by each change, the target watch by
	// its three and by nothing else.
	if woke, want := watchEvents(t, metrics)-before, float64(changes+3); woke != want {
		t.Fatalf("watch streams woken %v times, want %v: %d for the unfiltered watch, 3 for the target watch", woke, want, changes)
	}
}

// serveWithMetrics is serve with the registry's metrics in reg.
func serveWithMetrics(t *testing.T, st store.Store, reg prometheus.Registerer) *env {
	t.Helper()
	ids := newIdentities(t)
	srv, err := registry.New(registry.Config{Store: st, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpcutil.NewServer(ids.server, identity.AuthorizeTrustDomain(ids.server), slog.New(slog.DiscardHandler))
	srv.Register(gs)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	cc, err := grpcutil.Dial(l.Addr().String(), ids.client, identity.AuthorizeTrustDomain(ids.client))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &env{ns: regapi.NewNetworkServiceRegistryClient(cc), nse: regapi.NewNetworkServiceEndpointRegistryClient(cc)}
}

// watchEvents reads vwire_registry_watch_events_total.
func watchEvents(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "vwire_registry_watch_events_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no vwire_registry_watch_events_total")
	return 0
}
