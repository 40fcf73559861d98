package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/registry"
	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/store/memstore"
)

// env is a registry served over real gRPC with mTLS on loopback.
type env struct {
	ns  regapi.NetworkServiceRegistryClient
	nse regapi.NetworkServiceEndpointRegistryClient
}

// identities are shared by every registry of one test, as one trust domain.
type identities struct {
	server, client identity.Source
}

func newIdentities(t testing.TB) identities {
	t.Helper()
	ca, err := identity.OpenCA(t.TempDir(), "example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string) identity.Source {
		id, _ := ca.ComponentID(name)
		src, err := identity.NewCASource(ca, id, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	return identities{server: mk("registry"), client: mk("cli")}
}

// serve runs a registry over st and returns a client of it; the server stops
// with the returned func or at the end of the test.
func serve(t testing.TB, ids identities, st store.Store, domains ...string) (*env, func()) {
	t.Helper()
	srv, err := registry.New(registry.Config{Store: st, Domains: domains})
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
	cc, err := grpcutil.Dial(l.Addr().String(), ids.client, identity.AuthorizeTrustDomain(ids.client))
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cc.Close()
		gs.Stop()
	}
	t.Cleanup(stop)
	return &env{ns: regapi.NewNetworkServiceRegistryClient(cc), nse: regapi.NewNetworkServiceEndpointRegistryClient(cc)}, stop
}

func newEnv(t *testing.T, domains ...string) *env {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	e, _ := serve(t, newIdentities(t), st, domains...)
	return e
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("message %q does not mention %q", status.Convert(err).Message(), substr)
	}
}

func findNS(t *testing.T, e *env, q *regapi.NetworkService) []*regapi.NetworkService {
	t.Helper()
	s, err := e.ns.Find(ctxT(t), &regapi.NetworkServiceQuery{NetworkService: q})
	if err != nil {
		t.Fatal(err)
	}
	var out []*regapi.NetworkService
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.NetworkService)
	}
}

func findNSE(t *testing.T, e *env, q *regapi.NetworkServiceEndpoint) []string {
	t.Helper()
	s, err := e.nse.Find(ctxT(t), &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: q})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.NetworkServiceEndpoint.Name)
	}
}

