package manager

import (
	"os"
	"slices"
	"strings"
	"testing"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"

	"github.com/vwire/vwire/registry/manifest"
)

// seedServices decodes the architecture's examples as vwire applies them.
func seedServices(t *testing.T) map[string][]*regapi.NetworkService {
	t.Helper()
	data, err := os.ReadFile("../deployments/examples/architecture/networkservices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Decode("networkservices.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*regapi.NetworkService{}
	for _, o := range objs {
		name, _, _ := strings.Cut(o.Service.GetName(), "@")
		o.Service.Name = name
		out[name] = append(out[name], o.Service)
	}
	return out
}

func nse(name, service string, labels ...string) *regapi.NetworkServiceEndpoint {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return &regapi.NetworkServiceEndpoint{Name: name, NetworkServiceNames: []string{service},
		NetworkServiceLabels: map[string]*regapi.NetworkServiceLabels{service: {Labels: l}}}
}

func names(nses []*regapi.NetworkServiceEndpoint) string {
	var s []string
	for _, n := range nses {
		s = append(s, n.Name)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestSelectSeedExamples(t *testing.T) {
	seed := seedServices(t)
	composition := seed["service-mesh"][0]
	selective := seed["secure-vl3"][0]
	topology := seed["local-vl3"][0]
	scale := seed["local-vl3"][1]
	// The seed's scale-from-zero example has no fallthrough on its first
	// match; NSM's semantics then stop at an empty first match. The example
	// under deployments/ marks it, as the document intends.
	scaleFT := scaleWithFallthrough(scale)

	meshNSEs := []*regapi.NetworkServiceEndpoint{
		nse("envoy", "service-mesh", "service", "envoy-proxy"),
		nse("vl3", "service-mesh", "service", "vl3"),
	}
	secureNSEs := []*regapi.NetworkServiceEndpoint{
		nse("ips", "secure-vl3", "provides", "ips"),
		nse("vl3", "secure-vl3", "provides", "vl3"),
	}
	localNSEs := []*regapi.NetworkServiceEndpoint{
		nse("vl3-node1", "local-vl3", "nodeName", "node1"),
		nse("vl3-node2", "local-vl3", "nodeName", "node2"),
		nse("supplier", "local-vl3", "supplier", "true"),
	}
	tests := []struct {
		name   string
		ns     *regapi.NetworkService
		labels map[string]string
		nses   []*regapi.NetworkServiceEndpoint
		want   string
	}{
		{name: "composition: no labels go to envoy", ns: composition, labels: nil, nses: meshNSEs, want: "envoy"},
		{name: "composition: envoy's onward request goes to vl3", ns: composition, labels: lbl("service", "envoy-proxy"), nses: meshNSEs, want: "vl3"},
		{name: "composition: unrelated labels go to envoy", ns: composition, labels: lbl("app", "x"), nses: meshNSEs, want: "envoy"},
		{name: "selective: foo v1.1 goes through the IPS", ns: selective, labels: lbl("app", "foo", "version", "v1.1"), nses: secureNSEs, want: "ips"},
		{name: "selective: the IPS's onward request goes to vl3", ns: selective, labels: lbl("provided", "ips"), nses: secureNSEs, want: "vl3"},
		{name: "selective: foo v1.2 goes straight to vl3", ns: selective, labels: lbl("app", "foo", "version", "v1.2"), nses: secureNSEs, want: "vl3"},
		{name: "selective: anyone else goes to vl3", ns: selective, labels: lbl("app", "bar"), nses: secureNSEs, want: "vl3"},
		{name: "topology: node1's client gets node1's endpoint", ns: topology, labels: lbl("nodeName", "node1"), nses: localNSEs, want: "vl3-node1"},
		{name: "topology: node2's client gets node2's endpoint", ns: topology, labels: lbl("nodeName", "node2"), nses: localNSEs, want: "vl3-node2"},
		{name: "topology: node3 has none", ns: topology, labels: lbl("nodeName", "node3"), nses: localNSEs, want: ""},
		{name: "scale from zero: local endpoint first", ns: scaleFT, labels: lbl("nodeName", "node2"), nses: localNSEs, want: "vl3-node2"},
		{name: "scale from zero: supplier when none is local", ns: scaleFT, labels: lbl("nodeName", "node3"), nses: localNSEs, want: "supplier"},
		{name: "scale from zero as written: no fallthrough, no supplier", ns: scale, labels: lbl("nodeName", "node3"), nses: localNSEs, want: ""},
		{name: "no matches: every endpoint", ns: seed["simple-network-service"][0], labels: nil, nses: localNSEs, want: "supplier,vl3-node1,vl3-node2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := Select(tt.ns, tt.labels, tt.nses)
			if err != nil {
				t.Fatal(err)
			}
			if names(got) != tt.want {
				t.Fatalf("got %q, want %q", names(got), tt.want)
			}
		})
	}
}

func scaleWithFallthrough(ns *regapi.NetworkService) *regapi.NetworkService {
	c := &regapi.NetworkService{Name: ns.Name, Payload: ns.Payload}
	for i, m := range ns.Matches {
		mm := &regapi.Match{SourceSelector: m.SourceSelector, Routes: m.Routes, Metadata: m.Metadata, Fallthrough: m.Fallthrough || i == 0}
		c.Matches = append(c.Matches, mm)
	}
	return c
}

func TestSelectTemplateErrors(t *testing.T) {
	ns := &regapi.NetworkService{Name: "s", Matches: []*regapi.Match{{Routes: []*regapi.Destination{{DestinationSelector: lbl("zone", "{{ .zone }}")}}}}}
	_, _, err := Select(ns, lbl("nodeName", "n1"), nil)
	if err == nil || !strings.Contains(err.Error(), "zone") || !strings.Contains(err.Error(), "matches[0].routes[0]") {
		t.Fatalf("missing label: err = %v", err)
	}
	ns.Matches[0].Routes[0].DestinationSelector = lbl("zone", "{{ .zone ")
	if _, _, err := Select(ns, lbl("zone", "a"), nil); err == nil {
		t.Fatal("unparsable template accepted")
	}
}

func TestSelectForwarderLabels(t *testing.T) {
	ns := &regapi.NetworkService{Name: "s", Matches: []*regapi.Match{{
		Metadata: &regapi.Metadata{Labels: lbl("vpp", "true")},
		Routes:   []*regapi.Destination{{DestinationSelector: lbl("a", "b")}},
	}}}
	got, match, err := Select(ns, nil, []*regapi.NetworkServiceEndpoint{nse("e", "s", "a", "b")})
	if err != nil || names(got) != "e" || match.GetMetadata().GetLabels()["vpp"] != "true" {
		t.Fatalf("got %v %v %v", names(got), match, err)
	}
}

// FuzzSelect: selector templates and labels from anywhere never panic, and
// what Select returns is always among the endpoints it was given.
func FuzzSelect(f *testing.F) {
	f.Add("{{  .nodeName }}", "nodeName", "node1", "node1")
	f.Add("{{ .zone", "zone", "a", "a")
	f.Add("{{ index . \"x\" }}", "x", "1", "1")
	f.Add("{{ range . }}{{ . }}{{ end }}", "k", "v", "v")
	f.Fuzz(func(t *testing.T, tmpl, key, value, nseValue string) {
		ns := &regapi.NetworkService{Name: "s", Matches: []*regapi.Match{
			{SourceSelector: map[string]string{key: value}, Routes: []*regapi.Destination{{DestinationSelector: map[string]string{"k": tmpl}}}, Fallthrough: true},
			{Routes: []*regapi.Destination{{DestinationSelector: map[string]string{key: tmpl}}}},
		}}
		nses := []*regapi.NetworkServiceEndpoint{nse("a", "s", "k", nseValue), nse("b", "s", key, nseValue)}
		got, _, err := Select(ns, map[string]string{key: value}, nses)
		if err != nil {
			return
		}
		for _, g := range got {
			if g != nses[0] && g != nses[1] {
				t.Fatalf("Select returned an endpoint it was not given: %v", g)
			}
		}
	})
}

// TestWhyNone: the explanation a NotFound carries names the match that
// applied, its source selector and its destination selectors as expanded
// for the client, and the match fallthrough would have reached, with the
// fix.
func TestWhyNone(t *testing.T) {
	seed := seedServices(t)
	scale := seed["local-vl3"][1] // as written: no fallthrough on matches[0]
	twoWays := &regapi.NetworkService{Name: "s", Matches: []*regapi.Match{
		{SourceSelector: lbl("app", "foo"), Routes: []*regapi.Destination{
			{DestinationSelector: lbl("zone", "{{ .zone }}")},
			{DestinationSelector: lbl("backup", "true")},
		}},
		{SourceSelector: lbl("app", "bar"), Routes: []*regapi.Destination{{DestinationSelector: lbl("any", "1")}}},
		{Routes: []*regapi.Destination{{DestinationSelector: lbl("zone", "{{ .zone }}"), Weight: 1}}},
	}}
	noRoutes := &regapi.NetworkService{Name: "s", Matches: []*regapi.Match{{SourceSelector: lbl("app", "foo")}}}
	tests := []struct {
		name   string
		ns     *regapi.NetworkService
		labels map[string]string
		nses   []*regapi.NetworkServiceEndpoint
		want   string
	}{
		{
			name: "scale from zero as written: the supplier match is never tried",
			ns:   scale, labels: lbl("nodeName", "node3"),
			nses: []*regapi.NetworkServiceEndpoint{nse("vl3-node1", "local-vl3", "nodeName", "node1"), nse("supplier", "local-vl3", "supplier", "true")},
			want: `: matches[0] (source_selector {}) applies and selects no endpoint with destination selectors {nodeName=node3}; ` +
				`it has no fallthrough, so matches[1] (source_selector {}, destination selectors {supplier=true}) was not tried: ` +
				`set "fallthrough: true" on matches[0] of the network service to go on to it when matches[0] finds no endpoint`,
		},
		{
			name: "every route expanded; the next match that applies is named, not the next one",
			ns:   twoWays, labels: lbl("app", "foo", "zone", "z1"),
			want: `: matches[0] (source_selector {app=foo}) applies and selects no endpoint with destination selectors {zone=z1} {backup=true}; ` +
				`it has no fallthrough, so matches[2] (source_selector {}, destination selectors {zone=z1}) was not tried: ` +
				`set "fallthrough: true" on matches[0] of the network service to go on to it when matches[0] finds no endpoint`,
		},
		{
			name: "last match: nothing to fall through to",
			ns:   twoWays, labels: lbl("zone", "z9"),
			want: `: matches[2] (source_selector {}) applies and selects no endpoint with destination selectors {zone=z9}`,
		},
		{
			name: "a match without routes",
			ns:   noRoutes, labels: lbl("app", "foo"),
			want: `: matches[0] (source_selector {app=foo}) applies and selects no endpoint with destination selectors none`,
		},
		{
			name: "no match applies and nothing is registered",
			ns:   noRoutes, labels: lbl("app", "bar"),
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := selectEndpoints(tt.ns, tt.labels, tt.nses)
			if err != nil {
				t.Fatal(err)
			}
			if len(sel.cands) != 0 {
				t.Fatalf("candidates %s, want none", names(sel.cands))
			}
			if got := sel.whyNone(tt.ns, tt.labels); got != tt.want {
				t.Fatalf("whyNone\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}
