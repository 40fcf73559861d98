package registry_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/miekg/dns"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/policy"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/dnssrv"
	"github.com/vwire/vwire/registry/dnssrv/dnstest"
	"github.com/vwire/vwire/registry/store/memstore"
)

// world is several registry domains, each its own trust domain with its own
// CA and registry, found through one DNS server on loopback.
type world struct {
	t   *testing.T
	dns *dnstest.Server
	cas map[string]*identity.CA
}

func newWorld(t *testing.T, trustDomains ...string) *world {
	dns, err := dnstest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	w := &world{t: t, dns: dns, cas: map[string]*identity.CA{}}
	for _, td := range trustDomains {
		ca, err := identity.OpenCA(t.TempDir(), td, true)
		if err != nil {
			t.Fatal(err)
		}
		w.cas[td] = ca
	}
	return w
}

// source is an identity of trust domain td that federates with fed.
func (w *world) source(td, component string, fed ...string) identity.Source {
	w.t.Helper()
	ca := w.cas[td]
	id, _ := ca.ComponentID(component)
	src, err := identity.NewCASource(ca, id, time.Hour, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { src.Close() })
	f := identity.Federation{}
	for _, other := range fed {
		f[w.cas[other].TrustDomain()] = w.cas[other].Bundle()
	}
	return identity.Federate(src, f)
}

// registry serves domain's registry (trust domain = domain), publishes its
// SRV record and returns its address.
func (w *world) registry(domain string, pol *policy.Policy, fed ...string) string {
	w.t.Helper()
	src := w.source(domain, "registry", fed...)
	loc, err := dnssrv.New(dnssrv.Config{Servers: []string{w.dns.Addr}})
	if err != nil {
		w.t.Fatal(err)
	}
	st := memstore.New()
	w.t.Cleanup(func() { st.Close() })
	srv, err := registry.New(registry.Config{Store: st, Domains: []string{domain}, Source: src, Policy: pol, Locator: loc})
	if err != nil {
		w.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	gs := grpcutil.NewServer(src, identity.AuthorizeTrustDomain(src), slog.New(slog.DiscardHandler))
	srv.Register(gs)
	go gs.Serve(l)
	w.t.Cleanup(gs.Stop)
	w.publish(domain, l.Addr().String())
	return l.Addr().String()
}

func (w *world) publish(domain, addr string) {
	w.t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	if err := w.dns.Set(
		"_registry._tcp."+domain+". 1 IN SRV 0 0 "+port+" reg."+domain+".",
		"reg."+domain+". 1 IN A "+host,
	); err != nil {
		w.t.Fatal(err)
	}
}

// client dials the registry at addr as a workload of td.
func (w *world) client(td, addr string, fed ...string) *env {
	w.t.Helper()
	src := w.source(td, "cli", fed...)
	cc, err := grpcutil.Dial(addr, src, identity.AuthorizeTrustDomain(src))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { cc.Close() })
	return &env{ns: regapi.NewNetworkServiceRegistryClient(cc), nse: regapi.NewNetworkServiceEndpointRegistryClient(cc)}
}

func findAll(t *testing.T, e *env, q *regapi.NetworkServiceEndpoint) ([]*regapi.NetworkServiceEndpoint, error) {
	t.Helper()
	s, err := e.nse.Find(ctxT(t), &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: q})
	if err != nil {
		return nil, err
	}
	var out []*regapi.NetworkServiceEndpoint
	for {
		r, err := s.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.GetNetworkServiceEndpoint())
	}
}

