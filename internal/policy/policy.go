// Package policy decides which SPIFFE IDs may request which network
// services, and which may register endpoints for which services and
// domains. Rules are read from a YAML file, checked in order, and the first
// rule that matches both the identity and the service decides. A section
// without rules lets any workload of the trust domain (mTLS already admits
// only those) do that thing. A refusal names the rule, or says that none
// allowed it.
package policy

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"sigs.k8s.io/yaml"
)

// File is the policy file's format.
//
//	request:
//	  - name: ops
//	    ids: ["spiffe://vwire.local/ops/**"]     # exact, glob (*), or prefix (/**)
//	    services: ["*"]
//	  - name: no-ips-for-guests
//	    ids: ["spiffe://vwire.local/guest/*"]
//	    services: ["secure-vl3@sales.example.com"]
//	    deny: true
//	lookup:                                       # who may Find which services
//	  - name: partners
//	    ids: ["spiffe://partner.example.com/**"]  # e.g. another domain's registry
//	    services: ["public-*"]
//	register:
//	  - name: sales-endpoints
//	    ids: ["spiffe://vwire.local/ns/sales/**"]
//	    services: ["*"]
//	    domains: ["sales.example.com"]
type File struct {
	Request  []Rule `json:"request"`
	Lookup   []Rule `json:"lookup"`
	Register []Rule `json:"register"`
}

// Rule allows (or, with Deny, refuses) the identities it names the services
// it names. Domains, when given, restricts it to services in those registry
// domains (a service without @domain is in the empty domain "").
type Rule struct {
	Name     string   `json:"name"`
	IDs      []string `json:"ids"`
	Services []string `json:"services"`
	Domains  []string `json:"domains"`
	Deny     bool     `json:"deny"`
}

// ErrDenied is wrapped by every refusal.
var ErrDenied = errors.New("denied by policy")

// Policy is a loaded policy; the nil *Policy allows everything.
type Policy struct {
	file File
}

// Load reads and checks a policy file.
func Load(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(file, data)
}

// Parse checks a policy document (strictly: unknown fields are errors).
func Parse(name string, data []byte) (*Policy, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	for section, rules := range map[string][]Rule{"request": f.Request, "lookup": f.Lookup, "register": f.Register} {
		for i := range rules {
			r := &rules[i]
			if r.Name == "" {
				r.Name = fmt.Sprintf("%s[%d]", section, i)
			}
			if len(r.IDs) == 0 || len(r.Services) == 0 {
				return nil, fmt.Errorf("policy %s: %s rule %q: ids and services must not be empty", name, section, r.Name)
			}
			for _, p := range append(append([]string{}, r.IDs...), r.Services...) {
				if _, err := path.Match(strings.TrimSuffix(p, "/**"), ""); err != nil {
					return nil, fmt.Errorf("policy %s: %s rule %q: pattern %q: %w", name, section, r.Name, p, err)
				}
			}
		}
	}
	return &Policy{file: f}, nil
}

// MayRequest tells whether id may request service.
func (p *Policy) MayRequest(id, service string) error {
	if p == nil {
		return nil
	}
	return decide("request", p.file.Request, id, service)
}

// MayLookUp tells whether id may look up service in a registry ("" for a
// look-up that names no service).
func (p *Policy) MayLookUp(id, service string) error {
	if p == nil {
		return nil
	}
	return decide("look up", p.file.Lookup, id, service)
}

// MayRegister tells whether id may register an endpoint for service.
func (p *Policy) MayRegister(id, service string) error {
	if p == nil {
		return nil
	}
	return decide("register", p.file.Register, id, service)
}

func decide(what string, rules []Rule, id, service string) error {
	if len(rules) == 0 {
		return nil
	}
	for _, r := range rules {
		if !r.matches(id, service) {
			continue
		}
		if r.Deny {
			return fmt.Errorf("%w: rule %q refuses %s to %s %q", ErrDenied, r.Name, id, what, service)
		}
		return nil
	}
	return fmt.Errorf("%w: no %s rule allows %s to %s %q", ErrDenied, what, id, what, service)
}

func (r Rule) matches(id, service string) bool {
	name, domain, _ := strings.Cut(service, "@")
	if len(r.Domains) > 0 && !anyMatch(r.Domains, domain) {
		return false
	}
	return anyMatch(r.IDs, id) && (anyMatch(r.Services, service) || anyMatch(r.Services, name))
}

// anyMatch: a pattern is exact, a glob (path.Match: * stays within one
// path segment), or ends in /** to match everything below a prefix.
func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "/**"); ok {
			if strings.HasPrefix(s, prefix+"/") {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
