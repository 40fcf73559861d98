package nse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/workload/internal/backoff"
)

// DefaultRegistrationLifetime is how long a registration lives unless
// refreshed: NSM's one minute.
const DefaultRegistrationLifetime = time.Minute

// maxCallTimeout bounds one registry call.
const maxCallTimeout = 10 * time.Second

// Registration says what a Registrar keeps registered.
type Registration struct {
	// Endpoint to register: name, network_service_names,
	// network_service_labels and url. expiration_time is set on each call.
	Endpoint *regapi.NetworkServiceEndpoint
	// Services are registered when the registry does not have them yet
	// (discovery looks a service up before its endpoints); an existing
	// service is left as it is, so its matches are not overwritten.
	Services []*regapi.NetworkService
	// Lifetime of each registration; DefaultRegistrationLifetime when zero.
	// The registrar refreshes at a third of it.
	Lifetime time.Duration
	Logger   *slog.Logger
}

// Registrar keeps an endpoint registered through its manager's registry
// API and unregisters it when its Run ends.
type Registrar struct {
	nse      regapi.NetworkServiceEndpointRegistryClient
	ns       regapi.NetworkServiceRegistryClient
	endpoint *regapi.NetworkServiceEndpoint // owned by Run
	services []*regapi.NetworkService
	lifetime time.Duration
	log      *slog.Logger
	// reconnected, when the connection can tell, says the manager is back
	// after the connection dropped: it may have restarted and forgotten
	// the endpoint, so Run registers again at once.
	reconnected func(context.Context) <-chan struct{}
}

// NewRegistrar returns a Registrar that registers over cc (a connection to
// the manager).
func NewRegistrar(cc grpc.ClientConnInterface, r Registration) (*Registrar, error) {
	if r.Endpoint.GetName() == "" {
		return nil, errors.New("nse: registration: endpoint has no name")
	}
	if r.Endpoint.GetUrl() == "" {
		return nil, fmt.Errorf("nse: registration of %s: no url", r.Endpoint.GetName())
	}
	if len(r.Endpoint.GetNetworkServiceNames()) == 0 {
		return nil, fmt.Errorf("nse: registration of %s: no network service", r.Endpoint.GetName())
	}
	reg := &Registrar{
		nse:      regapi.NewNetworkServiceEndpointRegistryClient(cc),
		ns:       regapi.NewNetworkServiceRegistryClient(cc),
		endpoint: proto.Clone(r.Endpoint).(*regapi.NetworkServiceEndpoint),
		services: r.Services,
		lifetime: r.Lifetime,
		log:      r.Logger,
	}
	if reg.lifetime <= 0 {
		reg.lifetime = DefaultRegistrationLifetime
	}
	if rc, ok := cc.(interface {
		Reconnected(context.Context) <-chan struct{}
	}); ok {
		reg.reconnected = rc.Reconnected
	}
	if reg.log == nil {
		reg.log = slog.New(slog.DiscardHandler)
	}
	return reg, nil
}

// Run registers the endpoint (and its services), re-registers at a third
// of the lifetime, retries failures with backoff, and when ctx ends
// unregisters it on a context of its own. It returns the Unregister error,
// if any, once ctx has ended.
func (r *Registrar) Run(ctx context.Context) error {
	b := backoff.Backoff{Initial: 200 * time.Millisecond, Max: min(5*time.Second, r.lifetime/3)}
	var again <-chan struct{}
	if r.reconnected != nil {
		again = r.reconnected(ctx)
	}
	registered := false
	for ctx.Err() == nil {
		wait := r.lifetime / 3
		if err := r.register(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			wait = b.Next()
			r.log.Warn("registration failed, retrying", "nse", r.endpoint.GetName(), "in", wait.Round(time.Millisecond), "err", err)
		} else {
			if !registered {
				r.log.Info("registered", "nse", r.endpoint.GetName(), "services", r.endpoint.GetNetworkServiceNames(),
					"url", r.endpoint.GetUrl(), "lifetime", r.lifetime)
			}
			registered = true
			b.Reset()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-again:
			r.log.Debug("manager connection back: registering again", "nse", r.endpoint.GetName())
			b.Reset()
		}
		t.Stop()
	}
	if !registered {
		return nil
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.callTimeout())
	defer cancel()
	if _, err := r.nse.Unregister(uctx, r.endpoint); err != nil {
		return fmt.Errorf("unregister %s: %w", r.endpoint.GetName(), err)
	}
	r.log.Info("unregistered", "nse", r.endpoint.GetName())
	return nil
}

// register makes one registration, first making sure the services exist
// (again each time: a registry restarted on the memory store forgets them).
func (r *Registrar) register(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout())
	defer cancel()
	for _, ns := range r.services {
		if err := r.ensureService(cctx, ns); err != nil {
			return err
		}
	}
	r.endpoint.ExpirationTime = timestamppb.New(time.Now().Add(r.lifetime))
	got, err := r.nse.Register(cctx, r.endpoint)
	if err != nil {
		return fmt.Errorf("register endpoint %s: %w", r.endpoint.GetName(), err)
	}
	if name := got.GetName(); name != "" && name != r.endpoint.GetName() {
		// The registry chose the name: refresh and unregister under it.
		r.log.Warn("registry renamed the endpoint", "asked", r.endpoint.GetName(), "got", name)
		r.endpoint.Name = name
	}
	return nil
}

// ensureService registers ns unless the registry already has it.
func (r *Registrar) ensureService(ctx context.Context, ns *regapi.NetworkService) error {
	found, err := r.findService(ctx, ns.GetName())
	switch {
	case err == nil && found:
		return nil
	case err != nil && status.Code(err) != codes.Unimplemented:
		return fmt.Errorf("look up network service %s: %w", ns.GetName(), err)
	}
	if _, err := r.ns.Register(ctx, ns); err != nil {
		return fmt.Errorf("register network service %s: %w", ns.GetName(), err)
	}
	r.log.Info("registered network service", "service", ns.GetName(), "payload", ns.GetPayload())
	return nil
}

func (r *Registrar) findService(ctx context.Context, name string) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	stream, err := r.ns.Find(ctx, &regapi.NetworkServiceQuery{NetworkService: &regapi.NetworkService{Name: name}})
	if err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if resp.GetNetworkService().GetName() == name && !resp.GetDeleted() {
			return true, nil
		}
	}
}

func (r *Registrar) callTimeout() time.Duration {
	return min(maxCallTimeout, max(r.lifetime/3, time.Second))
}