func TestInterdomainFindAndRegister(t *testing.T) {
	w := newWorld(t, "a.test", "b.test")
	regA := w.registry("a.test", nil, "b.test")
	regB := w.registry("b.test", nil, "a.test")
	a := w.client("a.test", regA)
	b := w.client("b.test", regB)
	ctx := ctxT(t)

	// A NetworkService registered through A lands in B, under B's name.
	ns, err := a.ns.Register(ctx, &regapi.NetworkService{Name: "svc@b.test", Payload: "ETHERNET"})
	if err != nil {
		t.Fatal(err)
	}
	if ns.GetName() != "svc@b.test" {
		t.Fatalf("reply names %q, want svc@b.test", ns.GetName())
	}
	if got := findNS(t, b, &regapi.NetworkService{Name: "svc"}); len(got) != 1 || got[0].GetPayload() != "ETHERNET" {
		t.Fatalf("B has %v, want svc with payload ETHERNET", got)
	}
	if got := findNS(t, a, &regapi.NetworkService{Name: "svc@b.test"}); len(got) != 1 || got[0].GetName() != "svc@b.test" {
		t.Fatalf("Find svc@b.test through A = %v", got)
	}

	// An endpoint of B is found through A with qualified names.
	exp := timestamppb.New(time.Now().Add(time.Minute))
	if _, err := b.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "nse-b", Url: "tcp://192.0.2.1:5001",
		NetworkServiceNames:  []string{"svc"},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"svc": {Labels: map[string]string{"app": "b"}}},
		ExpirationTime:       exp}); err != nil {
		t.Fatal(err)
	}
	got, err := findAll(t, a, &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"svc@b.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetName() != "nse-b@b.test" || got[0].GetNetworkServiceNames()[0] != "svc@b.test" ||
		got[0].GetNetworkServiceLabels()["svc@b.test"].GetLabels()["app"] != "b" || got[0].GetUrl() != "tcp://192.0.2.1:5001" {
		t.Fatalf("Find through A = %v", got)
	}
	if got, err := findAll(t, a, &regapi.NetworkServiceEndpoint{Name: "nse-b@b.test"}); err != nil || len(got) != 1 {
		t.Fatalf("Find by name through A = %v, %v", got, err)
	}

	// A watch through A sees B's changes.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch, err := a.nse.Find(wctx, &regapi.NetworkServiceEndpointQuery{Watch: true,
		NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"svc@b.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetNetworkServiceEndpoint().GetName() != "nse-b@b.test" {
		t.Fatalf("watch: first = %v, %v", r, err)
	}
	if _, err := b.nse.Unregister(ctx, &regapi.NetworkServiceEndpoint{Name: "nse-b"}); err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || !r.GetDeleted() || r.GetNetworkServiceEndpoint().GetName() != "nse-b@b.test" {
		t.Fatalf("watch: after unregister = %v, %v", r, err)
	}

	// Mixed domains in one call are refused.
	_, err = a.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "x", Url: "tcp://192.0.2.1:1",
		NetworkServiceNames: []string{"svc@b.test", "local"}, ExpirationTime: exp})
	wantCode(t, err, codes.InvalidArgument, "several registry domains")

	// Unregister through A removes the service from B.
	if _, err := a.ns.Unregister(ctx, &regapi.NetworkService{Name: "svc@b.test"}); err != nil {
		t.Fatal(err)
	}
	if got := findNS(t, b, &regapi.NetworkService{Name: "svc"}); len(got) != 0 {
		t.Fatalf("B still has %v", got)
	}
}

