package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/networkservicemesh/api/pkg/api/registry"
)

func TestName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means valid
	}{
		{name: "plain", in: "simple-network-service"},
		{name: "all allowed characters", in: "A.b_c-9"},
		{name: "with domain", in: "service-mesh@finance.example.com"},
		{name: "upper case domain", in: "svc@Finance.Example.COM"},
		{name: "single label domain", in: "svc@cluster"},
		{name: "max length", in: strings.Repeat("a", MaxNameLength)},
		{name: "empty", in: "", wantErr: "required"},
		{name: "too long", in: strings.Repeat("a", MaxNameLength+1), wantErr: "at most 253"},
		{name: "space", in: "my service", wantErr: "service part may only contain"},
		{name: "slash", in: "a/b", wantErr: "service part may only contain"},
		{name: "nothing before at", in: "@example.com", wantErr: "nothing before the @"},
		{name: "empty domain", in: "svc@", wantErr: "domain is empty"},
		{name: "two ats", in: "svc@a@b", wantErr: "may only contain letters, digits, '-' and '.'"},
		{name: "empty domain label", in: "svc@a..b", wantErr: "empty label"},
		{name: "trailing dot", in: "svc@a.b.", wantErr: "empty label"},
		{name: "hyphen at label edge", in: "svc@-a.b", wantErr: "beginning or ending with '-'"},
		{name: "domain underscore", in: "svc@a_b.c", wantErr: "may only contain"},
		{name: "domain label too long", in: "svc@" + strings.Repeat("a", 64) + ".com", wantErr: "longer than 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, Name(tt.in), tt.wantErr)
		})
	}
}

func TestLabelKey(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "simple", in: "app"},
		{name: "camel case", in: "nodeName"},
		{name: "inner punctuation", in: "a.b_c-d"},
		{name: "prefix", in: "kubernetes.io/hostname"},
		{name: "max name", in: strings.Repeat("k", MaxLabelLength)},
		{name: "one character", in: "x"},
		{name: "empty", in: "", wantErr: "name is empty"},
		{name: "only prefix", in: "example.com/", wantErr: "name is empty"},
		{name: "empty prefix", in: "/app", wantErr: "prefix before '/' is empty"},
		{name: "upper case prefix", in: "Example.com/app", wantErr: "lower case"},
		{name: "bad prefix", in: "exa_mple.com/app", wantErr: "prefix"},
		{name: "prefix too long", in: strings.Repeat("a.", 127) + "ab/app", wantErr: "longer than 253"},
		{name: "two slashes", in: "a/b/c", wantErr: "may only contain"},
		{name: "name too long", in: strings.Repeat("k", MaxLabelLength+1), wantErr: "at most 63"},
		{name: "leading dash", in: "-app", wantErr: "begin and end"},
		{name: "trailing dot", in: "app.", wantErr: "begin and end"},
		{name: "space", in: "my app", wantErr: "may only contain"},
		{name: "template", in: "{{ .x }}", wantErr: "may only contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, LabelKey(tt.in), tt.wantErr)
		})
	}
}

func TestLabelValue(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "simple", in: "envoy-proxy"},
		{name: "version", in: "v1.1"},
		{name: "boolean text", in: "true"},
		{name: "max", in: strings.Repeat("v", MaxLabelLength)},
		{name: "too long", in: strings.Repeat("v", MaxLabelLength+1), wantErr: "at most 63"},
		{name: "slash", in: "a/b", wantErr: "may only contain"},
		{name: "trailing underscore", in: "ab_", wantErr: "begin and end"},
		{name: "template", in: "{{ .nodeName }}", wantErr: "may only contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, LabelValue(tt.in), tt.wantErr)
		})
	}
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		wantErr string // the whole error text
	}{
		{name: "nil", in: nil},
		{name: "valid", in: map[string]string{"app": "foo", "version": "v1.1", "example.com/x": ""}},
		{
			name:    "bad value",
			in:      map[string]string{"app": "foo bar"},
			wantErr: `sel["app"]: label value "foo bar" may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:    "bad key",
			in:      map[string]string{"b": "ok", "a b": "ok"},
			wantErr: `sel["a b"]: label key "a b": name may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:    "first bad key in order",
			in:      map[string]string{"z!": "x", "a!": "x", "m!": "x"},
			wantErr: `sel["a!"]: label key "a!": name may only contain letters, digits, '.', '_' and '-'`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Labels("sel", tt.in)
			checkExact(t, err, tt.wantErr)
		})
	}
}

