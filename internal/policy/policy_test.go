package policy

import (
	"errors"
	"strings"
	"testing"
)

const doc = `
request:
  - name: guests-no-ips
    ids: ["spiffe://vwire.local/guest/*"]
    services: ["secure-vl3"]
    deny: true
  - name: guests
    ids: ["spiffe://vwire.local/guest/*"]
    services: ["*"]
  - name: ops
    ids: ["spiffe://vwire.local/ops/**"]
    services: ["*"]
register:
  - name: sales
    ids: ["spiffe://vwire.local/ns/sales/**"]
    services: ["*"]
    domains: ["sales.example.com"]
  - name: icmp
    ids: ["spiffe://vwire.local/vwire/nse"]
    services: ["icmp"]
`

func TestDecisions(t *testing.T) {
	p, err := Parse("test", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		register bool
		id, svc  string
		wantRule string // "" = allowed
	}{
		{name: "guest may request icmp", id: "spiffe://vwire.local/guest/alice", svc: "icmp"},
		{name: "deny rule first", id: "spiffe://vwire.local/guest/alice", svc: "secure-vl3", wantRule: `rule "guests-no-ips"`},
		{name: "deny rule by base name", id: "spiffe://vwire.local/guest/alice", svc: "secure-vl3@sales.example.com", wantRule: `rule "guests-no-ips"`},
		{name: "glob does not cross segments", id: "spiffe://vwire.local/guest/a/b", svc: "icmp", wantRule: "no request rule"},
		{name: "prefix crosses segments", id: "spiffe://vwire.local/ops/eu/bob", svc: "secure-vl3"},
		{name: "prefix is not a string prefix", id: "spiffe://vwire.local/opsx/bob", svc: "icmp", wantRule: "no request rule"},
		{name: "unknown workload", id: "spiffe://vwire.local/other", svc: "icmp", wantRule: "no request rule"},
		{name: "register in own domain", register: true, id: "spiffe://vwire.local/ns/sales/sa/ips", svc: "secure-vl3@sales.example.com"},
		{name: "register in another domain", register: true, id: "spiffe://vwire.local/ns/sales/sa/ips", svc: "secure-vl3@finance.example.com", wantRule: "no register rule"},
		{name: "register exact", register: true, id: "spiffe://vwire.local/vwire/nse", svc: "icmp"},
		{name: "register other service", register: true, id: "spiffe://vwire.local/vwire/nse", svc: "vl3", wantRule: "no register rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.MayRequest(tt.id, tt.svc)
			if tt.register {
				err = p.MayRegister(tt.id, tt.svc)
			}
			if tt.wantRule == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), tt.wantRule) {
				t.Fatalf("err = %v, want denial naming %s", err, tt.wantRule)
			}
		})
	}
}

func TestEmptyAndNil(t *testing.T) {
	var nilP *Policy
	if nilP.MayRequest("x", "y") != nil || nilP.MayRegister("x", "y") != nil {
		t.Fatal("nil policy refused")
	}
	p, err := Parse("empty", []byte("request: []\n"))
	if err != nil || p.MayRequest("spiffe://a/b", "s") != nil {
		t.Fatalf("empty sections must allow: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"requests: []",                            // unknown field
		"request: [{ids: [a]}]",                   // no services
		"request: [{ids: ['[x'], services: [s]}]", // bad glob
		"request: {}",                             // wrong type
	} {
		if _, err := Parse("bad", []byte(bad)); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
