package nsmcompat

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edwarnicke/grpcfd"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	kernelmech "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/noop"
	registryapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/networkservicemesh/sdk/pkg/networkservice/chains/client"
	"github.com/networkservicemesh/sdk/pkg/networkservice/chains/endpoint"
	"github.com/networkservicemesh/sdk/pkg/networkservice/chains/nsmgr"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/authorize"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/connect"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/discover"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms/kernel"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms/sendfd"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanismtranslation"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/null"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/roundrobin"
	"github.com/networkservicemesh/sdk/pkg/networkservice/ipam/point2pointipam"
	registryclient "github.com/networkservicemesh/sdk/pkg/registry/chains/client"
	"github.com/networkservicemesh/sdk/pkg/registry/chains/memory"
	registryrecvfd "github.com/networkservicemesh/sdk/pkg/registry/common/recvfd"
	registrysendfd "github.com/networkservicemesh/sdk/pkg/registry/common/sendfd"
	"github.com/networkservicemesh/sdk/pkg/tools/grpcutils"
	authmonitor "github.com/networkservicemesh/sdk/pkg/tools/monitorconnection/authorize"
	"github.com/networkservicemesh/sdk/pkg/tools/sandbox"
	"github.com/networkservicemesh/sdk/pkg/tools/spiffejwt"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/vwire/vwire/test/e2e"
)

// Each round of the benchmark requests benchConns connections, then closes
// them, benchParallel[i] at a time; the token lifetime is NSM's default on
// every hop of both sides.
const (
	benchConns    = 100
	benchLifetime = 10 * time.Minute
	benchService  = "icmp-responder"
	benchAttempts = 5
)

var benchParallel = []int{1, 20}

// timing is what one bench role run measured: each call's duration and
// the wall time of each phase.
type timing struct {
	Requests    []time.Duration `json:"requests"`
	Closes      []time.Duration `json:"closes"`
	RequestWall time.Duration   `json:"requestWall"`
	CloseWall   time.Duration   `json:"closeWall"`
	Retries     int             `json:"retries"` // failed Requests tried again
	LastError   string          `json:"lastError,omitempty"`
}

func (t *timing) add(o timing) {
	t.Requests = append(t.Requests, o.Requests...)
	t.Closes = append(t.Closes, o.Closes...)
	t.RequestWall += o.RequestWall
	t.CloseWall += o.CloseWall
	t.Retries += o.Retries
	if o.LastError != "" {
		t.LastError = o.LastError
	}
}

// stats are one phase's percentiles (ms) and rate (per second).
type stats struct{ p50, p90, p99, rate float64 }

func phaseStats(ds []time.Duration, wall time.Duration) stats {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pct := func(q float64) float64 {
		if len(s) == 0 {
			return 0
		}
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return float64(s[max(i, 0)]) / float64(time.Millisecond)
	}
	var rate float64
	if wall > 0 {
		rate = float64(len(s)) / wall.Seconds()
	}
	return stats{p50: pct(0.50), p90: pct(0.90), p99: pct(0.99), rate: rate}
}

