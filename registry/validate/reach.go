package validate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/registry"
)

// Unreachable is a match of a NetworkService that no client can reach.
// NSM takes the first match whose source_selector is a subset of the
// client's labels, and a match without fallthrough decides even when it
// finds no endpoint (NotFound). Such a valid service is still accepted
// (NSM has no implicit fallthrough: selective composition relies on a match
// not passing its clients on, past the IPS), but callers warn about it.
type Unreachable struct {
	// Match is the index of the match no client reaches.
	Match int
	// ShadowedBy are the earlier matches, in order, without fallthrough whose
	// source_selector is a subset of Match's: each takes every client Match
	// would apply to. All of them need `fallthrough: true` for Match to be
	// reached.
	ShadowedBy []int
}

// UnreachableMatches returns the matches of ns that no client can reach, in
// order. Match j is unreachable exactly when some earlier match i has no
// fallthrough and source_selector(i) ⊆ source_selector(j) as sets of
// key/value pairs (an empty selector is a subset of every selector):
//
//   - if so, any client labels L that match j contain source_selector(j),
//     hence source_selector(i), so the search stops at i or before it;
//   - if not, the client labelled exactly source_selector(j) matches no
//     earlier match without fallthrough, and the earlier matches with
//     fallthrough pass it on whenever they find no endpoint, so j is
//     reached.
//
// The rule looks at selectors and fallthrough only: which endpoints are
// registered decides nothing here.
func UnreachableMatches(ns *registry.NetworkService) []Unreachable {
	var out []Unreachable
	matches := ns.GetMatches()
	for j, mj := range matches {
		var by []int
		for i, mi := range matches[:j] {
			if !mi.GetFallthrough() && subset(mi.GetSourceSelector(), mj.GetSourceSelector()) {
				by = append(by, i)
			}
		}
		if len(by) > 0 {
			out = append(out, Unreachable{Match: j, ShadowedBy: by})
		}
	}
	return out
}

// Fix says what makes u's match reachable, with match paths after prefix
// ("spec." in a manifest, "" relative to the service):
// `set "fallthrough: true" on matches[0]`.
func (u Unreachable) Fix(prefix string) string {
	paths := make([]string, len(u.ShadowedBy))
	for k, i := range u.ShadowedBy {
		paths[k] = matchPath(prefix, i)
	}
	return `set "fallthrough: true" on ` + strings.Join(paths, " and ")
}

// Message explains u for ns in one line: which match is unreachable, which
// earlier ones take its clients, and the fix. prefix is put before every
// match path, as for Fix.
func (u Unreachable) Message(ns *registry.NetworkService, prefix string) string {
	matches := ns.GetMatches()
	sel := func(i int) string {
		if i < 0 || i >= len(matches) {
			return "{}"
		}
		return FormatSelector(matches[i].GetSourceSelector())
	}
	var by []string
	for _, i := range u.ShadowedBy {
		by = append(by, fmt.Sprintf("%s (source_selector %s)", matchPath(prefix, i), sel(i)))
	}
	has, comes := "has", "comes"
	if len(by) > 1 {
		has, comes = "have", "each come"
	}
	m := matchPath(prefix, u.Match)
	return fmt.Sprintf("%s (source_selector %s) is unreachable: %s %s no fallthrough and %s first for every client %s would apply to, "+
		"so a request that finds no endpoint there gets NotFound; %s to pass such requests on to %s",
		m, sel(u.Match), strings.Join(by, " and "), has, comes, m, u.Fix(prefix), m)
}

func matchPath(prefix string, i int) string {
	return fmt.Sprintf("%smatches[%d]", prefix, i)
}

// FormatSelector spells a selector or label map as {k=v,...}, keys sorted.
func FormatSelector(m map[string]string) string {
	kv := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return "{" + strings.Join(kv, ",") + "}"
}

// subset reports whether every key of sub is in super with the same value.
func subset(sub, super map[string]string) bool {
	for k, v := range sub {
		if got, ok := super[k]; !ok || got != v {
			return false
		}
	}
	return true
}
