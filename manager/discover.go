package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vwire/vwire/registry"
)

// target is what discovery found for a Request.
type target struct {
	endpoints       []*regapi.NetworkServiceEndpoint
	payload         string
	forwarderLabels map[string]string
	pinned          bool
}

// discover finds the candidate endpoints of a Request: the one it names, or
// those the network service's matches select for its labels. It answers
// from the registry watches (lookups.go) when they agree with the
// registry, and asks the registry before it says that nothing was found.
func (m *Manager) discover(ctx context.Context, conn *networkservice.Connection) (*target, error) {
	t, cached, err := m.discoverFrom(ctx, conn, true)
	if cached && status.Code(err) == codes.NotFound {
		t, _, err = m.discoverFrom(ctx, conn, false)
	}
	return t, err
}

// discoverFrom is discover, from the cache when useCache allows; cached
// says whether the cache answered.
func (m *Manager) discoverFrom(ctx context.Context, conn *networkservice.Connection, useCache bool) (t *target, cached bool, err error) {
	if name := conn.GetNetworkServiceEndpointName(); name != "" {
		nse, err := m.findEndpoint(ctx, name)
		if err != nil {
			return nil, false, err
		}
		payload := conn.GetPayload()
		if payload == "" {
			if ns, _, err := m.findService(ctx, conn.GetNetworkService(), useCache); err == nil {
				payload = ns.GetPayload()
			}
		}
		return &target{endpoints: []*regapi.NetworkServiceEndpoint{nse}, payload: payload, forwarderLabels: defaultForwarderLabels, pinned: true}, false, nil
	}
	ns, nsCached, err := m.findService(ctx, conn.GetNetworkService(), useCache)
	if err != nil {
		return nil, false, err
	}
	nses, nseCached, err := m.serviceEndpoints(ctx, ns.GetName(), useCache)
	if err != nil {
		return nil, false, err
	}
	cached = nsCached || nseCached
	sel, err := selectEndpoints(ns, conn.GetLabels(), nses)
	if err != nil {
		return nil, cached, status.Errorf(codes.InvalidArgument, "network service %q: %v", conn.GetNetworkService(), err)
	}
	if len(sel.cands) == 0 {
		return nil, cached, status.Errorf(codes.NotFound, "network service %q: no endpoint matches labels %s (%d registered)%s",
			conn.GetNetworkService(), formatLabels(conn.GetLabels()), len(nses), sel.whyNone(ns, conn.GetLabels()))
	}
	fl := sel.match.GetMetadata().GetLabels()
	if len(fl) == 0 {
		fl = defaultForwarderLabels
	}
	return &target{endpoints: sel.cands, payload: ns.GetPayload(), forwarderLabels: fl}, cached, nil
}

// Select applies a network service's matches to a client's labels, NSM's
// way: the first match whose source_selector is a subset of the labels
// decides; its routes' destination_selectors (Go templates over the labels)
// pick endpoints whose labels for the service contain them; a match with
// fallthrough and no candidates passes to the next. A service without
// matches, or whose matches all pass, offers every endpoint. The returned
// match is the one that decided (nil when none did).
func Select(ns *regapi.NetworkService, labels map[string]string, nses []*regapi.NetworkServiceEndpoint) ([]*regapi.NetworkServiceEndpoint, *regapi.Match, error) {
	sel, err := selectEndpoints(ns, labels, nses)
	return sel.cands, sel.match, err
}

// selection is what Select decided, with what a NotFound needs to say why.
type selection struct {
	cands []*regapi.NetworkServiceEndpoint
	match *regapi.Match       // the match that decided; nil when none did
	index int                 // match's index in the service's matches
	dests []map[string]string // match's destination selectors, expanded for the client
}

