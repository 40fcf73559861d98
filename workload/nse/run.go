package nse

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/regpath"
)

// Defaults shared with NSM's workloads.
const (
	// DefaultConnectTo is the manager's socket for local workloads.
	DefaultConnectTo = "unix:///var/lib/networkservicemesh/nsm.io.sock"
	// EnvConnectTo overrides DefaultConnectTo.
	EnvConnectTo = "NSM_CONNECT_TO"
	// EndpointSocketDir holds the endpoints' sockets by default.
	EndpointSocketDir = "/var/lib/networkservicemesh/endpoints"
	// EnvNodeName names the node; it becomes the nodeName label.
	EnvNodeName = "NODE_NAME"
	// LabelNodeName is the label an endpoint's node is advertised under.
	LabelNodeName = "nodeName"
	// DefaultPayload is the payload of a network service registered by an endpoint.
	DefaultPayload = "IP"
)

// stopGrace bounds how long a stopping endpoint waits for calls in flight.
const stopGrace = 5 * time.Second

// Options configure Run.
type Options struct {
	// Name of the endpoint; DefaultName(Services[0]) when empty.
	Name string
	// Services the endpoint provides. At least one.
	Services []string
	// Labels advertised for every service; nodeName is added from
	// NODE_NAME when set and not given.
	Labels map[string]string
	// RegisterService registers each service, with Payload, when the
	// registry does not have it yet.
	RegisterService bool
	Payload         string // DefaultPayload when empty
	// Listen is where the endpoint serves (unix:///path or host:port);
	// unix://EndpointSocketDir/<name>.sock when empty.
	Listen string
	// URL is registered for the manager to reach the endpoint; derived
	// from the listener when empty.
	URL string
	// ConnectTo is the manager; $NSM_CONNECT_TO or DefaultConnectTo when empty.
	ConnectTo            string
	RegistrationLifetime time.Duration // DefaultRegistrationLifetime when zero
	MaxTokenLifetime     time.Duration // DefaultMaxTokenLifetime when zero
	Mechanisms           []string      // kernel and memif when empty
	NetNSURL             string        // this process's network namespace when empty
	// Source is the endpoint's identity for serving and for dialling the manager.
	Source identity.Source
	Logger *slog.Logger
	// Ready, when set, is called once the endpoint serves, with its
	// final name and URL, before it registers.
	Ready func(name, url string)
	// IdleTimeout, when set, stops the endpoint after it has had no
	// connection for that long (endpoints a supplier starts).
	IdleTimeout time.Duration
}

// Run serves svc as an endpoint and keeps it registered until ctx ends;
// then it unregisters, stops serving (calls in flight get a grace period)
// and releases every connection.
func Run(ctx context.Context, opts Options, svc Service) error {
	if len(opts.Services) == 0 {
		return errors.New("nse: no network service given")
	}
	if opts.Source == nil {
		return errors.New("nse: no identity source")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := opts.Name
	if name == "" {
		name = DefaultName(opts.Services[0])
	}
	listen := opts.Listen
	if listen == "" {
		listen = "unix://" + EndpointSocketDir + "/" + name + ".sock"
	}
	connectTo := opts.ConnectTo
	if connectTo == "" {
		connectTo = ConnectToFromEnv()
	}

	ep, err := New(Config{Name: name, Service: svc, Mechanisms: opts.Mechanisms, NetNSURL: opts.NetNSURL,
		MaxTokenLifetime: opts.MaxTokenLifetime, Source: opts.Source, Logger: log})
	if err != nil {
		return err
	}
	defer ep.Stop()

	l, err := grpcutil.Listen(listen)
	if err != nil {
		return fmt.Errorf("nse %s: %w", name, err)
	}
	url := opts.URL
	if url == "" {
		url = listenerURL(l.Addr())
	}
	gs := grpcutil.NewServer(opts.Source, identity.AuthorizeTrustDomain(opts.Source), log)
	ep.Register(gs)
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(l) }()
	log.Info("endpoint serving", "nse", name, "listen", l.Addr().String(), "url", url, "id", opts.Source.ID().String(),
		"services", opts.Services)
	if opts.Ready != nil {
		opts.Ready(name, url)
	}

	cc, err := regpath.DialRegistrant(connectTo, opts.Source, identity.AuthorizeTrustDomain(opts.Source))
	if err != nil {
		gs.Stop()
		return fmt.Errorf("nse %s: manager: %w", name, err)
	}
	defer cc.Close()
	reg, err := NewRegistrar(cc, Registration{
		Endpoint: EndpointRegistration(name, url, opts.Services, WithNodeName(opts.Labels)),
		Services: serviceRegistrations(opts),
		Lifetime: opts.RegistrationLifetime,
		Logger:   log,
	})
	if err != nil {
		gs.Stop()
		return err
	}

	regCtx, stopRegistering := context.WithCancel(ctx)
	regDone := make(chan error, 1)
	go func() { regDone <- reg.Run(regCtx) }()

	idle := make(chan struct{})
	if opts.IdleTimeout > 0 {
		go watchIdle(ctx, ep, opts.IdleTimeout, idle)
	}
	var runErr error
	served := false
	select {
	case <-ctx.Done():
	case <-idle:
		log.Info("endpoint idle; stopping", "nse", name, "idle_timeout", opts.IdleTimeout)
	case err := <-serveErr:
		served = true
		runErr = fmt.Errorf("nse %s: serve: %w", name, err)
	}
	// Unregister first, so that no new Requests are routed here, then
	// stop serving, then release (ep.Stop, deferred).
	stopRegistering()
	if err := <-regDone; err != nil {
		log.Warn("unregister", "nse", name, "err", err)
	}
	stopServer(gs)
	if !served {
		<-serveErr
	}
	log.Info("endpoint stopped", "nse", name)
	return runErr
}

