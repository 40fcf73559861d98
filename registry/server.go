// Package registry is vwire's Network Service Registry: NSM's
// NetworkServiceRegistry and NetworkServiceEndpointRegistry (Register, Find
// with watch, Unregister) over a pluggable store. It validates what it is
// given, keeps names in the domains it is authoritative for, expires
// endpoints that stop refreshing, and streams every change to watchers.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/policy"
	"github.com/vwire/vwire/internal/regpath"
	"github.com/vwire/vwire/registry/store"
	"github.com/vwire/vwire/registry/validate"
)

// DefaultExpiry is how long an endpoint registration lives when it does not
// say: NSM's one minute.
const DefaultExpiry = time.Minute

// Config configures a Server.
type Config struct {
	// Domains this registry is authoritative for; `name@domain` with one of
	// them is stored as `name`.
	Domains []string
	Store   store.Store
	// DefaultExpiry applies to endpoints registered without expiration_time.
	DefaultExpiry time.Duration
	// Source is the registry's identity: with it, calls that carry an NSM
	// path (endpoints registering through their manager) are verified and
	// answered with the registry's segment.
	Source identity.Source
	// Policy decides who may register endpoints for which services and
	// domains (nil: anyone of the trust domain).
	Policy *policy.Policy
	// Locator finds other registry domains' registries (DNS SRV): calls
	// naming another domain go there. Nil turns interdomain calls away.
	Locator Locator
	// Metrics receives the registry's collectors (none when nil).
	Metrics prometheus.Registerer
	Logger  *slog.Logger
}

// Server implements both registry services over one store.
type Server struct {
	store   store.Store
	domains domains
	expiry  time.Duration
	src     identity.Source
	policy  *policy.Policy
	log     *slog.Logger
	metrics *metricSet
	locator Locator
	pool    *grpcutil.Pool // to other domains' registries
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("registry: no store")
	}
	for _, d := range cfg.Domains {
		if err := validate.Name("x@" + d); err != nil || d == "" {
			return nil, fmt.Errorf("registry: domain %q is not a DNS name", d)
		}
	}
	s := &Server{store: cfg.Store, domains: domains(cfg.Domains), expiry: cfg.DefaultExpiry, src: cfg.Source, policy: cfg.Policy, log: cfg.Logger,
		locator: cfg.Locator, pool: forwardingPool(cfg.Source)}
	if s.expiry <= 0 {
		s.expiry = DefaultExpiry
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.metrics = newMetrics(cfg.Metrics, s)
	return s, nil
}

// Register adds both registry services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	regapi.RegisterNetworkServiceRegistryServer(g, s.NetworkServices())
	regapi.RegisterNetworkServiceEndpointRegistryServer(g, s.Endpoints())
}

// NetworkServices is the NetworkServiceRegistry half of the server.
func (s *Server) NetworkServices() regapi.NetworkServiceRegistryServer { return (*nsServer)(s) }

// Endpoints is the NetworkServiceEndpointRegistry half of the server.
func (s *Server) Endpoints() regapi.NetworkServiceEndpointRegistryServer { return (*nseServer)(s) }

// nsServer serves NetworkServices.
type nsServer Server

func (s *nsServer) Register(ctx context.Context, in *regapi.NetworkService) (*regapi.NetworkService, error) {
	ns := proto.Clone(in).(*regapi.NetworkService)
	if err := validate.NetworkService(ns); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "network service: %v", err)
	}
	if dom, err := s.domains.foreign("network service", ns.GetName()); err != nil || dom != "" {
		if err != nil {
			return nil, err
		}
		return s.registerRemote(ctx, dom, ns)
	}
	if err := s.domains.localService(ns); err != nil {
		return nil, err
	}
	h, err := (*Server)(s).answerPath(ctx)
	if err != nil {
		return nil, err
	}
	validate.Normalize(ns)
	value, err := proto.Marshal(ns)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode network service %q: %v", ns.Name, err)
	}
	if err := s.store.Put(ctx, store.KindService, ns.Name, value, 0); err != nil {
		return nil, storeError("register network service", ns.Name, err)
	}
	s.log.Info("network service registered", "name", ns.Name, "payload", ns.Payload, "matches", len(ns.Matches))
	if h != nil {
		ns = proto.Clone(ns).(*regapi.NetworkService)
		ns.PathIds = h.IDs()
	}
	return ns, nil
}

func (s *nsServer) Unregister(ctx context.Context, in *regapi.NetworkService) (*empty.Empty, error) {
	if in.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "network service: name: must not be empty")
	}
	if dom, err := s.domains.foreign("network service", in.GetName()); err != nil || dom != "" {
		if err != nil {
			return nil, err
		}
		return s.unregisterRemote(ctx, dom, in)
	}
	name, err := s.domains.local("name", in.GetName())
	if err != nil {
		return nil, err
	}
	if _, err := (*Server)(s).answerPath(ctx); err != nil {
		return nil, err
	}
	// Unregistering what is not there is not an error: clients retry.
	if err := s.store.Delete(ctx, store.KindService, name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeError("unregister network service", name, err)
	}
	s.log.Info("network service unregistered", "name", name)
	return &empty.Empty{}, nil
}