func selectEndpoints(ns *regapi.NetworkService, labels map[string]string, nses []*regapi.NetworkServiceEndpoint) (selection, error) {
	for i, match := range ns.GetMatches() {
		if !registry.IsSubset(match.GetSourceSelector(), labels) {
			continue
		}
		sel := selection{match: match, index: i}
		for j, route := range match.GetRoutes() {
			dst, err := expand(route.GetDestinationSelector(), labels)
			if err != nil {
				return selection{}, fmt.Errorf("matches[%d].routes[%d].destination_selector: %w", i, j, err)
			}
			sel.dests = append(sel.dests, dst)
			for _, nse := range nses {
				if registry.IsSubset(dst, nse.GetNetworkServiceLabels()[ns.GetName()].GetLabels()) && !slices.Contains(sel.cands, nse) {
					sel.cands = append(sel.cands, nse)
				}
			}
		}
		if len(sel.cands) == 0 && match.GetFallthrough() {
			continue
		}
		return sel, nil
	}
	return selection{cands: nses, index: -1}, nil
}

// whyNone explains a selection without candidates, for the NotFound the
// client gets: which match applied to its labels and what it looked for,
// and, since that match has no fallthrough (it would have passed on
// otherwise), the next match that fallthrough would have let the request
// reach, with the fix. It is "" when no match decided.
func (s selection) whyNone(ns *regapi.NetworkService, labels map[string]string) string {
	if s.match == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, ": matches[%d] (source_selector %s) applies and selects no endpoint with destination selectors %s",
		s.index, formatLabels(s.match.GetSourceSelector()), formatSelectors(s.dests))
	matches := ns.GetMatches()
	for k := s.index + 1; k < len(matches); k++ {
		next := matches[k]
		if !registry.IsSubset(next.GetSourceSelector(), labels) {
			continue
		}
		var dests []map[string]string
		for _, r := range next.GetRoutes() {
			d, err := expand(r.GetDestinationSelector(), labels)
			if err != nil {
				d = r.GetDestinationSelector() // shown as written
			}
			dests = append(dests, d)
		}
		fmt.Fprintf(&b, "; it has no fallthrough, so matches[%d] (source_selector %s, destination selectors %s) was not tried: "+
			`set "fallthrough: true" on matches[%d] of the network service to go on to it when matches[%d] finds no endpoint`,
			k, formatLabels(next.GetSourceSelector()), formatSelectors(dests), s.index, s.index)
		break
	}
	return b.String()
}

// formatSelectors spells a match's destination selectors: {k=v} {k=v}, or
// "none" for a match without routes.
func formatSelectors(sels []map[string]string) string {
	if len(sels) == 0 {
		return "none"
	}
	parts := make([]string, len(sels))
	for i, s := range sels {
		parts[i] = formatLabels(s)
	}
	return strings.Join(parts, " ")
}

// expand fills {{ .label }} templates in a selector's values from the
// client's labels. A template naming a label the client does not carry is
// an error: silently matching "<no value>" would pick nothing or the wrong
// endpoint.
func expand(sel map[string]string, labels map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(sel))
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		v := sel[k]
		if !strings.Contains(v, "{{") {
			out[k] = v
			continue
		}
		t, err := template.New(k).Option("missingkey=error").Parse(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, labels); err != nil {
			return nil, fmt.Errorf("%q: template %q: %w (client labels %s)", k, v, err, formatLabels(labels))
		}
		out[k] = buf.String()
	}
	return out, nil
}

// findService looks a network service up: in the cache when useCache
// allows and it agrees with the registry (cached), else in the registry,
// whose answer the cache is checked against. The result is shared: read
// it, never change it.
func (m *Manager) findService(ctx context.Context, name string, useCache bool) (ns *regapi.NetworkService, cached bool, err error) {
	ns, gen, ok := m.lookups.service(name)
	if ok && useCache {
		return ns, true, nil
	}
	ns, err = m.findServiceIn(ctx, name)
	if err == nil || status.Code(err) == codes.NotFound {
		m.lookups.checkService(name, gen, ns)
	}
	return ns, false, err
}