// BenchmarkNSMClient runs NSM's client chain (cmd-nsc's, as runNSC builds
// it) against vwire and against the sdk's own nsmgr chain, side by side:
// Request and Close latencies (p50/p90/p99) and rates, one at a time and
// 20 in parallel.
//
//   - vwire: `vwire node` on the kernel dataplane with NSM's icmp responder
//     (the nse role), the client in its own network namespace; every
//     connection is a veth pair, mTLS and NSM's default policies on every
//     hop.
//   - nsmgr: the sdk's nsmgr.NewServer chain with its memory registry and
//     the sandbox's forwarder (discover, roundrobin, connect; no dataplane),
//     the same endpoint chain in-process and the same client role, all on
//     unix sockets, with mTLS and ES256 tokens from one SVID of the node's
//     Workload API for the whole process, and NSM's default policies on
//     the client, nsmgr and the endpoint (the sandbox's are insecure).
//
// Run it as root: go test -run '^$' -bench NSMClient ./test/nsmcompat/
func BenchmarkNSMClient(b *testing.B) {
	if suite.skip != "" {
		b.Skip(suite.skip)
	}
	w := newWorld(b, e2e.MeshOptions{})
	nse, _ := startNSE(w, w.lab.Netns("nse"), "icmp-server", "--cidr", "172.30.0.0/16")
	nse.await(time.Minute, 0, "registration", isEvent("registered"))
	mgrURL := startNSMgr(b, w.lab.Dir, w.spiffe)

	sides := []struct {
		name string
		args []string
	}{
		{name: "vwire", args: []string{"--connect-to", w.node.ConnectTo()}},
		{name: "nsmgr", args: []string{"--connect-to", mgrURL}},
	}
	type row struct {
		name       string
		req, close stats
		retries    int
	}
	var rows []row
	round := 0
	for _, side := range sides {
		for _, par := range benchParallel {
			name := fmt.Sprintf("%s/%d", side.name, par)
			b.Run(name, func(b *testing.B) {
				var all timing
				for i := 0; i < b.N; i++ {
					round++
					all.add(benchRound(b, w, side.name, round, par, side.args))
				}
				b.StopTimer()
				req, cls := phaseStats(all.Requests, all.RequestWall), phaseStats(all.Closes, all.CloseWall)
				for _, m := range []struct {
					v    float64
					unit string
				}{
					{req.p50, "req-p50-ms"}, {req.p90, "req-p90-ms"}, {req.p99, "req-p99-ms"}, {req.rate, "req/s"},
					{cls.p50, "close-p50-ms"}, {cls.p90, "close-p90-ms"}, {cls.p99, "close-p99-ms"}, {cls.rate, "close/s"},
				} {
					b.ReportMetric(m.v, m.unit)
				}
				b.ReportMetric(float64(all.Retries), "retries")
				if all.LastError != "" {
					b.Logf("%d Requests were tried again; the last error: %s", all.Retries, all.LastError)
				}
				// b.Run may call this again with a larger b.N: the last call's
				// figures are the case's.
				if len(rows) > 0 && rows[len(rows)-1].name == name {
					rows = rows[:len(rows)-1]
				}
				rows = append(rows, row{name: name, req: req, close: cls, retries: all.Retries})
			})
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nNSM client, %d connections per round (ms; rate per second)\n", benchConns)
	fmt.Fprintf(&sb, "| %-9s | %7s | %7s | %7s | %7s | %7s | %7s | %7s | %7s | %7s |\n", "case", "req p50", "req p90", "req p99", "req/s", "cls p50", "cls p90", "cls p99", "close/s", "retries")
	fmt.Fprintf(&sb, "|%s|\n", strings.Repeat("-", 11)+strings.Repeat("|---------", 9))
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %-9s | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %7d |\n", r.name,
			r.req.p50, r.req.p90, r.req.p99, r.req.rate, r.close.p50, r.close.p90, r.close.p99, r.close.rate, r.retries)
	}
	fmt.Print(sb.String())
}

// benchRound runs the bench role once, in a fresh network namespace, and
// returns what it measured.
func benchRound(b *testing.B, w *world, side string, round, par int, args []string) timing {
	b.Helper()
	name := fmt.Sprintf("bench-%s-%d", side, round)
	ns := w.lab.Netns(name)
	args = append([]string{"--name", name, "--n", fmt.Sprint(benchConns), "--parallel", fmt.Sprint(par)}, args...)
	p := w.start(ns, name, "bench", args...)
	err, ok := p.Wait(5 * time.Minute)
	if !ok || err != nil {
		b.Fatalf("%s: exited %v (done %v)\n%s\n%s", name, err, ok, e2e.Tail(p.Output(), 10), e2e.Tail(p.Log(), 30))
	}
	for _, e := range p.events() {
		if e.Event == "timing" {
			var t timing
			if err := json.Unmarshal(e.NSE, &t); err != nil {
				b.Fatal(err)
			}
			return t
		}
	}
	b.Fatalf("%s printed no timing: %s", name, e2e.Tail(p.Output(), 10))
	return timing{}
}