func (s *nsServer) Find(q *regapi.NetworkServiceQuery, stream regapi.NetworkServiceRegistry_FindServer) error {
	query := proto.Clone(q.GetNetworkService()).(*regapi.NetworkService)
	if q.GetNetworkService() == nil {
		query = nil
	}
	if err := (*Server)(s).mayLookUp(stream.Context(), query.GetName()); err != nil {
		return err
	}
	if dom, err := s.domains.foreign("network service", query.GetName()); err != nil || dom != "" {
		if err != nil {
			return err
		}
		return s.findRemote(dom, q, stream)
	}
	if err := s.domains.localService(query); err != nil {
		return err
	}
	if err := (*Server)(s).answerFindPath(stream.Context()); err != nil {
		return err
	}
	return find(stream.Context(), (*Server)(s), store.KindService, store.All, q.GetWatch(), servicePrefilter(query),
		func(ns *regapi.NetworkService) bool { return MatchService(query, ns) },
		func(ns *regapi.NetworkService, deleted bool) error {
			return stream.Send(&regapi.NetworkServiceResponse{NetworkService: ns, Deleted: deleted})
		})
}

// nseServer serves NetworkServiceEndpoints.
type nseServer Server

func (s *nseServer) Register(ctx context.Context, in *regapi.NetworkServiceEndpoint) (*regapi.NetworkServiceEndpoint, error) {
	nse := proto.Clone(in).(*regapi.NetworkServiceEndpoint)
	if err := validate.Endpoint(nse); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "network service endpoint: %v", err)
	}
	if dom, err := s.domains.foreign("network service endpoint", endpointNames(nse)...); err != nil || dom != "" {
		if err != nil {
			return nil, err
		}
		return s.registerRemote(ctx, dom, nse)
	}
	ids, err := (*Server)(s).admitRegistration(ctx, nse)
	if err != nil {
		return nil, err
	}
	if ids != nil {
		nse.PathIds = ids
	}
	if err := s.domains.localEndpoint(nse); err != nil {
		return nil, err
	}
	if n := len(slices.Compact(slices.Sorted(slices.Values(nse.NetworkServiceNames)))); n > store.MaxTags {
		return nil, status.Errorf(codes.InvalidArgument, "network service endpoint: network_service_names: %d services, at most %d allowed", n, store.MaxTags)
	}
	now := time.Now()
	if nse.ExpirationTime == nil {
		nse.ExpirationTime = timestamppb.New(now.Add(s.expiry))
	}
	ttl := nse.ExpirationTime.AsTime().Sub(now)
	if ttl <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "network service endpoint %q: expiration_time %s is in the past",
			nse.Name, nse.ExpirationTime.AsTime().Format(time.RFC3339Nano))
	}
	// initial_registration_time survives refreshes.
	nse.InitialRegistrationTime = timestamppb.New(now)
	if old, err := s.store.Get(ctx, store.KindEndpoint, nse.Name); err == nil {
		prev := new(regapi.NetworkServiceEndpoint)
		if proto.Unmarshal(old, prev) == nil && prev.InitialRegistrationTime != nil {
			nse.InitialRegistrationTime = prev.InitialRegistrationTime
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, storeError("register endpoint", nse.Name, err)
	}
	value, err := proto.Marshal(nse)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode endpoint %q: %v", nse.Name, err)
	}
	// Tagged with its services: a Find or watch that names one of them
	// reads and wakes for that service's endpoints only.
	if err := s.store.Put(ctx, store.KindEndpoint, nse.Name, value, ttl, nse.NetworkServiceNames...); err != nil {
		return nil, storeError("register endpoint", nse.Name, err)
	}
	s.log.Debug("endpoint registered", "name", nse.Name, "url", nse.Url, "services", nse.NetworkServiceNames, "expires", nse.ExpirationTime.AsTime())
	return nse, nil
}

func (s *nseServer) Unregister(ctx context.Context, in *regapi.NetworkServiceEndpoint) (*empty.Empty, error) {
	if in.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "network service endpoint: name: must not be empty")
	}
	if dom, err := s.domains.foreign("network service endpoint", endpointNames(in)...); err != nil || dom != "" {
		if err != nil {
			return nil, err
		}
		return s.unregisterRemote(ctx, dom, in)
	}
	name, err := s.domains.local("name", in.GetName())
	if err != nil {
		return nil, err
	}
	if _, err := (*Server)(s).answerPath(ctx); err != nil {
		return nil, err
	}
	if err := s.store.Delete(ctx, store.KindEndpoint, name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeError("unregister endpoint", name, err)
	}
	s.log.Info("endpoint unregistered", "name", name)
	return &empty.Empty{}, nil
}

