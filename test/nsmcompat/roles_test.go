package nsmcompat

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/edwarnicke/grpcfd"
	"github.com/networkservicemesh/api/pkg/api/networkservice"
	kernelmech "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"
	memifmech "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/memif"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/noop"
	registryapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/networkservicemesh/sdk/pkg/networkservice/chains/client"
	"github.com/networkservicemesh/sdk/pkg/networkservice/chains/endpoint"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/authorize"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/clientinfo"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/excludedprefixes"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/heal"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms/kernel"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms/recvfd"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/mechanisms/sendfd"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/null"
	"github.com/networkservicemesh/sdk/pkg/networkservice/common/upstreamrefresh"
	"github.com/networkservicemesh/sdk/pkg/networkservice/core/chain"
	"github.com/networkservicemesh/sdk/pkg/networkservice/ipam/point2pointipam"
	registryclient "github.com/networkservicemesh/sdk/pkg/registry/chains/client"
	registryauthorize "github.com/networkservicemesh/sdk/pkg/registry/common/authorize"
	registryclientinfo "github.com/networkservicemesh/sdk/pkg/registry/common/clientinfo"
	registrysendfd "github.com/networkservicemesh/sdk/pkg/registry/common/sendfd"
	"github.com/networkservicemesh/sdk/pkg/tools/grpcutils"
	"github.com/networkservicemesh/sdk/pkg/tools/nsurl"
	"github.com/networkservicemesh/sdk/pkg/tools/spiffejwt"
	"github.com/networkservicemesh/sdk/pkg/tools/token"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// roleArg, as the first argument, makes the test binary run one workload.
const roleArg = "nsmcompat-role"

// registryClientPolicies are cmd-nse-icmp-responder's default
// NSM_REGISTRY_CLIENT_POLICIES (the sdk embeds the files).
var registryClientPolicies = []string{"etc/nsm/opa/common/.*.rego", "etc/nsm/opa/registry/.*.rego", "etc/nsm/opa/client/.*.rego"}