func TestNetworkService(t *testing.T) {
	valid := func() *registry.NetworkService {
		return &registry.NetworkService{
			Name:    "local-vl3@marketing.example.com",
			Payload: "IP",
			Matches: []*registry.Match{
				{
					SourceSelector: map[string]string{"app": "foo"},
					Routes: []*registry.Destination{
						{DestinationSelector: map[string]string{"provides": "ips"}, Weight: 3},
					},
					Fallthrough: true,
					Metadata:    &registry.Metadata{Labels: map[string]string{"tier": "one"}},
				},
				{
					Routes: []*registry.Destination{
						{DestinationSelector: map[string]string{"nodeName": "{{  .nodeName }}"}},
						{DestinationSelector: map[string]string{"supplier": "true"}},
					},
				},
			},
		}
	}
	tests := []struct {
		name    string
		mutate  func(ns *registry.NetworkService)
		wantErr string // the whole error text; "" means valid
	}{
		{name: "valid", mutate: func(*registry.NetworkService) {}},
		{name: "empty payload", mutate: func(ns *registry.NetworkService) { ns.Payload = "" }},
		{name: "ethernet", mutate: func(ns *registry.NetworkService) { ns.Payload = "ETHERNET" }},
		{name: "no matches", mutate: func(ns *registry.NetworkService) { ns.Matches = nil }},
		{
			name:    "missing name",
			mutate:  func(ns *registry.NetworkService) { ns.Name = "" },
			wantErr: "name: required",
		},
		{
			name:    "bad name",
			mutate:  func(ns *registry.NetworkService) { ns.Name = "a b" },
			wantErr: `name: "a b": the service part may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:    "lower case payload",
			mutate:  func(ns *registry.NetworkService) { ns.Payload = "ip" },
			wantErr: `payload: must be IP or ETHERNET, got "ip"`,
		},
		{
			name:    "nil match",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[1] = nil },
			wantErr: "matches[1]: match is missing",
		},
		{
			name:    "nil route",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[1].Routes[1] = nil },
			wantErr: "matches[1].routes[1]: route is missing",
		},
		{
			name:    "bad source selector value",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[0].SourceSelector["app"] = "{{ .x }}" },
			wantErr: `matches[0].source_selector["app"]: label value "{{ .x }}" may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:    "bad source selector key",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[0].SourceSelector["-x"] = "y" },
			wantErr: `matches[0].source_selector["-x"]: label key "-x": name must begin and end with a letter or digit`,
		},
		{
			name:    "bad destination key",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[0].Routes[0].DestinationSelector["a b"] = "x" },
			wantErr: `matches[0].routes[0].destination_selector["a b"]: label key "a b": name may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name: "bad destination value",
			mutate: func(ns *registry.NetworkService) {
				ns.Matches[1].Routes[1].DestinationSelector["supplier"] = "yes please"
			},
			wantErr: `matches[1].routes[1].destination_selector["supplier"]: label value "yes please" may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:    "unclosed template",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[1].Routes[0].DestinationSelector["nodeName"] = "{{ .x" },
			wantErr: `matches[1].routes[0].destination_selector["nodeName"]: template: nodeName:1: unclosed action`,
		},
		{
			name: "template with unknown function",
			mutate: func(ns *registry.NetworkService) {
				ns.Matches[1].Routes[0].DestinationSelector["nodeName"] = "{{ lower .x }}"
			},
			wantErr: `matches[1].routes[0].destination_selector["nodeName"]: template: nodeName:1: function "lower" not defined`,
		},
		{
			name: "template in text",
			mutate: func(ns *registry.NetworkService) {
				ns.Matches[1].Routes[0].DestinationSelector["nodeName"] = "node-{{ .nodeName }}-x"
			},
		},
		{
			name:    "bad metadata label",
			mutate:  func(ns *registry.NetworkService) { ns.Matches[0].Metadata.Labels["tier"] = "one!" },
			wantErr: `matches[0].metadata.labels["tier"]: label value "one!" may only contain letters, digits, '.', '_' and '-'`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := valid()
			tt.mutate(ns)
			checkExact(t, NetworkService(ns), tt.wantErr)
		})
	}
	t.Run("nil", func(t *testing.T) {
		checkExact(t, NetworkService(nil), "network service is missing")
	})
}

