package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/registry/store/etcdstore"
	"github.com/vwire/vwire/registry/store/etcdstore/etcdtest"
)

// replica is one registry process on a shared etcd: its own store client
// and its own gRPC server.
func replica(t testing.TB, ids identities, endpoints []string) (*env, func()) {
	t.Helper()
	st, err := etcdstore.New(ctxT(t), etcdstore.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	e, stop := serve(t, ids, st, "example.com")
	return e, func() { stop(); st.Close() }
}

func recvNames(t *testing.T, w regapi.NetworkServiceEndpointRegistry_FindClient, n int) string {
	t.Helper()
	var got []string
	for range n {
		r, err := w.Recv()
		if err != nil {
			t.Fatalf("watch: %v (so far %v)", err, got)
		}
		ev := "+"
		if r.Deleted {
			ev = "-"
		}
		got = append(got, ev+r.NetworkServiceEndpoint.Name)
	}
	return strings.Join(got, " ")
}

// TestEtcdReplicas: two registries on one etcd serve the same state, each
// one's watchers see the other's writes, a restarted replica loses nothing,
// and an endpoint registered by a replica that is gone still expires, seen
// by the other replica's watchers.
func TestEtcdReplicas(t *testing.T) {
	etcd := etcdtest.Start(t)
	ids := newIdentities(t)
	a, stopA := replica(t, ids, etcd.Endpoints())
	b, _ := replica(t, ids, etcd.Endpoints())
	ctx := ctxT(t)

	wb, err := b.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{Watch: true, NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"icmp"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ns.Register(ctx, &regapi.NetworkService{Name: "icmp@example.com", Payload: "ETHERNET"}); err != nil {
		t.Fatal(err)
	}
	long := timestamppb.New(time.Now().Add(time.Hour))
	if _, err := a.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "long", Url: "tcp://127.0.0.1:1", NetworkServiceNames: []string{"icmp"}, ExpirationTime: long}); err != nil {
		t.Fatal(err)
	}
	if got := recvNames(t, wb, 1); got != "+long" {
		t.Fatalf("replica B's watcher saw %q", got)
	}
	if l := findNS(t, b, &regapi.NetworkService{Name: "icmp"}); len(l) != 1 || l[0].Payload != "ETHERNET" {
		t.Fatalf("replica B does not see A's service: %v", l)
	}

	// A registers a short-lived endpoint, then A goes away: it still expires.
	short := timestamppb.New(time.Now().Add(2 * time.Second))
	if _, err := a.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "short", Url: "tcp://127.0.0.1:2", NetworkServiceNames: []string{"icmp"}, ExpirationTime: short}); err != nil {
		t.Fatal(err)
	}
	if got := recvNames(t, wb, 1); got != "+short" {
		t.Fatalf("replica B's watcher saw %q", got)
	}
	stopA()
	if got := recvNames(t, wb, 1); got != "-short" {
		t.Fatalf("expiry not seen by replica B: %q", got)
	}
	if time.Now().Before(short.AsTime()) {
		t.Fatal("deleted before its expiration time")
	}

	// A restarted replica serves everything that was there.
	a2, _ := replica(t, ids, etcd.Endpoints())
	if got := findNSE(t, a2, nil); strings.Join(got, ",") != "long" {
		t.Fatalf("restarted replica sees %v, want [long]", got)
	}
	if l := findNS(t, a2, nil); len(l) != 1 {
		t.Fatalf("restarted replica lost services: %v", l)
	}
	// B's writes reach A2's watchers too.
	wa, err := a2.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvNames(t, wa, 1); got != "+long" {
		t.Fatalf("initial state on A2: %q", got)
	}
	if _, err := b.nse.Unregister(ctx, &regapi.NetworkServiceEndpoint{Name: "long"}); err != nil {
		t.Fatal(err)
	}
	if got := recvNames(t, wa, 1); got != "-long" {
		t.Fatalf("A2 did not see B's unregister: %q", got)
	}
}

// TestEtcdRestart: the etcd server itself restarts; the registry's state
// survives and the registry answers again.
func TestEtcdRestart(t *testing.T) {
	etcd := etcdtest.Start(t)
	ids := newIdentities(t)
	a, _ := replica(t, ids, etcd.Endpoints())
	ctx := ctxT(t)
	if _, err := a.ns.Register(ctx, &regapi.NetworkService{Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	etcd.Restart()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := findNSAllowErr(a, &regapi.NetworkService{Name: "kept"})
		if len(l) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("service lost or registry not answering after etcd restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func findNSAllowErr(e *env, q *regapi.NetworkService) []*regapi.NetworkService {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := e.ns.Find(ctx, &regapi.NetworkServiceQuery{NetworkService: q})
	if err != nil {
		return nil
	}
	var out []*regapi.NetworkService
	for {
		r, err := s.Recv()
		if err != nil {
			return out
		}
		out = append(out, r.NetworkService)
	}
}
