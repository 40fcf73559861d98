package validate_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/registry"

	"github.com/vwire/vwire/registry/manifest"
	"github.com/vwire/vwire/registry/validate"
)

// m builds a match: its source_selector from key/value pairs, with or
// without fallthrough.
func m(ft bool, kv ...string) *registry.Match {
	sel := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		sel[kv[i]] = kv[i+1]
	}
	return &registry.Match{SourceSelector: sel, Fallthrough: ft,
		Routes: []*registry.Destination{{DestinationSelector: map[string]string{"app": "x"}}}}
}

func TestUnreachableMatches(t *testing.T) {
	tests := []struct {
		name    string
		matches []*registry.Match
		want    []validate.Unreachable
	}{
		{name: "no matches"},
		{name: "one match", matches: []*registry.Match{m(false)}},
		{name: "empty selector shadows an empty one", matches: []*registry.Match{m(false), m(false)},
			want: []validate.Unreachable{{Match: 1, ShadowedBy: []int{0}}}},
		{name: "fallthrough on the empty selector lets the next be reached", matches: []*registry.Match{m(true), m(false)}},
		{name: "empty selector shadows every later match", matches: []*registry.Match{m(false), m(false, "a", "1"), m(true, "b", "2")},
			want: []validate.Unreachable{{Match: 1, ShadowedBy: []int{0}}, {Match: 2, ShadowedBy: []int{0}}}},
		{name: "narrower then wider: both reachable", matches: []*registry.Match{m(false, "a", "1", "b", "2"), m(false, "a", "1")}},
		{name: "wider then narrower: the narrower is shadowed", matches: []*registry.Match{m(false, "a", "1"), m(false, "a", "1", "b", "2")},
			want: []validate.Unreachable{{Match: 1, ShadowedBy: []int{0}}}},
		{name: "same selector twice", matches: []*registry.Match{m(false, "a", "1"), m(false, "a", "1")},
			want: []validate.Unreachable{{Match: 1, ShadowedBy: []int{0}}}},
		{name: "same key, other value: disjoint", matches: []*registry.Match{m(false, "a", "1"), m(false, "a", "2")}},
		{name: "other keys: a client may carry only the second's", matches: []*registry.Match{m(false, "a", "1"), m(false, "b", "2")}},
		{name: "empty value is a value", matches: []*registry.Match{m(false, "a", ""), m(false, "a", "1")}},
		{name: "empty value shadows the same empty value", matches: []*registry.Match{m(false, "a", ""), m(false, "a", "", "b", "2")},
			want: []validate.Unreachable{{Match: 1, ShadowedBy: []int{0}}}},
		{name: "two shadows, both named", matches: []*registry.Match{m(false, "a", "1"), m(true, "b", "2"), m(false, "b", "2"), m(false, "a", "1", "b", "2")},
			want: []validate.Unreachable{{Match: 3, ShadowedBy: []int{0, 2}}}},
		{name: "a shadow of a shadowed match still counts", matches: []*registry.Match{m(false), m(false, "a", "1"), m(false, "a", "1", "b", "2")},
			want: []validate.Unreachable{{Match: 1, ShadowedBy: []int{0}}, {Match: 2, ShadowedBy: []int{0, 1}}}},
		{name: "fallthrough chain ending in a catch-all", matches: []*registry.Match{m(true, "a", "1"), m(true), m(false)}},
		{name: "selective composition as intended", matches: []*registry.Match{m(false, "app", "foo", "version", "v1.1"), m(false, "provided", "ips"), m(false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := validate.UnreachableMatches(&registry.NetworkService{Name: "s", Matches: tt.matches})
			if !slices.EqualFunc(got, tt.want, func(a, b validate.Unreachable) bool {
				return a.Match == b.Match && slices.Equal(a.ShadowedBy, b.ShadowedBy)
			}) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnreachableMessage(t *testing.T) {
	ns := &registry.NetworkService{Name: "s", Matches: []*registry.Match{m(false, "a", "1"), m(true, "b", "2"), m(false, "b", "2"), m(false, "a", "1", "b", "2")}}
	tests := []struct {
		name   string
		u      validate.Unreachable
		prefix string
		want   string
	}{
		{
			name: "one shadow, manifest paths",
			u:    validate.Unreachable{Match: 2, ShadowedBy: []int{1}}, prefix: "spec.",
			want: `spec.matches[2] (source_selector {b=2}) is unreachable: spec.matches[1] (source_selector {b=2}) has no fallthrough and comes first for every client spec.matches[2] would apply to, so a request that finds no endpoint there gets NotFound; set "fallthrough: true" on spec.matches[1] to pass such requests on to spec.matches[2]`,
		},
		{
			name: "two shadows, object paths",
			u:    validate.Unreachable{Match: 3, ShadowedBy: []int{0, 2}},
			want: `matches[3] (source_selector {a=1,b=2}) is unreachable: matches[0] (source_selector {a=1}) and matches[2] (source_selector {b=2}) have no fallthrough and each come first for every client matches[3] would apply to, so a request that finds no endpoint there gets NotFound; set "fallthrough: true" on matches[0] and matches[2] to pass such requests on to matches[3]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.u.Message(ns, tt.prefix); got != tt.want {
				t.Fatalf("message\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestUnreachableArchitectureExamples: of the architecture document's
// services, only scale from zero as written (no fallthrough) has a match
// nobody reaches; the deployable example, with fallthrough, has none.
func TestUnreachableArchitectureExamples(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // per service document: "" or the unreachable matches as "i<-j,k"
	}{
		{name: "architecture as written", file: "../../deployments/examples/architecture/networkservices.yaml", want: []string{"", "", "", "", "1<-0"}},
		{name: "scale-from-zero example", file: "../../deployments/examples/scale-from-zero/scale-from-zero.yaml", want: []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := manifest.Decode(tt.file, data)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				var s []string
				for _, u := range validate.UnreachableMatches(o.Service) {
					var by []string
					for _, i := range u.ShadowedBy {
						by = append(by, strconv.Itoa(i))
					}
					s = append(s, strconv.Itoa(u.Match)+"<-"+strings.Join(by, ","))
				}
				got = append(got, strings.Join(s, " "))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