// event is one line a workload prints on stdout for the test to read.
type event struct {
	Event   string          `json:"event"`
	Type    string          `json:"type,omitempty"`
	Code    string          `json:"code,omitempty"`
	Message string          `json:"message,omitempty"`
	Conns   []string        `json:"conns,omitempty"` // protojson of each connection
	NSE     json.RawMessage `json:"nse,omitempty"`
	Names   []string        `json:"names,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
}

// printer writes events as JSON lines; workloads print from several goroutines.
type printer struct{ mu sync.Mutex }

func (p *printer) print(e event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	data, _ := json.Marshal(e)
	fmt.Println(string(data))
}

func (p *printer) fail(what string, err error) {
	p.print(event{Event: "error", Code: status.Code(err).String(), Message: fmt.Sprintf("%s: %v", what, err)})
}

func connJSON(c *networkservice.Connection) string {
	data, _ := protojson.Marshal(c)
	return string(data)
}

// runRole runs the workload args name and returns the exit status.
func runRole(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "nsmcompat: no role")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	var err error
	switch args[0] {
	case "nse":
		err = runNSE(ctx, args[1:])
	case "nsc":
		err = runNSC(ctx, args[1:])
	case "registry":
		err = runRegistry(ctx, args[1:])
	case "watch":
		err = runWatch(ctx, args[1:])
	case "bench":
		err = runBench(ctx, args[1:])
	default:
		err = fmt.Errorf("unknown role %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsmcompat:", args[0]+":", err)
		return 1
	}
	return 0
}

// x509Source connects to the SPIFFE Workload API as NSM's cmd programs do
// (workloadapi.NewX509Source from SPIFFE_ENDPOINT_SOCKET).
func x509Source(ctx context.Context, socket string) (*workloadapi.X509Source, error) {
	if err := os.Setenv("SPIFFE_ENDPOINT_SOCKET", "unix://"+socket); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(sctx)
	if err != nil {
		return nil, fmt.Errorf("x509 source: %w", err)
	}
	return src, nil
}

// dialOptions are cmd-nsc's and cmd-nse-icmp-responder's client options.
func dialOptions(src *workloadapi.X509Source, lifetime time.Duration) []grpc.DialOption {
	tlsClientConfig := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeAny())
	tlsClientConfig.MinVersion = tls.VersionTLS12
	return []grpc.DialOption{
		grpcfd.WithChainStreamInterceptor(),
		grpcfd.WithChainUnaryInterceptor(),
		grpc.WithDefaultCallOptions(
			grpc.WaitForReady(true),
			grpc.PerRPCCredentials(token.NewPerRPCCredentials(spiffejwt.TokenGeneratorFunc(src, lifetime))),
		),
		grpc.WithTransportCredentials(grpcfd.TransportCredentials(credentials.NewTLS(tlsClientConfig))),
	}
}

// runNSE is cmd-nse-icmp-responder v1.18.0's main: the endpoint chain with
// the default authorize server, IPAM, the kernel mechanism and sendfd; NS
// and NSE registration through the manager with the default registry
// client policies and registry sendfd. Left out: sriov tokens, policy
// routes, onidle (its default is off) and dnscontext (it rewrites
// /etc/resolv.conf).
func runNSE(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nse", flag.ContinueOnError)
	name := fs.String("name", "icmp-server", "endpoint name")
	service := fs.String("service", "icmp-responder", "network service")
	connectTo := fs.String("connect-to", "", "manager URL")
	cidr := fs.String("cidr", "169.254.0.0/16", "IPAM prefix")
	spiffe := fs.String("spiffe", "", "Workload API socket")
	payload := fs.String("payload", "ETHERNET", "service payload")
	withSendFD := fs.Bool("sendfd", true, "sendfd server in the chain (as NSM's)")
	withRecvFD := fs.Bool("recvfd", false, "recvfd server in the chain too (NSM's before 2023)")
	dir := fs.String("dir", "", "directory for the listen socket")
	memifAs := fs.String("memif", "", "also serve MEMIF: abstract (sdk-vpp's form) or file (NSM's FS-socket form)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkMemifForm(*memifAs); err != nil {
		return err
	}
	out := &printer{}
	lifetime := 10 * time.Minute
	src, err := x509Source(ctx, *spiffe)
	if err != nil {
		return err
	}
	defer src.Close()
	tlsServerConfig := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeAny())
	tlsServerConfig.MinVersion = tls.VersionTLS12
	_, ipnet, err := net.ParseCIDR(*cidr)
	if err != nil {
		return err
	}
	fds := []networkservice.NetworkServiceServer{}
	if *withRecvFD {
		fds = append(fds, recvfd.NewServer())
	}
	if *withSendFD {
		fds = append(fds, sendfd.NewServer())
	}
	serveMechs := map[string]networkservice.NetworkServiceServer{
		kernelmech.MECHANISM: kernel.NewServer(),
		noop.MECHANISM:       null.NewServer(),
	}
	if *memifAs != "" {
		// As cmd-nse-icmp-responder-vpp: MEMIF only.
		serveMechs = map[string]networkservice.NetworkServiceServer{memifmech.MECHANISM: &memifServer{form: *memifAs, dir: *dir}}
	}
	responder := endpoint.NewServer(ctx,
		spiffejwt.TokenGeneratorFunc(src, lifetime),
		endpoint.WithName(*name),
		endpoint.WithAuthorizeServer(authorize.NewServer()),
		endpoint.WithAdditionalFunctionality(append([]networkservice.NetworkServiceServer{
			point2pointipam.NewServer(ipnet),
			mechanisms.NewServer(serveMechs),
		}, fds...)...),
	)
	server := grpc.NewServer(grpc.Creds(grpcfd.TransportCredentials(credentials.NewTLS(tlsServerConfig))))
	responder.Register(server)
	listenOn := &url.URL{Scheme: "unix", Path: filepath.Join(*dir, *name+".listen.on")}
	srvErr := grpcutils.ListenAndServe(ctx, listenOn, server)
	select {
	case err := <-srvErr:
		return fmt.Errorf("serve: %w", err)
	default:
	}

	cu, err := url.Parse(*connectTo)
	if err != nil {
		return err
	}
	clientOptions := append(dialOptions(src, lifetime), grpc.WithBlock())
	nsClient := registryclient.NewNetworkServiceRegistryClient(ctx,
		registryclient.WithClientURL(cu),
		registryclient.WithDialOptions(clientOptions...),
		registryclient.WithAuthorizeNSRegistryClient(registryauthorize.NewNetworkServiceRegistryClient(
			registryauthorize.WithPolicies(registryClientPolicies...))))
	if _, err := nsClient.Register(ctx, &registryapi.NetworkService{Name: *service, Payload: *payload}); err != nil {
		out.fail("register ns", err)
		return fmt.Errorf("register ns: %w", err)
	}
	nseClient := registryclient.NewNetworkServiceEndpointRegistryClient(ctx,
		registryclient.WithClientURL(cu),
		registryclient.WithDialOptions(clientOptions...),
		registryclient.WithNSEAdditionalFunctionality(
			registryclientinfo.NewNetworkServiceEndpointRegistryClient(),
			registrysendfd.NewNetworkServiceEndpointRegistryClient(),
		),
		registryclient.WithAuthorizeNSERegistryClient(registryauthorize.NewNetworkServiceEndpointRegistryClient(
			registryauthorize.WithPolicies(registryClientPolicies...))))
	nse, err := nseClient.Register(ctx, &registryapi.NetworkServiceEndpoint{
		Name:                 *name,
		NetworkServiceNames:  []string{*service},
		NetworkServiceLabels: map[string]*registryapi.NetworkServiceLabels{*service: {Labels: map[string]string{}}},
		Url:                  listenOn.String(),
	})
	if err != nil {
		out.fail("register nse", err)
		return fmt.Errorf("register nse: %w", err)
	}
	data, _ := protojson.Marshal(nse)
	out.print(event{Event: "registered", NSE: data})
	select {
	case <-ctx.Done():
	case err := <-srvErr:
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// runNSC is cmd-nsc v1.18.0's main for one network service: the client
// chain with the default authorize client, heal, refresh, the kernel
// mechanism and sendfd; MonitorConnections first, then Request until it
// succeeds, Close on SIGTERM. Left out: sriov token and vfio (no SR-IOV),
// dnscontext (it rewrites /etc/resolv.conf), and heal's liveness check
// (sdk-kernel's ping; the test pings itself). Unlike cmd-nsc, which
// stops monitoring once connected, this one keeps its monitor stream and
// prints every event, so the test sees refreshes and heals.
func runNSC(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nsc", flag.ContinueOnError)
	name := fs.String("name", "nsc", "client name")
	connectTo := fs.String("connect-to", "", "manager URL")
	spiffe := fs.String("spiffe", "", "Workload API socket")
	nsURL := fs.String("url", "", "kernel://service/ifname")
	lifetime := fs.Duration("max-token-lifetime", 10*time.Minute, "NSM_MAX_TOKEN_LIFETIME")
	requestTimeout := fs.Duration("request-timeout", 15*time.Second, "NSM_REQUEST_TIMEOUT")
	memifAs := fs.String("memif", "", "MEMIF client element: abstract (cmd-nsc-vpp's form) or file (asks for a socket file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkMemifForm(*memifAs); err != nil {
		return err
	}
	out := &printer{}
	src, err := x509Source(ctx, *spiffe)
	if err != nil {
		return err
	}
	defer src.Close()
	cu, err := url.Parse(*connectTo)
	if err != nil {
		return err
	}
	opts := dialOptions(src, *lifetime)
	// As in cmd-nsc, the chain lives on a context that the signal does not
	// end, so that Close can still go out.
	chainCtx, cancelChain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelChain()
	var nsmClient networkservice.NetworkServiceClient
	if *memifAs != "" {
		nsmClient = cmdNSCVPPClient(chainCtx, cu, *name, opts, &memifClient{form: *memifAs, out: out})
	} else {
		nsmClient = cmdNSCClient(chainCtx, cu, *name, opts)
	}
	dctx, cancelDial := context.WithTimeout(ctx, 5*time.Second)
	cc, err := grpc.DialContext(dctx, grpcutils.URLToTarget(cu), opts...)
	cancelDial()
	if err != nil {
		return fmt.Errorf("dial manager: %w", err)
	}
	defer cc.Close()

	id := *name + "-0"
	stream, err := networkservice.NewMonitorConnectionClient(cc).MonitorConnections(ctx, &networkservice.MonitorScopeSelector{
		PathSegments: []*networkservice.PathSegment{{Id: id}},
	})
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					out.fail("monitor", err)
				}
				return
			}
			e := event{Event: "monitor", Type: ev.GetType().String()}
			for _, c := range ev.GetConnections() {
				e.Conns = append(e.Conns, connJSON(c))
			}
			out.print(e)
		}
	}()

	u, err := url.Parse(*nsURL)
	if err != nil {
		return err
	}
	nu := (*nsurl.NSURL)(u)
	var conn *networkservice.Connection
	for conn == nil {
		req := &networkservice.NetworkServiceRequest{
			Connection:           &networkservice.Connection{Id: id, NetworkService: nu.NetworkService(), Labels: nu.Labels()},
			MechanismPreferences: []*networkservice.Mechanism{nu.Mechanism()},
		}
		rctx, cancel := context.WithTimeout(ctx, *requestTimeout)
		conn, err = nsmClient.Request(rctx, req)
		cancel()
		if err != nil {
			out.fail("request", err)
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
	out.print(event{Event: "connected", Conns: []string{connJSON(conn)}})
	// A monitor opened now (as cmd-nsc's after a restart) must start with
	// the connection in its INITIAL_STATE_TRANSFER.
	mctx, stopMonitor := context.WithCancel(ctx)
	again, err := networkservice.NewMonitorConnectionClient(cc).MonitorConnections(mctx, &networkservice.MonitorScopeSelector{
		PathSegments: []*networkservice.PathSegment{{Id: id}},
	})
	if err == nil {
		var ev *networkservice.ConnectionEvent
		if ev, err = again.Recv(); err == nil {
			e := event{Event: "initial", Type: ev.GetType().String()}
			for _, c := range ev.GetConnections() {
				e.Conns = append(e.Conns, connJSON(c))
			}
			out.print(e)
		}
	}
	stopMonitor()
	if err != nil {
		out.fail("second monitor", err)
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *requestTimeout)
	defer cancel()
	if _, err := nsmClient.Close(cctx, conn); err != nil {
		out.fail("close", err)
		return fmt.Errorf("close: %w", err)
	}
	out.print(event{Event: "closed"})
	return nil
}

// cmdNSCClient is cmd-nsc v1.18.0's client chain (see runNSC); chainCtx
// must outlive the signal that ends the client, so that Close goes out.
func cmdNSCClient(chainCtx context.Context, cu *url.URL, name string, opts []grpc.DialOption) networkservice.NetworkServiceClient {
	return client.NewClient(chainCtx,
		client.WithClientURL(cu),
		client.WithName(name),
		client.WithAuthorizeClient(authorize.NewClient()),
		client.WithHealClient(heal.NewClient(chainCtx)),
		client.WithAdditionalFunctionality(
			clientinfo.NewClient(),
			upstreamrefresh.NewClient(chainCtx),
			mechanisms.NewClient(map[string]networkservice.NetworkServiceClient{
				kernelmech.MECHANISM: chain.NewNetworkServiceClient(kernel.NewClient()),
			}),
			sendfd.NewClient(),
			excludedprefixes.NewClient(),
		),
		client.WithDialTimeout(5*time.Second),
		client.WithDialOptions(opts...),
	)
}

// cmdNSCVPPClient is cmdNSCClient with a memif element in place of the
// kernel mechanism, where cmd-nsc-vpp v1.18.0 has sdk-vpp's memif client:
// before sendfd for the abstract form; for the file form after it (sendfd
// cannot send "file:") and before NSM's recvfd client. Unlike cmd-nsc-vpp,
// the memif is a gomemif peer, not a VPP of the client's own.
func cmdNSCVPPClient(chainCtx context.Context, cu *url.URL, name string, opts []grpc.DialOption, m *memifClient) networkservice.NetworkServiceClient {
	fds := []networkservice.NetworkServiceClient{m, sendfd.NewClient()}
	if m.form == "file" {
		fds = []networkservice.NetworkServiceClient{sendfd.NewClient(), m, recvfd.NewClient()}
	}
	return client.NewClient(chainCtx,
		client.WithClientURL(cu),
		client.WithName(name),
		client.WithAuthorizeClient(authorize.NewClient()),
		client.WithHealClient(heal.NewClient(chainCtx)),
		client.WithAdditionalFunctionality(append(append([]networkservice.NetworkServiceClient{
			clientinfo.NewClient(),
			upstreamrefresh.NewClient(chainCtx),
		}, fds...), excludedprefixes.NewClient())...),
		client.WithDialTimeout(5*time.Second),
		client.WithDialOptions(opts...),
	)
}

// runRegistry drives NSM's registry client chains with their default
// policies against a registry (vwire's, or a manager's proxy): NS
// Register, Find and Unregister; NSE Register, a second Register (the
// refresh case of the client_allowed policy), Find with watch, Unregister.
// Each step prints "ok" or fails the process.
func runRegistry(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	connectTo := fs.String("connect-to", "", "registry URL")
	spiffe := fs.String("spiffe", "", "Workload API socket")
	service := fs.String("service", "nsm-ns", "network service to register")
	nseName := fs.String("nse", "nsm-nse", "endpoint to register")
	nseURL := fs.String("nse-url", "tcp://127.0.0.1:5999", "endpoint URL to register")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := &printer{}
	src, err := x509Source(ctx, *spiffe)
	if err != nil {
		return err
	}
	defer src.Close()
	cu, err := url.Parse(*connectTo)
	if err != nil {
		return err
	}
	opts := append(dialOptions(src, 10*time.Minute), grpc.WithBlock())
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nsClient := registryclient.NewNetworkServiceRegistryClient(ctx,
		registryclient.WithClientURL(cu),
		registryclient.WithDialOptions(opts...),
		registryclient.WithAuthorizeNSRegistryClient(registryauthorize.NewNetworkServiceRegistryClient(
			registryauthorize.WithPolicies(registryClientPolicies...))))
	nseClient := registryclient.NewNetworkServiceEndpointRegistryClient(ctx,
		registryclient.WithClientURL(cu),
		registryclient.WithDialOptions(opts...),
		registryclient.WithNSEAdditionalFunctionality(registrysendfd.NewNetworkServiceEndpointRegistryClient()),
		registryclient.WithAuthorizeNSERegistryClient(registryauthorize.NewNetworkServiceEndpointRegistryClient(
			registryauthorize.WithPolicies(registryClientPolicies...))))
	step := func(name string, err error) error {
		if err != nil {
			out.fail(name, err)
			return fmt.Errorf("%s: %w", name, err)
		}
		out.print(event{Event: "ok", Message: name})
		return nil
	}

	ns := &registryapi.NetworkService{Name: *service, Payload: "IP"}
	if err := step("ns register", errOf(nsClient.Register(ctx, ns))); err != nil {
		return err
	}
	found, err := findNS(ctx, nsClient, *service)
	if err := step("ns find", errors.Join(err, expect(found == 1, "found %d services named %s", found, *service))); err != nil {
		return err
	}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := nseClient.Find(wctx, &registryapi.NetworkServiceEndpointQuery{
		NetworkServiceEndpoint: &registryapi.NetworkServiceEndpoint{NetworkServiceNames: []string{*service}},
		Watch:                  true,
	})
	if err := step("nse find watch", err); err != nil {
		return err
	}
	nse := &registryapi.NetworkServiceEndpoint{
		Name: *nseName, Url: *nseURL, NetworkServiceNames: []string{*service},
		ExpirationTime: nil,
	}
	reg, err := nseClient.Register(ctx, nse)
	if err := step("nse register", err); err != nil {
		return err
	}
	if err := step("nse register again", errOf(nseClient.Register(ctx, reg))); err != nil {
		return err
	}
	if err := step("nse watch sees it", awaitNSE(watch, *nseName, false)); err != nil {
		return err
	}
	if err := step("nse unregister", errOf(nseClient.Unregister(ctx, reg))); err != nil {
		return err
	}
	if err := step("nse watch sees it go", awaitNSE(watch, *nseName, true)); err != nil {
		return err
	}
	// NSM's own v1.18.0 NS chain drops the call options on Unregister
	// (registry/common/clientconn/ns_client.go), so its authorize client
	// never learns the server's certificate and its next_token_signed
	// policy refuses every answer, from NSM's managers too: the NS is
	// unregistered with the same chain without policies.
	nsPlain := registryclient.NewNetworkServiceRegistryClient(ctx,
		registryclient.WithClientURL(cu),
		registryclient.WithDialOptions(opts...))
	return step("ns unregister", errOf(nsPlain.Unregister(ctx, ns)))
}

// runWatch prints every event of an NSE Find with watch for a service,
// made with NSM's registry client chain.
func runWatch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	connectTo := fs.String("connect-to", "", "registry URL")
	spiffe := fs.String("spiffe", "", "Workload API socket")
	service := fs.String("service", "", "network service")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := &printer{}
	src, err := x509Source(ctx, *spiffe)
	if err != nil {
		return err
	}
	defer src.Close()
	cu, err := url.Parse(*connectTo)
	if err != nil {
		return err
	}
	nseClient := registryclient.NewNetworkServiceEndpointRegistryClient(ctx,
		registryclient.WithClientURL(cu),
		registryclient.WithDialOptions(append(dialOptions(src, 10*time.Minute), grpc.WithBlock())...),
		registryclient.WithAuthorizeNSERegistryClient(registryauthorize.NewNetworkServiceEndpointRegistryClient(
			registryauthorize.WithPolicies(registryClientPolicies...))))
	stream, err := nseClient.Find(ctx, &registryapi.NetworkServiceEndpointQuery{
		NetworkServiceEndpoint: &registryapi.NetworkServiceEndpoint{NetworkServiceNames: []string{*service}},
		Watch:                  true,
	})
	if err != nil {
		return fmt.Errorf("find: %w", err)
	}
	out.print(event{Event: "watching"})
	for {
		r, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch: %w", err)
		}
		out.print(event{Event: "nse", Names: []string{r.GetNetworkServiceEndpoint().GetName()}, Deleted: r.GetDeleted()})
	}
}

func errOf[T any](_ T, err error) error { return err }

func expect(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func findNS(ctx context.Context, c registryapi.NetworkServiceRegistryClient, name string) (int, error) {
	stream, err := c.Find(ctx, &registryapi.NetworkServiceQuery{NetworkService: &registryapi.NetworkService{Name: name}})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		r, err := stream.Recv()
		if err != nil {
			if status.Code(err) == 0 || errors.Is(err, context.Canceled) || err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
		if r.GetNetworkService().GetName() == name {
			n++
		}
	}
}

// awaitNSE reads a watch until it reports name (deleted or not).
func awaitNSE(s registryapi.NetworkServiceEndpointRegistry_FindClient, name string, deleted bool) error {
	for {
		r, err := s.Recv()
		if err != nil {
			return err
		}
		if r.GetNetworkServiceEndpoint().GetName() == name && r.GetDeleted() == deleted {
			return nil
		}
	}
}