func TestNetworkServiceLifecycle(t *testing.T) {
	e := newEnv(t, "finance.example.com")
	ctx := ctxT(t)
	got, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "service-mesh@finance.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "service-mesh" || got.Payload != "IP" {
		t.Fatalf("registered %v, want name service-mesh payload IP", got)
	}
	if l := findNS(t, e, &regapi.NetworkService{Name: "service-mesh@finance.example.com"}); len(l) != 1 {
		t.Fatalf("find by qualified name: %v", l)
	}
	if l := findNS(t, e, &regapi.NetworkService{Name: "service-mesh"}); len(l) != 1 || !proto.Equal(l[0], got) {
		t.Fatalf("find by local name: %v", l)
	}
	if _, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "l2", Payload: "ETHERNET"}); err != nil {
		t.Fatal(err)
	}
	if l := findNS(t, e, &regapi.NetworkService{Payload: "ETHERNET"}); len(l) != 1 || l[0].Name != "l2" {
		t.Fatalf("find by payload: %v", l)
	}
	if l := findNS(t, e, nil); len(l) != 2 {
		t.Fatalf("find all: %v", l)
	}
	if _, err := e.ns.Unregister(ctx, &regapi.NetworkService{Name: "service-mesh@finance.example.com"}); err != nil {
		t.Fatal(err)
	}
	if l := findNS(t, e, &regapi.NetworkService{Name: "service-mesh"}); len(l) != 0 {
		t.Fatalf("still there after unregister: %v", l)
	}
	// Unregistering twice is not an error: clients retry.
	if _, err := e.ns.Unregister(ctx, &regapi.NetworkService{Name: "service-mesh"}); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, "finance.example.com")
	ctx := ctxT(t)
	future := timestamppb.New(time.Now().Add(time.Minute))
	tests := []struct {
		name    string
		call    func() error
		code    codes.Code
		mention string
	}{
		{name: "empty service name", code: codes.InvalidArgument, mention: "name",
			call: func() error { _, err := e.ns.Register(ctx, &regapi.NetworkService{}); return err }},
		{name: "bad payload", code: codes.InvalidArgument, mention: "payload",
			call: func() error {
				_, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "a", Payload: "MPLS"})
				return err
			}},
		{name: "bad source label", code: codes.InvalidArgument, mention: "matches[0].source_selector",
			call: func() error {
				_, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "a", Matches: []*regapi.Match{{SourceSelector: map[string]string{"bad key!": "x"}}}})
				return err
			}},
		{name: "bad template", code: codes.InvalidArgument, mention: "destination_selector",
			call: func() error {
				_, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "a", Matches: []*regapi.Match{{Routes: []*regapi.Destination{{DestinationSelector: map[string]string{"nodeName": "{{ .nodeName"}}}}}})
				return err
			}},
		{name: "foreign domain", code: codes.Unimplemented, mention: `"other.org"`,
			call: func() error { _, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "a@other.org"}); return err }},
		{name: "empty endpoint name", code: codes.InvalidArgument, mention: "name",
			call: func() error {
				_, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Url: "tcp://1.2.3.4:5"})
				return err
			}},
		{name: "endpoint without url", code: codes.InvalidArgument, mention: "url",
			call: func() error { _, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "e"}); return err }},
		{name: "endpoint of a foreign-domain service", code: codes.Unimplemented, mention: "interdomain look-ups are off",
			call: func() error {
				_, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "e", Url: "tcp://1.2.3.4:5", NetworkServiceNames: []string{"x@other.org"}, ExpirationTime: future})
				return err
			}},
		{name: "expiration in the past", code: codes.InvalidArgument, mention: "expiration_time",
			call: func() error {
				_, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "e", Url: "tcp://1.2.3.4:5", ExpirationTime: timestamppb.New(time.Now().Add(-time.Second))})
				return err
			}},
		{name: "more services than the store indexes", code: codes.InvalidArgument, mention: "network_service_names",
			call: func() error {
				services := make([]string, store.MaxTags+1)
				for i := range services {
					services[i] = fmt.Sprintf("svc-%d", i)
				}
				_, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "e", Url: "tcp://1.2.3.4:5", NetworkServiceNames: services, ExpirationTime: future})
				return err
			}},
		{name: "unregister without name", code: codes.InvalidArgument, mention: "name",
			call: func() error { _, err := e.nse.Unregister(ctx, &regapi.NetworkServiceEndpoint{}); return err }},
		{name: "find in foreign domain", code: codes.Unimplemented, mention: "other.org",
			call: func() error {
				s, err := e.ns.Find(ctx, &regapi.NetworkServiceQuery{NetworkService: &regapi.NetworkService{Name: "a@other.org"}})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), tt.code, tt.mention)
		})
	}
	if l := findNS(t, e, nil); len(l) != 0 {
		t.Fatalf("bad input left state behind: %v", l)
	}
	if l := findNSE(t, e, nil); len(l) != 0 {
		t.Fatalf("bad input left state behind: %v", l)
	}
}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestFindEndpointMatching(t *testing.T) {
	e := newEnv(t, "marketing.example.com")
	ctx := ctxT(t)
	exp := timestamppb.New(time.Now().Add(time.Hour))
	for _, nse := range []*regapi.NetworkServiceEndpoint{
		{Name: "vl3-node1", Url: "tcp://10.0.0.1:5001", NetworkServiceNames: []string{"local-vl3@marketing.example.com"}, ExpirationTime: exp,
			NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3@marketing.example.com": {Labels: labels("nodeName", "node1", "app", "vl3")}}},
		{Name: "vl3-node2", Url: "tcp://10.0.0.2:5001", NetworkServiceNames: []string{"local-vl3"}, ExpirationTime: exp,
			NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3": {Labels: labels("nodeName", "node2", "app", "vl3")}}},
		{Name: "supplier", Url: "unix:///run/supplier.sock", NetworkServiceNames: []string{"local-vl3", "other"}, ExpirationTime: exp,
			NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3": {Labels: labels("supplier", "true")}}},
	} {
		if _, err := e.nse.Register(ctx, nse); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		query *regapi.NetworkServiceEndpoint
		want  []string
	}{
		{name: "empty query matches all", query: &regapi.NetworkServiceEndpoint{}, want: []string{"supplier", "vl3-node1", "vl3-node2"}},
		{name: "nil query matches all", query: nil, want: []string{"supplier", "vl3-node1", "vl3-node2"}},
		{name: "name is exact", query: &regapi.NetworkServiceEndpoint{Name: "vl3-node1"}, want: []string{"vl3-node1"}},
		{name: "name prefix does not match", query: &regapi.NetworkServiceEndpoint{Name: "vl3"}, want: nil},
		{name: "qualified name", query: &regapi.NetworkServiceEndpoint{Name: "vl3-node2@marketing.example.com"}, want: []string{"vl3-node2"}},
		{name: "url substring", query: &regapi.NetworkServiceEndpoint{Url: "10.0.0."}, want: []string{"vl3-node1", "vl3-node2"}},
		{name: "url scheme", query: &regapi.NetworkServiceEndpoint{Url: "unix://"}, want: []string{"supplier"}},
		{name: "by service", query: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"local-vl3@marketing.example.com"}}, want: []string{"supplier", "vl3-node1", "vl3-node2"}},
		{name: "two services must both be provided", query: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"local-vl3", "other"}}, want: []string{"supplier"}},
		{name: "unknown service", query: &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{"nope"}}, want: nil},
		{name: "labels subset", query: &regapi.NetworkServiceEndpoint{NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3": {Labels: labels("nodeName", "node2")}}}, want: []string{"vl3-node2"}},
		{name: "labels all must match", query: &regapi.NetworkServiceEndpoint{NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3": {Labels: labels("nodeName", "node2", "app", "x")}}}, want: nil},
		{name: "empty labels for a service match every endpoint", query: &regapi.NetworkServiceEndpoint{NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3": {}}}, want: []string{"supplier", "vl3-node1", "vl3-node2"}},
		{name: "labels of the wrong service", query: &regapi.NetworkServiceEndpoint{NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"other": {Labels: labels("supplier", "true")}}}, want: nil},
		{name: "combined", query: &regapi.NetworkServiceEndpoint{Url: "unix", NetworkServiceNames: []string{"local-vl3"}, NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"local-vl3": {Labels: labels("supplier", "true")}}}, want: []string{"supplier"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := findNSE(t, e, tt.query)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFindServiceMatching(t *testing.T) {
	mesh := &regapi.NetworkService{Name: "mesh", Payload: "IP", Matches: []*regapi.Match{{SourceSelector: labels("a", "b")}}}
	tests := []struct {
		name  string
		query *regapi.NetworkService
		want  bool
	}{
		{name: "nil", query: nil, want: true},
		{name: "empty", query: &regapi.NetworkService{}, want: true},
		{name: "name", query: &regapi.NetworkService{Name: "mesh"}, want: true},
		{name: "other name", query: &regapi.NetworkService{Name: "mes"}, want: false},
		{name: "payload", query: &regapi.NetworkService{Payload: "IP"}, want: true},
		{name: "other payload", query: &regapi.NetworkService{Payload: "ETHERNET"}, want: false},
		{name: "same matches", query: &regapi.NetworkService{Matches: []*regapi.Match{{SourceSelector: labels("a", "b")}}}, want: true},
		{name: "other matches", query: &regapi.NetworkService{Matches: []*regapi.Match{{SourceSelector: labels("a", "c")}}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := registry.MatchService(tt.query, mesh); got != tt.want {
				t.Fatalf("MatchService = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEndpointExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	// Without expiration_time: now + 1 minute.
	got, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "default", Url: "tcp://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(got.ExpirationTime.AsTime()); d < 50*time.Second || d > 61*time.Second {
		t.Fatalf("default expiry in %s, want about 1m", d)
	}

	w, err := e.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{Name: "short"}, Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "short", Url: "tcp://127.0.0.1:1", ExpirationTime: timestamppb.New(time.Now().Add(time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	// A refresh before expiry keeps it and its initial registration time.
	time.Sleep(300 * time.Millisecond)
	second, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: "short", Url: "tcp://127.0.0.1:1", ExpirationTime: timestamppb.New(time.Now().Add(1500 * time.Millisecond))})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first.InitialRegistrationTime, second.InitialRegistrationTime) {
		t.Fatalf("initial_registration_time changed on refresh: %v -> %v", first.InitialRegistrationTime.AsTime(), second.InitialRegistrationTime.AsTime())
	}
	var events []string
	for len(events) < 3 {
		r, err := w.Recv()
		if err != nil {
			t.Fatalf("watch: %v (events so far %v)", err, events)
		}
		ev := "update"
		if r.Deleted {
			ev = "delete"
		}
		events = append(events, ev)
	}
	if strings.Join(events, ",") != "update,update,delete" {
		t.Fatalf("events = %v", events)
	}
	if time.Now().Before(second.ExpirationTime.AsTime()) {
		t.Fatal("deleted before its (refreshed) expiration time")
	}
	if l := findNSE(t, e, &regapi.NetworkServiceEndpoint{Name: "short"}); len(l) != 0 {
		t.Fatalf("expired endpoint still found: %v", l)
	}
}

// TestWatch: current matches first, then every change to the matching set,
// including an endpoint that stops matching (reported deleted).
func TestWatch(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	exp := timestamppb.New(time.Now().Add(time.Hour))
	reg := func(name, color string) {
		t.Helper()
		_, err := e.nse.Register(ctx, &regapi.NetworkServiceEndpoint{Name: name, Url: "tcp://127.0.0.1:1", NetworkServiceNames: []string{"svc"}, ExpirationTime: exp,
			NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"svc": {Labels: labels("color", color)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg("before", "red")
	reg("blue-before", "blue")
	w, err := e.nse.Find(ctx, &regapi.NetworkServiceEndpointQuery{Watch: true, NetworkServiceEndpoint: &regapi.NetworkServiceEndpoint{
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{"svc": {Labels: labels("color", "red")}}}})
	if err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		r, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Deleted {
			return "-" + r.NetworkServiceEndpoint.Name
		}
		return "+" + r.NetworkServiceEndpoint.Name
	}
	if got := next(); got != "+before" {
		t.Fatalf("initial = %s", got)
	}
	reg("after", "red")
	reg("blue-after", "blue") // not matching: not sent
	reg("before", "blue")     // stops matching: sent as deleted
	if _, err := e.nse.Unregister(ctx, &regapi.NetworkServiceEndpoint{Name: "after"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		got = append(got, next())
	}
	if strings.Join(got, " ") != "+after -before -after" {
		t.Fatalf("events = %v", got)
	}

	// The service watch works the same way.
	sw, err := e.ns.Find(ctx, &regapi.NetworkServiceQuery{Watch: true, NetworkService: &regapi.NetworkService{}})
	if err != nil {
		t.Fatal(err)
	}
	// The stream may start watching after the Register (the service then
	// comes in its first listing) but, once it has sent it, not after the
	// Unregister: a watch subscribes and lists at once.
	for _, step := range []struct {
		call    func() error
		deleted bool
	}{
		{func() error { _, err := e.ns.Register(ctx, &regapi.NetworkService{Name: "svc"}); return err }, false},
		{func() error { _, err := e.ns.Unregister(ctx, &regapi.NetworkService{Name: "svc"}); return err }, true},
	} {
		if err := step.call(); err != nil {
			t.Fatal(err)
		}
		r, err := sw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Deleted != step.deleted || r.NetworkService.Name != "svc" {
			t.Fatalf("service event %v, want deleted=%v", r, step.deleted)
		}
	}
}

// TestWatchEndsWithClient: a watcher that goes away releases its stream.
func TestWatchEndsWithClient(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	w, err := e.ns.Find(ctx, &regapi.NetworkServiceQuery{Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("recv after cancel: %v", err)
	}
}
