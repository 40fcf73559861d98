package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/internal/grpcutil"
	"github.com/vwire/vwire/internal/identity"
	"github.com/vwire/vwire/internal/regpath"
)

// Locator finds the registries of a registry domain (dnssrv.Resolver).
type Locator interface {
	// Lookup returns host:port addresses, best first.
	Lookup(ctx context.Context, domain string) ([]string, error)
	// Forget drops a cached answer whose registries stopped answering.
	Forget(domain string)
}

// remoteCallTimeout bounds a unary call to another domain's registry when
// the caller set no deadline.
const remoteCallTimeout = 15 * time.Second

// foreign returns the domain that names are in when it is not one this
// registry serves ("" when every name is local). Names in two different
// foreign domains, or in this registry's and another's, are refused: one
// call goes to one registry.
func (d domains) foreign(field string, names ...string) (string, error) {
	var out string
	mixed := false
	local := false
	for _, n := range names {
		_, dom, ok := strings.Cut(n, "@")
		if !ok || slices.Contains(d, dom) {
			local = true
			continue
		}
		if out != "" && out != dom {
			mixed = true
		}
		out = dom
	}
	if out != "" && (mixed || local) {
		return "", status.Errorf(codes.InvalidArgument,
			"%s %s: names in several registry domains; register or look up each domain's names separately", field, strings.Join(names, ", "))
	}
	return out, nil
}

func endpointNames(nse *regapi.NetworkServiceEndpoint) []string {
	var names []string
	if strings.Contains(nse.GetName(), "@") {
		names = append(names, nse.GetName())
	}
	return append(names, nse.GetNetworkServiceNames()...)
}

// qualify appends @domain to a name that has no domain: what another
// domain's registry returns is named as this side's callers asked.
func qualify(name, domain string) string {
	if name == "" || strings.Contains(name, "@") {
		return name
	}
	return name + "@" + domain
}

func qualifyService(ns *regapi.NetworkService, domain string) *regapi.NetworkService {
	ns = proto.Clone(ns).(*regapi.NetworkService)
	ns.Name = qualify(ns.GetName(), domain)
	return ns
}

// qualifyEndpoint names an endpoint found in another domain: its name and
// its services with @domain, so a manager tells it from a local one.
func qualifyEndpoint(nse *regapi.NetworkServiceEndpoint, domain string, name bool) *regapi.NetworkServiceEndpoint {
	nse = proto.Clone(nse).(*regapi.NetworkServiceEndpoint)
	if name {
		nse.Name = qualify(nse.GetName(), domain)
	}
	for i, s := range nse.GetNetworkServiceNames() {
		nse.NetworkServiceNames[i] = qualify(s, domain)
	}
	if len(nse.GetNetworkServiceLabels()) > 0 {
		labels := make(map[string]*regapi.NetworkServiceLabels, len(nse.NetworkServiceLabels))
		for k, v := range nse.NetworkServiceLabels {
			labels[qualify(k, domain)] = v
		}
		nse.NetworkServiceLabels = labels
	}
	return nse
}

// remote runs call against the registry of domain: each address its SRV
// records give, best first, until one answers. A domain whose registries
// all fail is forgotten, so that the next call looks it up again. Errors
// name the domain.
func (s *Server) remote(ctx context.Context, domain string, call func(ctx context.Context, cc grpc.ClientConnInterface, url string) error) error {
	if s.locator == nil || s.pool == nil {
		return status.Errorf(codes.Unimplemented,
			"domain %q is not served by this registry (authoritative for %s) and interdomain look-ups are off: no DNS resolver configured",
			domain, s.domains.describe())
	}
	addrs, err := s.locator.Lookup(ctx, domain)
	if err != nil {
		s.metrics.interdomain.WithLabelValues("lookup_failed").Inc()
		return status.Errorf(codes.Unavailable, "domain %q: %v", domain, err)
	}
	var tried []string
	for _, a := range addrs {
		url := "tcp://" + a
		cc, err := s.pool.Get(url)
		if err == nil {
			err = call(ctx, cc, url)
		}
		if err == nil {
			s.metrics.interdomain.WithLabelValues("ok").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			s.metrics.interdomain.WithLabelValues("refused").Inc()
			return status.Errorf(st.Code(), "domain %q: registry at %s: %s", domain, a, st.Message())
		}
		tried = append(tried, fmt.Sprintf("%s: %s", a, st.Message()))
		s.pool.Reset(url)
	}
	s.locator.Forget(domain)
	s.metrics.interdomain.WithLabelValues("unavailable").Inc()
	return status.Errorf(codes.Unavailable, "domain %q: no registry answered (tried %s)", domain, strings.Join(tried, "; "))
}

// hopName is this registry's name in NSM paths: registries of different
// domains on one path (a call passed on to another domain) must differ.
func (s *Server) hopName() string {
	if len(s.domains) == 0 {
		return "registry"
	}
	return "registry@" + s.domains[0]
}

func (d domains) describe() string {
	if len(d) == 0 {
		return "no domain"
	}
	return strings.Join(d, ", ")
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, remoteCallTimeout)
}

// forwardPath signs this registry's segment of an NSM path (h, entered by
// the caller) for the registry at url and returns the context to call it with.
func (s *Server) forwardPath(ctx context.Context, h *regpath.Hop, url string) (context.Context, error) {
	if h == nil {
		return ctx, nil
	}
	aud, err := s.pool.PeerID(ctx, url)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return h.Forward(ctx, s.src, aud)
}