func (m *Manager) findServiceIn(ctx context.Context, name string) (*regapi.NetworkService, error) {
	stream, err := m.regNS.Find(ctx, &regapi.NetworkServiceQuery{NetworkService: &regapi.NetworkService{Name: name}})
	if err != nil {
		return nil, registryError("network service", name, err)
	}
	var found *regapi.NetworkService
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, registryError("network service", name, err)
		}
		found = resp.GetNetworkService()
	}
	if found == nil {
		return nil, status.Errorf(codes.NotFound, "network service %q is not registered", name)
	}
	return found, nil
}

// serviceEndpoints returns the endpoints of a network service that have
// not expired, as findService does (cached or not).
func (m *Manager) serviceEndpoints(ctx context.Context, service string, useCache bool) (nses []*regapi.NetworkServiceEndpoint, cached bool, err error) {
	nses, gen, ok := m.lookups.endpoints(service, time.Now())
	if ok && useCache {
		return nses, true, nil
	}
	nses, err = m.findEndpoints(ctx, &regapi.NetworkServiceEndpoint{NetworkServiceNames: []string{service}})
	if err == nil {
		m.lookups.checkEndpoints(service, gen, nses, time.Now())
	}
	return nses, false, err
}

func (m *Manager) findEndpoints(ctx context.Context, q *regapi.NetworkServiceEndpoint) ([]*regapi.NetworkServiceEndpoint, error) {
	stream, err := m.regNSE.Find(ctx, &regapi.NetworkServiceEndpointQuery{NetworkServiceEndpoint: q})
	if err != nil {
		return nil, registryError("endpoints of", strings.Join(q.GetNetworkServiceNames(), ","), err)
	}
	now := time.Now()
	var out []*regapi.NetworkServiceEndpoint
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, registryError("endpoints of", strings.Join(q.GetNetworkServiceNames(), ","), err)
		}
		nse := resp.GetNetworkServiceEndpoint()
		if expiredAt(nse, now) {
			continue
		}
		out = append(out, nse)
	}
}

func (m *Manager) findEndpoint(ctx context.Context, name string) (*regapi.NetworkServiceEndpoint, error) {
	if ep := m.localEndpoint(name); ep != nil {
		return ep.nse, nil
	}
	nses, err := m.findEndpoints(ctx, &regapi.NetworkServiceEndpoint{Name: name})
	if err != nil {
		return nil, err
	}
	if len(nses) == 0 {
		return nil, status.Errorf(codes.NotFound, "network service endpoint %q is not registered", name)
	}
	return nses[0], nil
}

func registryError(what, name string, err error) error {
	st := status.Convert(err)
	code := st.Code()
	if code == codes.Unknown || code == codes.Internal {
		code = codes.Unavailable
	}
	return status.Errorf(code, "registry: %s %q: %s", what, name, st.Message())
}

// order returns the candidates in round-robin order for service, sorted by
// name first so that every manager walks them the same way; avoid goes last.
func (m *Manager) order(service string, cands []*regapi.NetworkServiceEndpoint, avoid string) []*regapi.NetworkServiceEndpoint {
	sorted := slices.SortedFunc(slices.Values(cands), func(a, b *regapi.NetworkServiceEndpoint) int {
		return strings.Compare(a.GetName(), b.GetName())
	})
	m.mu.Lock()
	start := int(m.rr[service] % uint64(len(sorted)))
	m.rr[service]++
	m.mu.Unlock()
	out := append(slices.Clone(sorted[start:]), sorted[:start]...)
	if i := slices.IndexFunc(out, func(n *regapi.NetworkServiceEndpoint) bool { return n.GetName() == avoid }); i >= 0 && len(out) > 1 {
		out = append(append(out[:i:i], out[i+1:]...), out[i])
	}
	return out
}

func formatLabels(l map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		kv = append(kv, k+"="+l[k])
	}
	return "{" + strings.Join(kv, ",") + "}"
}
