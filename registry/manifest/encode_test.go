package manifest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func sampleObjects() []Object {
	return []Object{
		{Kind: KindService, Service: &registry.NetworkService{
			Name:    "local-vl3@marketing.example.com",
			Payload: "IP",
			Matches: []*registry.Match{
				{
					SourceSelector: map[string]string{"app": "foo", "version": "1.10"},
					Routes: []*registry.Destination{
						{DestinationSelector: map[string]string{"nodeName": "{{  .nodeName }}"}, Weight: 2},
						{},
					},
					Fallthrough: true,
					Metadata:    &registry.Metadata{Labels: map[string]string{"tier": "yes"}},
				},
				{Routes: []*registry.Destination{{DestinationSelector: map[string]string{"supplier": "true"}}}},
				{},
			},
		}},
		{Kind: KindService, Service: &registry.NetworkService{Name: "l2", Payload: "ETHERNET"}},
		{Kind: KindEndpoint, Endpoint: &registry.NetworkServiceEndpoint{
			Name:                "nse-vl3-1",
			NetworkServiceNames: []string{"local-vl3@marketing.example.com", "l2"},
			NetworkServiceLabels: map[string]*registry.NetworkServiceLabels{
				"local-vl3@marketing.example.com": {Labels: map[string]string{"nodeName": "node-1", "n": "3"}},
				"l2":                              {},
			},
			Url:            "unix:///run/vwire/nse-1.sock",
			ExpirationTime: timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)),
		}},
		{Kind: KindEndpoint, Endpoint: &registry.NetworkServiceEndpoint{Name: "bare", Url: "tcp://10.0.0.1:5001"}},
	}
}