func (s *nsServer) registerRemote(ctx context.Context, domain string, ns *regapi.NetworkService) (*regapi.NetworkService, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var reply *regapi.NetworkService
	err := (*Server)(s).remote(ctx, domain, func(ctx context.Context, cc grpc.ClientConnInterface, _ string) (err error) {
		reply, err = regapi.NewNetworkServiceRegistryClient(cc).Register(ctx, ns)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("network service registered in another domain", "name", ns.GetName(), "domain", domain)
	return qualifyService(reply, domain), nil
}

func (s *nsServer) unregisterRemote(ctx context.Context, domain string, ns *regapi.NetworkService) (*empty.Empty, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	err := (*Server)(s).remote(ctx, domain, func(ctx context.Context, cc grpc.ClientConnInterface, _ string) error {
		_, err := regapi.NewNetworkServiceRegistryClient(cc).Unregister(ctx, ns)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &empty.Empty{}, nil
}

func (s *nsServer) findRemote(domain string, q *regapi.NetworkServiceQuery, stream regapi.NetworkServiceRegistry_FindServer) error {
	return (*Server)(s).remote(stream.Context(), domain, func(ctx context.Context, cc grpc.ClientConnInterface, _ string) error {
		from, err := regapi.NewNetworkServiceRegistryClient(cc).Find(ctx, q)
		if err != nil {
			return err
		}
		return relayRemote(from, func(r *regapi.NetworkServiceResponse) error {
			return stream.Send(&regapi.NetworkServiceResponse{NetworkService: qualifyService(r.GetNetworkService(), domain), Deleted: r.GetDeleted()})
		})
	})
}

// registerRemote registers an endpoint in another domain's registry (a
// floating domain, typically): this side's policy first, then that
// registry's, which sees the endpoint as the origin of the NSM path.
func (s *nseServer) registerRemote(ctx context.Context, domain string, nse *regapi.NetworkServiceEndpoint) (*regapi.NetworkServiceEndpoint, error) {
	srv := (*Server)(s)
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var hop *regpath.Hop
	origin := ""
	if srv.src != nil {
		h, err := regpath.Enter(ctx, srv.hopName(), srv.src.ID(), time.Hour)
		if err != nil {
			return nil, err
		}
		hop, origin = h, h.Origin.String()
	} else if id, err := identity.PeerID(ctx); err == nil {
		origin = id.String()
	}
	if err := srv.mayRegister(origin, nse); err != nil {
		return nil, err
	}
	var reply *regapi.NetworkServiceEndpoint
	err := srv.remote(ctx, domain, func(ctx context.Context, cc grpc.ClientConnInterface, url string) error {
		octx, err := srv.forwardPath(ctx, hop, url)
		if err != nil {
			return err
		}
		reply, err = regapi.NewNetworkServiceEndpointRegistryClient(cc).Register(octx, nse)
		return err
	})
	if err != nil {
		return nil, err
	}
	if hop != nil {
		if err := hop.Reply(ctx, srv.src, true); err != nil {
			return nil, err
		}
	}
	s.log.Debug("endpoint registered in another domain", "name", nse.GetName(), "domain", domain, "url", nse.GetUrl())
	// The caller keeps its endpoint under the name it gave.
	return qualifyEndpoint(reply, domain, false), nil
}

func (s *nseServer) unregisterRemote(ctx context.Context, domain string, nse *regapi.NetworkServiceEndpoint) (*empty.Empty, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	err := (*Server)(s).remote(ctx, domain, func(ctx context.Context, cc grpc.ClientConnInterface, _ string) error {
		_, err := regapi.NewNetworkServiceEndpointRegistryClient(cc).Unregister(ctx, nse)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &empty.Empty{}, nil
}

func (s *nseServer) findRemote(domain string, q *regapi.NetworkServiceEndpointQuery, stream regapi.NetworkServiceEndpointRegistry_FindServer) error {
	return (*Server)(s).remote(stream.Context(), domain, func(ctx context.Context, cc grpc.ClientConnInterface, _ string) error {
		from, err := regapi.NewNetworkServiceEndpointRegistryClient(cc).Find(ctx, q)
		if err != nil {
			return err
		}
		return relayRemote(from, func(r *regapi.NetworkServiceEndpointResponse) error {
			return stream.Send(&regapi.NetworkServiceEndpointResponse{
				NetworkServiceEndpoint: qualifyEndpoint(r.GetNetworkServiceEndpoint(), domain, true), Deleted: r.GetDeleted()})
		})
	})
}

// relayRemote copies another registry's Find stream to send until it ends.
// An error after the first message is not Unavailable, so the caller does
// not try another registry of the domain and send the answers twice.
func relayRemote[T any](from interface{ Recv() (T, error) }, send func(T) error) error {
	sent := false
	for {
		r, err := from.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if sent && status.Code(err) == codes.Unavailable {
				return status.Errorf(codes.Aborted, "stream broke: %s", status.Convert(err).Message())
			}
			return err
		}
		if err := send(r); err != nil {
			return err
		}
		sent = true
	}
}

// mayLookUp applies the policy's lookup rules to the caller of a Find.
func (s *Server) mayLookUp(ctx context.Context, service string) error {
	if s.policy == nil {
		return nil
	}
	id, err := identity.PeerID(ctx)
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "%v", err)
	}
	if err := s.policy.MayLookUp(id.String(), service); err != nil {
		s.log.Warn("look-up refused by policy", "caller", id.String(), "service", service, "err", err)
		s.metrics.refusals.Inc()
		return status.Errorf(codes.PermissionDenied, "%v", err)
	}
	return nil
}

// forwardingPool is how the registry dials other domains' registries.
func forwardingPool(src identity.Source) *grpcutil.Pool {
	if src == nil {
		return nil
	}
	return grpcutil.NewPool(src, identity.AuthorizeTrustDomain(src))
}