// runBench is runNSC's client chain requesting --n connections to the
// service, --parallel at a time, each with its own id and interface name,
// then closing them the same way. It prints the timings as one event.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	name := fs.String("name", "bench", "client name")
	connectTo := fs.String("connect-to", "", "manager URL")
	spiffe := fs.String("spiffe", "", "Workload API socket")
	n := fs.Int("n", benchConns, "connections")
	par := fs.Int("parallel", 1, "requests (and closes) at a time")
	requestTimeout := fs.Duration("request-timeout", 15*time.Second, "NSM_REQUEST_TIMEOUT")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cu, err := url.Parse(*connectTo)
	if err != nil {
		return err
	}
	src, err := x509Source(ctx, *spiffe)
	if err != nil {
		return err
	}
	defer src.Close()
	opts := dialOptions(src, benchLifetime)
	chainCtx, cancelChain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelChain()
	nsmClient := cmdNSCClient(chainCtx, cu, *name, opts)

	conns := make([]*networkservice.Connection, *n)
	var mu sync.Mutex // guards t.Retries and t.LastError
	var t timing
	t.Requests = make([]time.Duration, *n)
	t.Closes = make([]time.Duration, *n)
	t.RequestWall, err = fanOut(*n, *par, func(i int) error {
		mech := kernelmech.ToMechanism(&networkservice.Mechanism{Cls: "LOCAL", Type: kernelmech.MECHANISM, Parameters: map[string]string{}})
		mech.SetInterfaceName(fmt.Sprintf("nsm-%d", i))
		req := &networkservice.NetworkServiceRequest{
			Connection:           &networkservice.Connection{Id: fmt.Sprintf("%s-%d", *name, i), NetworkService: benchService},
			MechanismPreferences: []*networkservice.Mechanism{mech.Mechanism},
		}
		// As cmd-nsc, a failed Request is tried again; its time counts.
		start := time.Now()
		for attempt := 1; ; attempt++ {
			rctx, cancel := context.WithTimeout(ctx, *requestTimeout)
			c, err := nsmClient.Request(rctx, req.Clone())
			cancel()
			if err == nil {
				t.Requests[i] = time.Since(start)
				conns[i] = c
				return nil
			}
			if attempt == benchAttempts {
				return fmt.Errorf("request %d: %w", i, err)
			}
			mu.Lock()
			t.Retries++
			t.LastError = err.Error()
			mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	t.CloseWall, err = fanOut(*n, *par, func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, *requestTimeout)
		defer cancel()
		start := time.Now()
		_, err := nsmClient.Close(cctx, conns[i])
		t.Closes[i] = time.Since(start)
		if err != nil {
			return fmt.Errorf("close %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	(&printer{}).print(event{Event: "timing", NSE: data})
	return nil
}

// fanOut calls f(0..n-1), par at a time, and returns the wall time and
// the first error.
func fanOut(n, par int, f func(i int) error) (time.Duration, error) {
	next := make(chan int)
	errs := make(chan error, par)
	var wg sync.WaitGroup
	start := time.Now()
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					for range next { // drain: the others stop too
					}
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	return wall, <-errs
}

// startNSMgr starts, in this process until the benchmark ends, the sdk's
// nsmgr chain as its sandbox builds a node on unix sockets: the memory
// registry, nsmgr, the sandbox's forwarder (no dataplane) and the icmp
// responder's endpoint chain, registered with their service through
// nsmgr. It returns nsmgr's URL.
func startNSMgr(b *testing.B, dir, spiffe string) string {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	dir, err := os.MkdirTemp(dir, "nsmgr")
	if err != nil {
		b.Fatal(err)
	}
	sock := func(name string) *url.URL { return &url.URL{Scheme: "unix", Path: filepath.Join(dir, name+".sock")} }
	// One SVID for the whole process, from the node's Workload API, as
	// cmd-nsmgr, cmd-registry-memory, cmd-forwarder-* and the endpoint get
	// theirs; mTLS and ES256 tokens of NSM's default lifetime on every hop.
	src, err := x509Source(ctx, spiffe)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	tokens := spiffejwt.TokenGeneratorFunc(src, benchLifetime)
	dialOpts := dialOptions(src, benchLifetime)
	tlsServerConfig := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeAny())
	tlsServerConfig.MinVersion = tls.VersionTLS12
	serve := func(u *url.URL, register func(*grpc.Server)) {
		server := grpc.NewServer(grpc.Creds(grpcfd.TransportCredentials(credentials.NewTLS(tlsServerConfig))))
		register(server)
		select {
		case err := <-grpcutils.ListenAndServe(ctx, u, server):
			b.Fatalf("serve %s: %v", u, err)
		default:
		}
	}

	regURL, mgrURL, fwdURL, nseURL := sock("registry"), sock("nsmgr"), sock("forwarder"), sock("nse")
	serve(regURL, memory.NewServer(ctx, tokens, memory.WithDefaultExpiration(time.Minute), memory.WithDialOptions(dialOpts...)).Register)
	serve(mgrURL, nsmgr.NewServer(ctx, tokens,
		nsmgr.WithName("nsmgr"),
		nsmgr.WithAuthorizeServer(authorize.NewServer()),
		nsmgr.WithAuthorizeMonitorConnectionServer(authmonitor.NewMonitorConnectionServer()),
		nsmgr.WithDialOptions(dialOpts...),
		nsmgr.WithDialTimeout(sandbox.DialTimeout),
		nsmgr.WithRegistry(regURL),
	).Register)

	nsClient := registryclient.NewNetworkServiceRegistryClient(ctx,
		registryclient.WithClientURL(mgrURL), registryclient.WithDialOptions(dialOpts...))
	nseClient := func(extra ...registryapi.NetworkServiceEndpointRegistryClient) registryapi.NetworkServiceEndpointRegistryClient {
		return registryclient.NewNetworkServiceEndpointRegistryClient(ctx,
			registryclient.WithClientURL(mgrURL), registryclient.WithDialOptions(dialOpts...),
			registryclient.WithNSEAdditionalFunctionality(extra...))
	}

	// The sandbox's forwarder (sandbox.Node.NewForwarder).
	forwarder := endpoint.NewServer(ctx, tokens,
		endpoint.WithName("forwarder"),
		endpoint.WithAdditionalFunctionality(
			discover.NewServer(nsClient, nseClient(registryrecvfd.NewNetworkServiceEndpointRegistryClient())),
			roundrobin.NewServer(),
			// sandbox.WithForwarderAdditionalFunctionalityServer: select the
			// client's kernel mechanism, as NSM's forwarders do, so the
			// client gets its mechanism back; null leaves it as the client
			// sent it (kernel.NewServer would put this process's netns in).
			mechanisms.NewServer(map[string]networkservice.NetworkServiceServer{
				kernelmech.MECHANISM: null.NewServer(),
			}),
			connect.NewServer(client.NewClient(ctx,
				client.WithName("forwarder"),
				// sandbox.WithForwarderAdditionalFunctionalityClient: the
				// kernel mechanism's preference (parameters only) for the
				// endpoint's mechanisms server.
				client.WithAdditionalFunctionality(mechanismtranslation.NewClient(), kernel.NewClient()),
				client.WithDialOptions(dialOpts...),
				client.WithDialTimeout(sandbox.DialTimeout),
				client.WithoutRefresh(),
			)),
		),
	)
	serve(fwdURL, forwarder.Register)
	register := func(what string, err error) {
		if err != nil {
			b.Fatalf("nsmgr side: register %s: %v", what, err)
		}
	}
	register("forwarder", errOf(nseClient().Register(ctx, &registryapi.NetworkServiceEndpoint{
		Name:                 "forwarder",
		NetworkServiceNames:  []string{"forwarder"},
		NetworkServiceLabels: map[string]*registryapi.NetworkServiceLabels{"forwarder": {Labels: map[string]string{"p2p": "true"}}},
		Url:                  fwdURL.String(),
	})))

	// The icmp responder's endpoint chain, as runNSE builds it.
	_, ipnet, _ := net.ParseCIDR("172.29.0.0/16")
	responder := endpoint.NewServer(ctx, tokens,
		endpoint.WithName("icmp-server"),
		endpoint.WithAuthorizeServer(authorize.NewServer()),
		endpoint.WithAdditionalFunctionality(
			point2pointipam.NewServer(ipnet),
			mechanisms.NewServer(map[string]networkservice.NetworkServiceServer{
				kernelmech.MECHANISM: kernel.NewServer(),
				noop.MECHANISM:       null.NewServer(),
			}),
			sendfd.NewServer(),
		),
	)
	serve(nseURL, responder.Register)
	register("ns", errOf(nsClient.Register(ctx, &registryapi.NetworkService{Name: benchService, Payload: "ETHERNET"})))
	register("nse", errOf(nseClient(registrysendfd.NewNetworkServiceEndpointRegistryClient()).Register(ctx, &registryapi.NetworkServiceEndpoint{
		Name:                 "icmp-server",
		NetworkServiceNames:  []string{benchService},
		NetworkServiceLabels: map[string]*registryapi.NetworkServiceLabels{benchService: {Labels: map[string]string{}}},
		Url:                  nseURL.String(),
	})))
	return mgrURL.String()
}