func (s *nseServer) Find(q *regapi.NetworkServiceEndpointQuery, stream regapi.NetworkServiceEndpointRegistry_FindServer) error {
	query := proto.Clone(q.GetNetworkServiceEndpoint()).(*regapi.NetworkServiceEndpoint)
	if q.GetNetworkServiceEndpoint() == nil {
		query = nil
	}
	services := query.GetNetworkServiceNames()
	if len(services) == 0 {
		services = []string{""} // a look-up of every endpoint
	}
	for _, svc := range services {
		if err := (*Server)(s).mayLookUp(stream.Context(), svc); err != nil {
			return err
		}
	}
	if dom, err := s.domains.foreign("network service endpoint", endpointNames(query)...); err != nil || dom != "" {
		if err != nil {
			return err
		}
		return s.findRemote(dom, q, stream)
	}
	if err := s.domains.localEndpoint(query); err != nil {
		return err
	}
	if err := (*Server)(s).answerFindPath(stream.Context()); err != nil {
		return err
	}
	return find(stream.Context(), (*Server)(s), store.KindEndpoint, serviceTag(query), q.GetWatch(), endpointPrefilter(query),
		func(nse *regapi.NetworkServiceEndpoint) bool {
			// The store may keep an expired record up to a second longer
			// (etcd leases are whole seconds): it is gone for Find.
			return !expired(nse, time.Now()) && MatchEndpoint(query, nse)
		},
		func(nse *regapi.NetworkServiceEndpoint, deleted bool) error {
			return stream.Send(&regapi.NetworkServiceEndpointResponse{NetworkServiceEndpoint: nse, Deleted: deleted})
		})
}

// admitRegistration applies the policy to whoever asked for an endpoint
// registration: the endpoint itself when its manager forwarded the call
// with an NSM path, else the caller. It returns the path's ids (nil
// without an identity to sign with).
func (s *Server) admitRegistration(ctx context.Context, nse *regapi.NetworkServiceEndpoint) ([]string, error) {
	var origin string
	var ids []string
	if s.src != nil {
		h, err := s.answerPath(ctx)
		if err != nil {
			return nil, err
		}
		origin, ids = h.Origin.String(), h.IDs()
	} else if id, err := identity.PeerID(ctx); err == nil {
		origin = id.String()
	}
	return ids, s.mayRegister(origin, nse)
}

// answerPath admits the NSM path of a unary registry call and answers it
// with this registry's segment, signed for the caller, in the response
// header, which NSM's registry clients check. Without an identity there
// is nothing to sign with: nil.
func (s *Server) answerPath(ctx context.Context) (*regpath.Hop, error) {
	if s.src == nil {
		return nil, nil
	}
	h, err := regpath.Enter(ctx, s.hopName(), s.src.ID(), time.Hour)
	if err != nil {
		return nil, err
	}
	return h, h.Reply(ctx, s.src, true)
}

// answerFindPath sends a Find's caller the path at once. NSM sends no path
// on Find and lookups are authorised by the caller's certificate, so one
// that does not verify is only logged.
func (s *Server) answerFindPath(ctx context.Context) error {
	if s.src == nil || !regpath.Carried(ctx) {
		return nil // vwire's own lookups (discovery) need no signed path
	}
	h, err := regpath.Enter(ctx, s.hopName(), s.src.ID(), time.Hour)
	if err != nil {
		s.log.Debug("find: path not verified; answering without one", "err", err)
		return nil
	}
	return h.ReplyStream(ctx, s.src)
}

// mayRegister applies the policy's register rules to origin for each of
// the endpoint's services.
func (s *Server) mayRegister(origin string, nse *regapi.NetworkServiceEndpoint) error {
	for _, svc := range nse.GetNetworkServiceNames() {
		if err := s.policy.MayRegister(origin, svc); err != nil {
			s.log.Warn("registration refused by policy", "workload", origin, "endpoint", nse.GetName(), "service", svc, "err", err)
			s.metrics.refusals.Inc()
			return status.Errorf(codes.PermissionDenied, "%v", err)
		}
	}
	return nil
}

// serviceTag is the store tag a Find for q may look in: every endpoint
// that matches provides each service q names, so one bucket holds them
// all. Without a service name it is store.All: the scan.
func serviceTag(q *regapi.NetworkServiceEndpoint) string {
	if names := q.GetNetworkServiceNames(); len(names) > 0 {
		return names[0]
	}
	return store.All
}

func expired(nse *regapi.NetworkServiceEndpoint, now time.Time) bool {
	return nse.GetExpirationTime() != nil && !nse.GetExpirationTime().AsTime().After(now)
}

func storeError(op, name string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "%s %q: store: %v", op, name, err)
}
