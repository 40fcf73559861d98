package identity

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Federation is the trust bundles of other trust domains this workload
// accepts peers from (other registry domains' registries, managers and
// forwarders). A peer of a trust domain that is neither this workload's nor
// federated is refused in the TLS handshake.
type Federation map[spiffeid.TrustDomain]*x509bundle.Bundle

// LoadFederation reads `trust-domain=bundle.pem` specs (what
// --federate-with takes).
func LoadFederation(specs []string) (Federation, error) {
	f := Federation{}
	for _, spec := range specs {
		name, file, ok := strings.Cut(spec, "=")
		if !ok || name == "" || file == "" {
			return nil, fmt.Errorf("federate-with %q: want trust-domain=bundle.pem", spec)
		}
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("federate-with %q: trust domain: %w", spec, err)
		}
		b, err := x509bundle.Load(td, file)
		if err != nil {
			return nil, fmt.Errorf("federate-with %q: %w", spec, err)
		}
		if len(b.X509Authorities()) == 0 {
			return nil, fmt.Errorf("federate-with %q: %s holds no CA certificate", spec, file)
		}
		f[td] = b
	}
	return f, nil
}

// Federate returns src accepting peers of f's trust domains too. With an
// empty f it returns src itself.
func Federate(src Source, f Federation) Source {
	if len(f) == 0 {
		return src
	}
	return &federated{Source: src, f: f}
}

type federated struct {
	Source
	f Federation
}

// GetX509BundleForTrustDomain implements x509bundle.Source: a federated
// bundle, else the source's own (its trust domain, or what a SPIRE agent
// federates).
func (s *federated) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if b, ok := s.f[td]; ok && td != s.Source.TrustDomain() {
		return b, nil
	}
	return s.Source.GetX509BundleForTrustDomain(td)
}

// Federated implements the interface AuthorizeTrustDomain looks for.
func (s *federated) Federated() []spiffeid.TrustDomain {
	var out []spiffeid.TrustDomain
	for td := range s.f {
		out = append(out, td)
	}
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// authorizeFederated accepts peers of own or of any federated trust domain.
func authorizeFederated(own spiffeid.TrustDomain, fed []spiffeid.TrustDomain) tlsconfig.Authorizer {
	return tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		td := id.TrustDomain()
		if td == own || slices.Contains(fed, td) {
			return nil
		}
		return fmt.Errorf("peer %s: trust domain %q is neither %q nor federated", id, td, own)
	})
}
