package manager

import (
	"context"
	"slices"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"google.golang.org/grpc/metadata"

	"github.com/vwire/vwire/forwarder"
)

// Interdomain: the registry finds other domains' services and endpoints
// (DNS SRV) and names them `name@domain`. The manager's share is
//   - a Request from another domain names this domain's service and
//     endpoint with @domain: they are this manager's local names;
//   - an endpoint registered in a floating domain is asked for as
//     `name@floating`: it is the local endpoint `name` when that endpoint
//     registered a service there;
//   - a vWire to or from another domain uses the forwarders' public
//     addresses (forwarder.MDNextHopInterdomain, MDPrevHopInterdomain).

// own strips the @domain of a name in one of this manager's domains.
func (m *Manager) own(name string) string {
	base, dom, ok := strings.Cut(name, "@")
	if ok && slices.Contains(m.domains, dom) {
		return base
	}
	return name
}

// foreign tells whether an endpoint name (as the registry gave it) is in
// another registry domain.
func (m *Manager) foreign(name string) bool {
	_, dom, ok := strings.Cut(name, "@")
	return ok && !slices.Contains(m.domains, dom)
}

// localByDomain finds the local endpoint that `name@dom` names: one
// registered as name for a service in dom (a floating domain).
func (m *Manager) localByDomain(name string) *localEndpoint {
	base, dom, ok := strings.Cut(name, "@")
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ep := m.endpoints[base]
	if ep == nil {
		return nil
	}
	if slices.Contains(m.domains, dom) || slices.ContainsFunc(ep.nse.GetNetworkServiceNames(), func(s string) bool {
		return strings.HasSuffix(s, "@"+dom)
	}) {
		return ep
	}
	return nil
}

// localNames rewrites a Request's service and endpoint names into this
// manager's own and returns a func that puts the caller's back in a reply.
func (m *Manager) localNames(conn *networkservice.Connection) func(*networkservice.Connection) {
	svc, nse := conn.GetNetworkService(), conn.GetNetworkServiceEndpointName()
	conn.NetworkService, conn.NetworkServiceEndpointName = m.own(svc), m.own(nse)
	// The caller's names go back, also when unchanged here: a local
	// endpoint asked for as name@floating answers with its own name. A
	// reply naming another endpoint (a reselection) keeps it.
	base, _, _ := strings.Cut(nse, "@")
	return func(reply *networkservice.Connection) {
		if reply.GetNetworkService() == conn.GetNetworkService() {
			reply.NetworkService = svc
		}
		if n := reply.GetNetworkServiceEndpointName(); nse != "" && (n == m.own(nse) || n == base) {
			reply.NetworkServiceEndpointName = nse
		}
	}
}

type fromDomainKey struct{}

// withFromDomain marks ctx for a connection whose previous hop is another
// registry domain's forwarder.
func withFromDomain(ctx context.Context, from bool) context.Context {
	if !from {
		return ctx
	}
	return context.WithValue(ctx, fromDomainKey{}, true)
}

func fromDomain(ctx context.Context) bool {
	v, _ := ctx.Value(fromDomainKey{}).(bool)
	return v
}

// incomingFromDomain tells whether the previous hop said it is another
// domain's forwarder.
func incomingFromDomain(ctx context.Context) bool {
	v := metadata.ValueFromIncomingContext(ctx, forwarder.MDInterdomain)
	return len(v) == 1 && v[0] == "true"
}

// crossingMD is the metadata telling the forwarder which sides of the vWire
// are in another domain.
func crossingMD(ctx context.Context, nextForeign bool) []string {
	var kv []string
	if nextForeign {
		kv = append(kv, forwarder.MDNextHopInterdomain, "true")
	}
	if fromDomain(ctx) {
		kv = append(kv, forwarder.MDPrevHopInterdomain, "true")
	}
	return kv
}