// watchIdle closes idle once ep has had no connection for timeout.
func watchIdle(ctx context.Context, ep *Endpoint, timeout time.Duration, idle chan<- struct{}) {
	tick := time.NewTicker(min(timeout/4, time.Second))
	defer tick.Stop()
	since := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ep.Len() > 0 {
			since = time.Now()
		} else if time.Since(since) >= timeout {
			close(idle)
			return
		}
	}
}

// stopServer stops gs gracefully, cutting calls still running after stopGrace.
func stopServer(gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		gs.Stop()
		<-done
	}
}

// EndpointRegistration is the registry entry of an endpoint that offers
// services, each with labels, at url.
func EndpointRegistration(name, url string, services []string, labels map[string]string) *regapi.NetworkServiceEndpoint {
	nse := &regapi.NetworkServiceEndpoint{
		Name:                 name,
		NetworkServiceNames:  append([]string(nil), services...),
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{},
		Url:                  url,
	}
	for _, s := range services {
		nse.NetworkServiceLabels[s] = &regapi.NetworkServiceLabels{Labels: maps.Clone(labels)}
	}
	return nse
}

func serviceRegistrations(opts Options) []*regapi.NetworkService {
	if !opts.RegisterService {
		return nil
	}
	payload := opts.Payload
	if payload == "" {
		payload = DefaultPayload
	}
	out := make([]*regapi.NetworkService, 0, len(opts.Services))
	for _, s := range opts.Services {
		out = append(out, &regapi.NetworkService{Name: s, Payload: payload})
	}
	return out
}

// WithNodeName returns labels plus nodeName from NODE_NAME when that is set
// and labels do not already say.
func WithNodeName(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	if node := os.Getenv(EnvNodeName); node != "" {
		if _, ok := out[LabelNodeName]; !ok {
			out[LabelNodeName] = node
		}
	}
	return out
}

// ConnectToFromEnv is $NSM_CONNECT_TO, or DefaultConnectTo.
func ConnectToFromEnv() string {
	if s := os.Getenv(EnvConnectTo); s != "" {
		return s
	}
	return DefaultConnectTo
}

// DefaultName is <service>-<hostname>-<4 random characters>, NSM's shape of
// an endpoint's name.
func DefaultName(service string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host, _, _ = strings.Cut(host, ".")
	service, _, _ = strings.Cut(service, "@")
	return fmt.Sprintf("%s-%s-%s", service, host, strings.ToLower(rand.Text()[:4]))
}

// listenerURL is the URL a manager on this host reaches a listener at:
// unix:///path, or tcp://host:port with an unspecified host replaced by an
// address of this host.
func listenerURL(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix://" + a.String()
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "tcp://" + a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = hostAddress()
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

// hostAddress is the first global unicast address of this host, IPv4
// first, or loopback.
func hostAddress() string {
	addrs, _ := net.InterfaceAddrs()
	var v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
		if v6 == "" {
			v6 = ipn.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return "127.0.0.1"
}