func TestEndpoint(t *testing.T) {
	valid := func() *registry.NetworkServiceEndpoint {
		return &registry.NetworkServiceEndpoint{
			Name:                "nse-vl3-1",
			NetworkServiceNames: []string{"local-vl3@marketing.example.com", "icmp-responder"},
			NetworkServiceLabels: map[string]*registry.NetworkServiceLabels{
				"local-vl3@marketing.example.com": {Labels: map[string]string{"nodeName": "node-1"}},
				"icmp-responder":                  nil,
			},
			Url: "tcp://10.0.0.1:5001",
		}
	}
	tests := []struct {
		name    string
		mutate  func(nse *registry.NetworkServiceEndpoint)
		wantErr string
	}{
		{name: "valid", mutate: func(*registry.NetworkServiceEndpoint) {}},
		{name: "unix url", mutate: func(nse *registry.NetworkServiceEndpoint) { nse.Url = "unix:///run/vwire/nse.sock" }},
		{name: "inode url", mutate: func(nse *registry.NetworkServiceEndpoint) { nse.Url = "inode://4/1234" }},
		{name: "file url", mutate: func(nse *registry.NetworkServiceEndpoint) { nse.Url = "file:///tmp/nse.sock" }},
		{name: "ipv6 url", mutate: func(nse *registry.NetworkServiceEndpoint) { nse.Url = "tcp://[fd00::1]:5001" }},
		{name: "no services", mutate: func(nse *registry.NetworkServiceEndpoint) {
			nse.NetworkServiceNames = nil
			nse.NetworkServiceLabels = nil
		}},
		{
			name:    "missing name",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.Name = "" },
			wantErr: "name: required",
		},
		{
			name:    "bad name",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.Name = "nse:1" },
			wantErr: `name: "nse:1": the service part may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name:    "missing url",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.Url = "" },
			wantErr: "url: required",
		},
		{
			name:    "url without scheme",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.Url = "/run/nse.sock" },
			wantErr: `url: "/run/nse.sock" has no scheme (tcp://, unix://, inode://, ...)`,
		},
		{
			name:    "host and port only",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.Url = "localhost:5001" },
			wantErr: `url: "localhost:5001" has no host or path after the scheme (write it like tcp://host:port or unix:///path)`,
		},
		{
			name:    "unparseable url",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.Url = "tcp://a b:1" },
			wantErr: `url: "tcp://a b:1" is not a URL: invalid character " " in host name`,
		},
		{
			name:    "bad service name",
			mutate:  func(nse *registry.NetworkServiceEndpoint) { nse.NetworkServiceNames[1] = "svc@" },
			wantErr: `network_service_names[1]: "svc@": domain is empty`,
		},
		{
			name: "bad labels service name",
			mutate: func(nse *registry.NetworkServiceEndpoint) {
				nse.NetworkServiceLabels["bad name"] = &registry.NetworkServiceLabels{}
			},
			wantErr: `network_service_labels["bad name"]: "bad name": the service part may only contain letters, digits, '.', '_' and '-'`,
		},
		{
			name: "bad label",
			mutate: func(nse *registry.NetworkServiceEndpoint) {
				nse.NetworkServiceLabels["icmp-responder"] = &registry.NetworkServiceLabels{Labels: map[string]string{"nodeName": "{{ .x }}"}}
			},
			wantErr: `network_service_labels["icmp-responder"].labels["nodeName"]: label value "{{ .x }}" may only contain letters, digits, '.', '_' and '-'`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nse := valid()
			tt.mutate(nse)
			checkExact(t, Endpoint(nse), tt.wantErr)
		})
	}
	t.Run("nil", func(t *testing.T) {
		checkExact(t, Endpoint(nil), "network service endpoint is missing")
	})
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty becomes IP", in: "", want: "IP"},
		{name: "IP stays", in: "IP", want: "IP"},
		{name: "ETHERNET stays", in: "ETHERNET", want: "ETHERNET"},
		{name: "invalid left for NetworkService to refuse", in: "ip", want: "ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := &registry.NetworkService{Name: "svc", Payload: tt.in}
			Normalize(ns)
			if ns.GetPayload() != tt.want {
				t.Errorf("payload = %q, want %q", ns.GetPayload(), tt.want)
			}
		})
	}
	Normalize(nil) // must not panic
}

func TestFieldErrorIsTyped(t *testing.T) {
	err := NetworkService(&registry.NetworkService{Name: "svc", Payload: "MPLS"})
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Path != "payload" || fe.Msg != `must be IP or ETHERNET, got "MPLS"` {
		t.Errorf("FieldError = %+v", *fe)
	}
}

func checkErr(t *testing.T, err error, wantSubstr string) {
	t.Helper()
	switch {
	case wantSubstr == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case wantSubstr != "" && err == nil:
		t.Errorf("no error, want one containing %q", wantSubstr)
	case wantSubstr != "" && !strings.Contains(err.Error(), wantSubstr):
		t.Errorf("error %q does not contain %q", err, wantSubstr)
	}
}

func checkExact(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want %q", want)
	case want != "" && err.Error() != want:
		t.Errorf("error\n got %s\nwant %s", err, want)
	}
}