func TestEncodeYAML(t *testing.T) {
	objs := sampleObjects()
	got, err := Encode(objs[1:3], "yaml")
	if err != nil {
		t.Fatal(err)
	}
	const want = `apiVersion: networkservicemesh.io/v1
kind: NetworkService
metadata:
  name: l2
spec:
  payload: ETHERNET
---
apiVersion: networkservicemesh.io/v1
kind: NetworkServiceEndpoint
metadata:
  name: nse-vl3-1
spec:
  network_service_names:
  - local-vl3@marketing.example.com
  - l2
  network_service_labels:
    l2: {}
    local-vl3@marketing.example.com:
      labels:
        "n": "3"
        nodeName: node-1
  url: unix:///run/vwire/nse-1.sock
  expiration_time: "2025-03-04T05:06:07.123456789Z"
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeJSON(t *testing.T) {
	tests := []struct {
		name      string
		objs      []Object
		wantArray bool
	}{
		{name: "none", objs: nil, wantArray: true},
		{name: "one is an object", objs: sampleObjects()[:1]},
		{name: "several are an array", objs: sampleObjects(), wantArray: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.objs, "json")
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(got, &v); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, got)
			}
			if _, isArray := v.([]any); isArray != tt.wantArray {
				t.Errorf("array = %v, want %v:\n%s", isArray, tt.wantArray, got)
			}
			if strings.Contains(string(got), `\u003c`) || !strings.Contains(string(got), "\n  ") {
				if len(tt.objs) > 0 {
					t.Errorf("output not indented or HTML-escaped:\n%s", got)
				}
			}
		})
	}
}

func TestEncodeAlwaysShowsPayload(t *testing.T) {
	got, err := Encode([]Object{{Service: &registry.NetworkService{Name: "svc"}}}, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "\nspec:\n  payload: IP\n") {
		t.Errorf("payload missing:\n%s", got)
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		objs   []Object
		format string
		want   string // a prefix of the error text
	}{
		{name: "unknown format", objs: sampleObjects(), format: "toml", want: `manifest: unknown format "toml" (want yaml or json)`},
		{name: "empty object", objs: []Object{{}}, format: "yaml", want: "manifest: encode object 1: neither Service nor Endpoint is set"},
		{
			name:   "both set",
			objs:   []Object{sampleObjects()[0], {Service: &registry.NetworkService{}, Endpoint: &registry.NetworkServiceEndpoint{}}},
			format: "json",
			want:   "manifest: encode object 2: both Service and Endpoint are set",
		},
		{
			name:   "kind mismatch",
			objs:   []Object{{Kind: KindEndpoint, Service: &registry.NetworkService{Name: "a"}}},
			format: "yaml",
			want:   `manifest: encode object 1: kind "NetworkServiceEndpoint" does not match the Service set`,
		},
		{
			name: "invalid timestamp",
			objs: []Object{{Endpoint: &registry.NetworkServiceEndpoint{
				Name: "a", Url: "tcp://a:1", ExpirationTime: &timestamppb.Timestamp{Nanos: -1},
			}}},
			format: "yaml",
			// protobuf-go varies the space after "proto:" on purpose: match up to the field.
			want: "manifest: encode object 1: expiration_time: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Encode(tt.objs, tt.format)
			if err == nil {
				t.Fatalf("no error, output:\n%s", out)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error\n got %s\nwant %s...", err, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	var seedObjs []Object
	for _, doc := range seedDocuments(t) {
		if strings.Contains(doc, asWrittenMarker) {
			continue
		}
		objs, err := Decode("seed", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		seedObjs = append(seedObjs, objs...)
	}
	tests := []struct {
		name string
		objs []Object
	}{
		{name: "seed", objs: seedObjs},
		{name: "sample", objs: sampleObjects()},
		{name: "one", objs: sampleObjects()[2:3]},
		{name: "awkward text", objs: awkwardObjects()},
	}
	for _, tt := range tests {
		for _, format := range []string{"yaml", "json"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				data, err := Encode(tt.objs, format)
				if err != nil {
					t.Fatal(err)
				}
				back, err := Decode("encoded", data)
				if err != nil {
					t.Fatalf("%v\n%s", err, data)
				}
				if len(back) != len(tt.objs) {
					t.Fatalf("got %d objects back, want %d", len(back), len(tt.objs))
				}
				for i := range back {
					want := tt.objs[i]
					if want.Kind == "" {
						want.Kind = back[i].Kind
					}
					if back[i].Doc != i+1 {
						t.Errorf("object %d: Doc = %d", i, back[i].Doc)
					}
					if !sameContent(back[i], want) {
						t.Errorf("object %d:\n got %s\nwant %s", i, describeObject(back[i]), describeObject(want))
					}
				}
			})
		}
	}
}

// awkwardObjects hold template values and URLs that YAML must quote, escape
// or fold: they must come back unchanged.
func awkwardObjects() []Object {
	templates := []string{
		"{{ .a }}\n---\n# not a comment",
		"  {{ .a }} leading and trailing blanks  ",
		"{{ .a }}\u0085\u2028\u2029\ufeff\t\x01",
		"{{ .a }}: 'single' \"double\" \\ back",
		"{{ .a }} " + strings.Repeat("long words that YAML may fold ", 10),
		"{{ .a }}\r\n{{ .b }}\n\n\n",
		"{{- if .a }}yes{{ else }}no{{ end -}}",
	}
	var routes []*registry.Destination
	for _, tmpl := range templates {
		routes = append(routes, &registry.Destination{DestinationSelector: map[string]string{"k": tmpl}})
	}
	return []Object{
		{Kind: KindService, Service: &registry.NetworkService{
			Name:    "awkward",
			Payload: "IP",
			Matches: []*registry.Match{{
				SourceSelector: map[string]string{"yes": "no", "on": "off", "y": "n", "null": "true", "1.10": "0x10", "example.com/key": ""},
				Routes:         routes,
			}},
		}},
		{Kind: KindEndpoint, Endpoint: &registry.NetworkServiceEndpoint{
			Name:                "nse",
			NetworkServiceNames: []string{"awkward", "yes", "null"},
			Url:                 "tcp://[fd00::1]:5001/path?q=a%20b#frag",
		}},
	}
}
