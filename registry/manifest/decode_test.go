package manifest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A small valid NetworkService to build bad inputs from.
const simpleService = `apiVersion: networkservicemesh.io/v1
kind: NetworkService
metadata:
  name: svc
spec:
  payload: IP
`

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // the whole error text, file "in"
	}{
		{
			name:  "wrong apiVersion",
			input: "apiVersion: v1\nkind: NetworkService\nmetadata:\n  name: svc\n",
			want:  `in: document 1 (line 1): apiVersion: must be "networkservicemesh.io/v1", got "v1"`,
		},
		{
			name:  "missing apiVersion",
			input: "kind: NetworkService\nmetadata:\n  name: svc\n",
			want:  `in: document 1 (line 1): apiVersion: required`,
		},
		{
			name:  "wrong kind",
			input: "apiVersion: networkservicemesh.io/v1\nkind: Service\nmetadata:\n  name: svc\n",
			want:  `in: document 1 (line 1): kind: must be NetworkService or NetworkServiceEndpoint, got "Service"`,
		},
		{
			name:  "kind not a string",
			input: "apiVersion: networkservicemesh.io/v1\nkind: [NetworkService]\nmetadata:\n  name: svc\n",
			want:  `in: document 1 (line 1): kind: must be a string, got a list`,
		},
		{
			name:  "unknown top-level field",
			input: simpleService + "status: {}\n",
			want:  `in: document 1 (line 1): status: unknown field (known fields here: apiVersion, kind, metadata, spec)`,
		},
		{
			name:  "unknown metadata field",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: svc\n  uid: x\n",
			want:  `in: document 1 (line 1): metadata.uid: unknown field (known fields here: name, namespace, labels, annotations)`,
		},
		{
			name:  "unknown spec field",
			input: simpleService + "  selector: {}\n",
			want:  `in: document 1 (line 1): spec.selector: unknown field (known fields here: payload, matches)`,
		},
		{
			name:  "unknown match field",
			input: simpleService + "  matches:\n    - source_selectors: {}\n",
			want:  `in: document 1 (line 1): spec.matches[0].source_selectors: unknown field (known fields here: source_selector, routes, fallthrough, metadata)`,
		},
		{
			name:  "unknown route field",
			input: simpleService + "  matches:\n    - routes:\n        - destination_selector: {}\n          weigth: 2\n",
			want:  `in: document 1 (line 1): spec.matches[0].routes[0].weigth: unknown field (known fields here: destination_selector, weight)`,
		},
		{
			name:  "unknown match metadata field",
			input: simpleService + "  matches:\n    - metadata:\n        annotations: {}\n",
			want:  `in: document 1 (line 1): spec.matches[0].metadata.annotations: unknown field (known fields here: labels)`,
		},
		{
			name:  "missing metadata",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\n",
			want:  `in: document 1 (line 1): metadata.name: required`,
		},
		{
			name:  "missing name",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  namespace: default\n",
			want:  `in: document 1 (line 1): metadata.name: required`,
		},
		{
			name:  "empty name",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: ''\n",
			want:  `in: document 1 (line 1): metadata.name: required`,
		},
		{
			name:  "bad name",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: my service\n",
			want:  `in: document 1 (line 1): metadata.name: "my service": the service part may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:  "name not a string",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: 42\n",
			want:  `in: document 1 (line 1): metadata.name: must be a string, got a number`,
		},
		{
			name:  "bad payload",
			input: strings.Replace(simpleService, "payload: IP", "payload: MPLS", 1),
			want:  `in: document 1 (line 1): spec.payload: must be IP or ETHERNET, got "MPLS"`,
		},
		{
			name:  "negative weight",
			input: simpleService + "  matches:\n    - routes:\n        - weight: -1\n",
			want:  `in: document 1 (line 1): spec.matches[0].routes[0].weight: must be an integer from 0 to 4294967295, got -1`,
		},
		{
			name:  "fractional weight",
			input: simpleService + "  matches:\n    - routes:\n        - weight: 1.5\n",
			want:  `in: document 1 (line 1): spec.matches[0].routes[0].weight: must be an integer from 0 to 4294967295, got 1.5`,
		},
		{
			name:  "weight too big",
			input: simpleService + "  matches:\n    - routes:\n        - weight: 4294967296\n",
			want:  `in: document 1 (line 1): spec.matches[0].routes[0].weight: must be an integer from 0 to 4294967295, got 4294967296`,
		},
		{
			name:  "weight not a number",
			input: simpleService + "  matches:\n    - routes:\n        - weight: heavy\n",
			want:  `in: document 1 (line 1): spec.matches[0].routes[0].weight: must be an integer from 0 to 4294967295, got a string`,
		},
		{
			name:  "quoted weight",
			input: simpleService + "  matches:\n    - routes:\n        - weight: \"3\"\n",
			want:  `in: document 1 (line 1): spec.matches[0].routes[0].weight: must be an integer from 0 to 4294967295, got a string`,
		},
		{
			name:  "fallthrough not a boolean",
			input: simpleService + "  matches:\n    - fallthrough: \"true\"\n",
			want:  `in: document 1 (line 1): spec.matches[0].fallthrough: must be true or false, got a string`,
		},
		{
			name:  "list where a map is expected",
			input: simpleService + "  matches:\n    - source_selector: [app, foo]\n",
			want:  `in: document 1 (line 1): spec.matches[0].source_selector: must be a map, got a list`,
		},
		{
			name:  "map where a list is expected",
			input: simpleService + "  matches:\n    source_selector: {}\n",
			want:  `in: document 1 (line 1): spec.matches: must be a list, got a map`,
		},
		{
			name:  "spec is a list",
			input: strings.Replace(simpleService, "  payload: IP\n", "  - payload: IP\n", 1),
			want:  `in: document 1 (line 1): spec: must be a map, got a list`,
		},
		{
			name:  "null match",
			input: simpleService + "  matches:\n    -\n",
			want:  `in: document 1 (line 1): spec.matches[0]: must be a map, got null`,
		},
		{
			name:  "map as selector value",
			input: simpleService + "  matches:\n    - source_selector:\n        app:\n          name: foo\n",
			want:  `in: document 1 (line 1): spec.matches[0].source_selector.app: selector value must be a string, got a map`,
		},
		{
			name:  "null selector value",
			input: simpleService + "  matches:\n    - source_selector:\n        app:\n",
			want:  `in: document 1 (line 1): spec.matches[0].source_selector.app: selector value must be a string, got null (write "" for an empty value)`,
		},
		{
			name:  "list as label value with prefixed key",
			input: simpleService + "  matches:\n    - metadata:\n        labels:\n          example.com/tier: [a]\n",
			want:  `in: document 1 (line 1): spec.matches[0].metadata.labels["example.com/tier"]: label value must be a string, got a list`,
		},
		{
			name:  "bad label key",
			input: simpleService + "  matches:\n    - source_selector:\n        bad key: x\n",
			want:  `in: document 1 (line 1): spec.matches[0].source_selector["bad key"]: label key "bad key": name may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:  "bad label value",
			input: simpleService + "  matches:\n    - source_selector:\n        app: foo/bar\n",
			want:  `in: document 1 (line 1): spec.matches[0].source_selector["app"]: label value "foo/bar" may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:  "bad template",
			input: simpleService + "  matches:\n    - {}\n    - routes:\n        - {}\n        - destination_selector:\n            nodeName: '{{ .x'\n",
			want:  `in: document 1 (line 1): spec.matches[1].routes[1].destination_selector["nodeName"]: template: nodeName:1: unclosed action`,
		},
		{
			name:  "bad metadata label type",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: svc\n  labels: [a]\n",
			want:  `in: document 1 (line 1): metadata.labels: must be a map, got a list`,
		},
		{
			name:  "error in a later document names it",
			input: "# header\n---\n" + simpleService + "---\n# only a comment\n---\n\n" + strings.Replace(simpleService, "IP", "L2", 1),
			want:  `in: document 2 (line 13): spec.payload: must be IP or ETHERNET, got "L2"`,
		},
		{
			name:  "document that is not a map",
			input: simpleService + "---\njust words\n",
			want:  `in: document 2 (line 8): document must be a map, got a string`,
		},
		{
			name:  "null document",
			input: "---\nnull\n",
			want:  `in: document 1 (line 2): document must be a map, got null`,
		},
		{
			name:  "invalid YAML",
			input: simpleService + "---\napiVersion: networkservicemesh.io/v1\nkind: NetworkService\n  metadata: x\n",
			want:  `in: document 2 (line 10): mapping values are not allowed in this context`,
		},
		{
			name:  "unclosed flow sequence",
			input: "apiVersion: [networkservicemesh.io/v1\n",
			want:  `in: document 1 (line 1): did not find expected ',' or ']'`,
		},
		{
			name:  "tab indentation",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n\tname: svc\n",
			want:  `in: document 1 (line 4): found character that cannot start any token`,
		},
		{
			name:  "duplicate YAML key",
			input: simpleService + "kind: NetworkServiceEndpoint\n",
			want:  `in: document 1 (line 7): key "kind" already set in map`,
		},
		{
			name:  "control character",
			input: "apiVersion: \"x\x01\"\n",
			want:  `in: document 1 (line 1): control characters are not allowed`,
		},
		{
			name:  "invalid UTF-8 in YAML",
			input: simpleService + "  matches:\n    - source_selector: {app: \"\xff\"}\n",
			want:  `in: document 1 (line 1): invalid leading UTF-8 octet`,
		},
		{
			name:  "invalid UTF-8 through a binary tag",
			input: simpleService + "  matches:\n    - source_selector: {app: !!binary /w==}\n",
			want:  `in: document 1 (line 1): text "\xff" is not valid UTF-8`,
		},
		{
			name:  "invalid UTF-8 in JSON",
			input: jsonService("a") + "\n" + strings.Replace(jsonService("b"), `"IP"`, "\"I\xffP\"", 1),
			want:  `in: document 2 (line 2): text is not valid UTF-8`,
		},
		{
			name:  "document hidden behind a NEL line break",
			input: simpleService + "\u0085---\u0085apiVersion: v1\n",
			want:  `in: document 1 (line 1): a second document starts inside this one: separate documents with a line holding only ---`,
		},
		{
			name:  "CRLF line numbers",
			input: strings.ReplaceAll("# c\n---\n"+simpleService+"---\n"+strings.Replace(simpleService, "svc", "s v c", 1), "\n", "\r\n"),
			want:  `in: document 2 (line 10): metadata.name: "s v c": the service part may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:  "JSON syntax error",
			input: "{\n  \"apiVersion\": \"networkservicemesh.io/v1\",\n  \"kind\": NetworkService\n}\n",
			want:  `in: document 1 (line 3): invalid character 'N' looking for beginning of value`,
		},
		{
			name:  "truncated JSON",
			input: "[\n{\"apiVersion\": \"networkservicemesh.io/v1\"",
			want:  `in: document 1 (line 2): unexpected end of JSON input`,
		},
		{
			name:  "JSON duplicate key",
			input: `{"apiVersion": "networkservicemesh.io/v1", "apiVersion": "v1"}`,
			want:  `in: document 1 (line 1): key "apiVersion" appears twice in one object`,
		},
		{
			name:  "JSON array element not an object",
			input: "[\n" + jsonService("a") + ",\n  42\n]\n",
			want:  `in: document 2 (line 3): document must be a map, got a number`,
		},
		{
			name:  "JSON schema error in second concatenated object",
			input: jsonService("a") + "\n" + strings.Replace(jsonService("b"), `"IP"`, `"ip"`, 1),
			want:  `in: document 2 (line 2): spec.payload: must be IP or ETHERNET, got "ip"`,
		},
		{
			name:  "JSON nested too deep",
			input: strings.Repeat("[", 100) + strings.Repeat("]", 100),
			want:  `in: document 1 (line 1): nested more than 32 levels deep`,
		},
		{
			name:  "endpoint without url",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkServiceEndpoint\nmetadata:\n  name: nse-1\n",
			want:  `in: document 1 (line 1): spec.url: required`,
		},
		{
			name:  "endpoint url without scheme",
			input: endpointYAML + "  url: 10.0.0.1:5001\n",
			want:  `in: document 1 (line 1): spec.url: "10.0.0.1:5001" is not a URL: first path segment in URL cannot contain colon`,
		},
		{
			name:  "endpoint unknown spec field",
			input: endpointYAML + "  payload: IP\n",
			want:  `in: document 1 (line 1): spec.payload: unknown field (known fields here: network_service_names, network_service_labels, url, expiration_time)`,
		},
		{
			name:  "endpoint labels without the labels level",
			input: endpointYAML + "  network_service_labels:\n    svc:\n      app: foo\n",
			want:  `in: document 1 (line 1): spec.network_service_labels.svc.app: unknown field (known fields here: labels)`,
		},
		{
			name:  "endpoint bad service name",
			input: endpointYAML + "  url: tcp://10.0.0.1:5001\n  network_service_names: [svc, 'bad@']\n",
			want:  `in: document 1 (line 1): spec.network_service_names[1]: "bad@": domain is empty`,
		},
		{
			name:  "endpoint service name not a string",
			input: endpointYAML + "  network_service_names: [svc, {a: b}]\n",
			want:  `in: document 1 (line 1): spec.network_service_names[1]: must be a string, got a map`,
		},
		{
			name:  "endpoint bad label",
			input: endpointYAML + "  url: tcp://10.0.0.1:5001\n  network_service_labels:\n    svc@dom.example:\n      labels:\n        app: '-x'\n",
			want:  `in: document 1 (line 1): spec.network_service_labels["svc@dom.example"].labels["app"]: label value "-x" must begin and end with a letter or digit`,
		},
		{
			name:  "endpoint bad expiration time",
			input: endpointYAML + "  expiration_time: tomorrow\n",
			want:  `in: document 1 (line 1): spec.expiration_time: must be an RFC 3339 time like 2025-01-02T15:04:05Z, got "tomorrow"`,
		},
		{
			name:  "endpoint expiration time out of range",
			input: endpointYAML + "  expiration_time: \"0000-01-01T00:00:00Z\"\n",
			want:  `in: document 1 (line 1): spec.expiration_time: "0000-01-01T00:00:00Z" is out of range`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("in", []byte(tt.input))
			if err == nil {
				t.Fatalf("no error, want %s", tt.want)
			}
			if objs != nil {
				t.Errorf("got %d objects alongside the error", len(objs))
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Errorf("error %v (%T) is not a *manifest.Error", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

const endpointYAML = `apiVersion: networkservicemesh.io/v1
kind: NetworkServiceEndpoint
metadata:
  name: nse-1
spec:
`

func jsonService(name string) string {
	return `{"apiVersion": "networkservicemesh.io/v1", "kind": "NetworkService", "metadata": {"name": "` + name + `"}, "spec": {"payload": "IP"}}`
}

func TestDecode(t *testing.T) {
	svc := func(name string) *registry.NetworkService {
		return &registry.NetworkService{Name: name, Payload: "IP"}
	}
	exp := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	tests := []struct {
		name  string
		input string
		want  []Object
	}{
		{name: "empty input", input: ""},
		{name: "only comments", input: "# nothing\n---\n  # still nothing\n---\n"},
		{
			name:  "spec absent means payload IP",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: svc\n",
			want:  []Object{{Doc: 1, Line: 1, Kind: KindService, Service: svc("svc")}},
		},
		{
			name:  "null spec and payload",
			input: "apiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: a\nspec:\n---\napiVersion: networkservicemesh.io/v1\nkind: NetworkService\nmetadata:\n  name: b\nspec:\n  payload:\n",
			want: []Object{
				{Doc: 1, Line: 1, Kind: KindService, Service: svc("a")},
				{Doc: 2, Line: 7, Kind: KindService, Service: svc("b")},
			},
		},
		{
			name:  "ethernet",
			input: strings.Replace(simpleService, "IP", "ETHERNET", 1),
			want:  []Object{{Doc: 1, Line: 1, Kind: KindService, Service: &registry.NetworkService{Name: "svc", Payload: "ETHERNET"}}},
		},
		{
			name: "comment-only documents are not counted",
			input: "# file header\n---\n# a document of comments\n---\n\n  \n" + simpleService +
				"---\n---\n# another\n---\n" + strings.Replace(simpleService, "svc", "svc2", 1) + "---\n",
			want: []Object{
				{Doc: 1, Line: 7, Kind: KindService, Service: svc("svc")},
				{Doc: 2, Line: 17, Kind: KindService, Service: svc("svc2")},
			},
		},
		{
			name:  "document end marker and content on the marker line",
			input: simpleService + "...\n--- {apiVersion: networkservicemesh.io/v1, kind: NetworkService, metadata: {name: b}}\n",
			want: []Object{
				{Doc: 1, Line: 1, Kind: KindService, Service: svc("svc")},
				{Doc: 2, Line: 8, Kind: KindService, Service: svc("b")},
			},
		},
		{
			name:  "CRLF line endings",
			input: strings.ReplaceAll("---\n"+simpleService+"---\n"+strings.Replace(simpleService, "svc", "b", 1), "\n", "\r\n"),
			want: []Object{
				{Doc: 1, Line: 2, Kind: KindService, Service: svc("svc")},
				{Doc: 2, Line: 9, Kind: KindService, Service: svc("b")},
			},
		},
		{
			name:  "byte order mark",
			input: "\uFEFF" + simpleService,
			want:  []Object{{Doc: 1, Line: 1, Kind: KindService, Service: svc("svc")}},
		},
		{
			name: "scalars in selectors and labels take their string form",
			input: simpleService + `  matches:
    - source_selector: {}
      routes:
        - destination_selector:
            supplier: true
            weight: 3
            ratio: 1.5
            big: 12345678901234567890
            nodeName: "{{  .nodeName }}"
          weight: 7
      fallthrough: true
      metadata:
        labels:
          enabled: false
          off: x
    - source_selector:
      routes:
        - destination_selector:
`,
			want: []Object{{Doc: 1, Line: 1, Kind: KindService, Service: &registry.NetworkService{
				Name:    "svc",
				Payload: "IP",
				Matches: []*registry.Match{
					{
						Routes: []*registry.Destination{{
							DestinationSelector: map[string]string{
								"supplier": "true",
								"weight":   "3",
								"ratio":    "1.5",
								"big":      "12345678901234567890",
								"nodeName": "{{  .nodeName }}",
							},
							Weight: 7,
						}},
						Fallthrough: true,
						// YAML 1.1 reads the key off as false, as Kubernetes does.
						Metadata: &registry.Metadata{Labels: map[string]string{"enabled": "false", "false": "x"}},
					},
					{Routes: []*registry.Destination{{}}},
				},
			}}},
		},
		{
			name: "metadata extras accepted and ignored",
			input: `apiVersion: networkservicemesh.io/v1
kind: NetworkService
metadata:
  name: svc
  namespace: default
  labels: {app: x, version: 2}
  annotations:
    example.com/note: anything at all
`,
			want: []Object{{Doc: 1, Line: 1, Kind: KindService, Service: svc("svc")}},
		},
		{
			name: "endpoint",
			input: `apiVersion: networkservicemesh.io/v1
kind: NetworkServiceEndpoint
metadata:
  name: nse-vl3-1
  labels: {ignored: "yes"}
spec:
  network_service_names:
    - local-vl3@marketing.example.com
    - icmp-responder
  network_service_labels:
    local-vl3@marketing.example.com:
      labels:
        nodeName: node-1
        supplier: true
    icmp-responder: {}
  url: inode://4/1234
  expiration_time: 2025-03-04T07:06:07.123456789+02:00
`,
			want: []Object{{Doc: 1, Line: 1, Kind: KindEndpoint, Endpoint: &registry.NetworkServiceEndpoint{
				Name:                "nse-vl3-1",
				NetworkServiceNames: []string{"local-vl3@marketing.example.com", "icmp-responder"},
				NetworkServiceLabels: map[string]*registry.NetworkServiceLabels{
					"local-vl3@marketing.example.com": {Labels: map[string]string{"nodeName": "node-1", "supplier": "true"}},
					"icmp-responder":                  {},
				},
				Url:            "inode://4/1234",
				ExpirationTime: timestamppb.New(exp),
			}}},
		},
		{
			name:  "JSON object",
			input: "\n  " + jsonService("a") + "\n",
			want:  []Object{{Doc: 1, Line: 2, Kind: KindService, Service: svc("a")}},
		},
		{
			name:  "JSON array",
			input: "[\n  " + jsonService("a") + ",\n\n  " + jsonService("b") + "\n]\n",
			want: []Object{
				{Doc: 1, Line: 2, Kind: KindService, Service: svc("a")},
				{Doc: 2, Line: 4, Kind: KindService, Service: svc("b")},
			},
		},
		{
			name:  "JSON concatenated objects",
			input: jsonService("a") + jsonService("b") + "\n\n" + jsonService("c"),
			want: []Object{
				{Doc: 1, Line: 1, Kind: KindService, Service: svc("a")},
				{Doc: 2, Line: 1, Kind: KindService, Service: svc("b")},
				{Doc: 3, Line: 3, Kind: KindService, Service: svc("c")},
			},
		},
		{
			name:  "empty JSON array",
			input: "[]",
		},
		{
			name: "JSON numbers and booleans in selectors",
			input: `{"apiVersion": "networkservicemesh.io/v1", "kind": "NetworkService", "metadata": {"name": "a"},
 "spec": {"matches": [{"source_selector": {"on": true, "n": 1.50}, "routes": [{"weight": 2}]}]}}`,
			want: []Object{{Doc: 1, Line: 1, Kind: KindService, Service: &registry.NetworkService{
				Name:    "a",
				Payload: "IP",
				Matches: []*registry.Match{{
					SourceSelector: map[string]string{"on": "true", "n": "1.50"},
					Routes:         []*registry.Destination{{Weight: 2}},
				}},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("in", []byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			checkObjects(t, objs, tt.want)
		})
	}
}
