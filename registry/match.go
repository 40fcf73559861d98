package registry

import (
	"bytes"
	"slices"
	"strings"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"

	"github.com/vwire/vwire/registry/store"
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

// endpointPrefilter returns a test on an endpoint's stored record that
// needs no decoding: the record's key must be the queried name, and every
// other string the query requires (service names, URL part, label keys and
// values) must appear in the encoding, where protobuf keeps strings as
// their bytes. A record that fails cannot match; one that passes is
// decoded and matched. Finding one service among 100k endpoints then
// decodes the few that mention it, not all of them.
func endpointPrefilter(q *regapi.NetworkServiceEndpoint) func(store.Entry) bool {
	if q == nil {
		return nil
	}
	var needles [][]byte
	add := func(s string) {
		if s != "" {
			needles = append(needles, []byte(s))
		}
	}
	for _, n := range q.GetNetworkServiceNames() {
		add(n)
	}
	add(q.GetUrl())
	for svc, l := range q.GetNetworkServiceLabels() {
		if len(l.GetLabels()) == 0 {
			continue // an empty selector matches an endpoint without labels too
		}
		add(svc)
		for k, v := range l.GetLabels() {
			add(k)
			add(v)
		}
	}
	return prefilter(q.GetName(), needles)
}

// servicePrefilter is endpointPrefilter for NetworkServices.
func servicePrefilter(q *regapi.NetworkService) func(store.Entry) bool {
	if q == nil {
		return nil
	}
	return prefilter(q.GetName(), nil)
}

func prefilter(name string, needles [][]byte) func(store.Entry) bool {
	if name == "" && len(needles) == 0 {
		return nil
	}
	return func(e store.Entry) bool {
		if name != "" && e.Name != name {
			return false
		}
		for _, n := range needles {
			if !bytes.Contains(e.Value, n) {
				return false
			}
		}
		return true
	}
}
