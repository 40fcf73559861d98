package registry

import (
	"slices"
	"strings"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"
)

// The Find query is a template: an empty field matches anything. These are
// NSM's semantics, except that names match exactly (not as substrings).

// MatchService reports whether ns fits the query q.
func MatchService(q, ns *regapi.NetworkService) bool {
	if q == nil {
		return true
	}
	return (q.GetName() == "" || q.GetName() == ns.GetName()) &&
		(q.GetPayload() == "" || q.GetPayload() == ns.GetPayload()) &&
		(len(q.GetMatches()) == 0 || matchesEqual(q.GetMatches(), ns.GetMatches()))
}

func matchesEqual(a, b []*regapi.Match) bool {
	return slices.EqualFunc(a, b, func(x, y *regapi.Match) bool { return proto.Equal(x, y) })
}

// MatchEndpoint reports whether nse fits the query q: name exact, url as a
// substring, every queried service name provided, and for every queried
// service the queried labels a subset of the endpoint's labels.
func MatchEndpoint(q, nse *regapi.NetworkServiceEndpoint) bool {
	if q == nil {
		return true
	}
	if q.GetName() != "" && q.GetName() != nse.GetName() {
		return false
	}
	if q.GetUrl() != "" && !strings.Contains(nse.GetUrl(), q.GetUrl()) {
		return false
	}
	for _, name := range q.GetNetworkServiceNames() {
		if !slices.Contains(nse.GetNetworkServiceNames(), name) {
			return false
		}
	}
	for svc, want := range q.GetNetworkServiceLabels() {
		if !IsSubset(want.GetLabels(), nse.GetNetworkServiceLabels()[svc].GetLabels()) {
			return false
		}
	}
	return true
}

// IsSubset reports whether every key of sub is in super with the same value.
// An empty sub is a subset of anything.
func IsSubset(sub, super map[string]string) bool {
	for k, v := range sub {
		if got, ok := super[k]; !ok || got != v {
			return false
		}
	}
	return true
}