func TestFloatingDomain(t *testing.T) {
	w := newWorld(t, "a.test", "b.test", "floating.test")
	lookups, err := policy.Parse("floating", []byte(`
lookup:
  - name: member-registries
    ids: ["spiffe://a.test/vwire/registry", "spiffe://b.test/vwire/registry"]
    services: ["*"]
register:
  - name: a-may-publish
    ids: ["spiffe://a.test/**"]
    services: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	w.registry("floating.test", lookups, "a.test", "b.test")
	regA := w.registry("a.test", nil, "floating.test")
	regB := w.registry("b.test", nil, "floating.test")
	a := w.client("a.test", regA)
	b := w.client("b.test", regB)
	ctx := ctxT(t)
	exp := timestamppb.New(time.Now().Add(time.Minute))

	// An endpoint of domain A registers in the floating domain.
	reply, err := a.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "fl-nse", Url: "tcp://198.51.100.1:5001",
		NetworkServiceNames: []string{"fl@floating.test"}, ExpirationTime: exp})
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetName() != "fl-nse" || reply.GetNetworkServiceNames()[0] != "fl@floating.test" {
		t.Fatalf("registration reply = %v: want the caller's names", reply)
	}
	// A client of domain B finds it there.
	got, err := findAll(t, b, &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"fl@floating.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetName() != "fl-nse@floating.test" || got[0].GetUrl() != "tcp://198.51.100.1:5001" {
		t.Fatalf("Find through B = %v", got)
	}
	// The floating registry's policy: B may look up but not register.
	_, err = b.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "b-nse", Url: "tcp://198.51.100.2:5001",
		NetworkServiceNames: []string{"fl@floating.test"}, ExpirationTime: exp})
	wantCode(t, err, codes.PermissionDenied, `domain "floating.test"`)
	// The call had no NSM path, so it starts at B's registry.
	if !strings.Contains(err.Error(), "spiffe://b.test/vwire/registry") {
		t.Fatalf("refusal %v does not name who asked", err)
	}
	// Unregister through A.
	if _, err := a.nse.Unregister(ctx, &regapi.NetworkServiceEndpoint{Name: "fl-nse", NetworkServiceNames: []string{"fl@floating.test"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := findAll(t, b, &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"fl@floating.test"}}); err != nil || len(got) != 0 {
		t.Fatalf("after unregister: %v, %v", got, err)
	}
}

func TestInterdomainFailures(t *testing.T) {
	w := newWorld(t, "a.test", "c.test", "d.test")
	regA := w.registry("a.test", nil, "d.test")
	// c.test's registry answers, but A does not federate with c.test.
	w.registry("c.test", nil, "a.test")
	// d.test's registry refuses look-ups from A.
	deny, err := policy.Parse("d", []byte("lookup:\n  - {name: nobody, ids: [\"spiffe://d.test/**\"], services: [\"*\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	w.registry("d.test", deny, "a.test")
	// down.test's registry is not running.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	w.publish("down.test", dead)
	a := w.client("a.test", regA)

	for _, tc := range []struct {
		service string
		code    codes.Code
		substr  string
	}{
		{"svc@nope.test", codes.Unavailable, `domain "nope.test"`},
		{"svc@down.test", codes.Unavailable, `domain "down.test": no registry answered`},
		{"svc@c.test", codes.Unavailable, `domain "c.test"`},
		{"svc@d.test", codes.PermissionDenied, `domain "d.test"`},
	} {
		_, err := findAll(t, a, &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{tc.service}})
		wantCode(t, err, tc.code, tc.substr)
		t.Logf("%s: %v", tc.service, err)
	}
}

func TestInterdomainTTLReresolves(t *testing.T) {
	w := newWorld(t, "a.test", "e.test")
	regA := w.registry("a.test", nil, "e.test")
	second := w.registry("e.test", nil, "a.test")
	first := w.registry("e.test", nil, "a.test") // the SRV record now points here
	a := w.client("a.test", regA)
	e2 := w.client("e.test", second)
	ctx := ctxT(t)
	if _, err := e2.ns.Register(ctx, &regapi.NetworkService{Name: "only-in-second"}); err != nil {
		t.Fatal(err)
	}
	if got := findNS(t, a, &regapi.NetworkService{Name: "only-in-second@e.test"}); len(got) != 0 {
		t.Fatalf("the first registry (%s) should have answered, got %v", first, got)
	}
	// The domain moves to the second registry; the record's TTL is 1s.
	w.publish("e.test", second)
	time.Sleep(1500 * time.Millisecond)
	if got := findNS(t, a, &regapi.NetworkService{Name: "only-in-second@e.test"}); len(got) != 1 || got[0].GetName() != "only-in-second@e.test" {
		t.Fatalf("after the TTL the second registry should answer, got %v", got)
	}
	if n := w.dns.Queries("_registry._tcp.e.test.", dns.TypeSRV); n != 2 {
		t.Fatalf("A asked for the SRV record %d times, want 2 (once, then after the TTL)", n)
	}
}
