package registry

import (
	"fmt"
	"slices"
	"strings"

	regapi "github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// domains is the set of registry domains this registry is authoritative for.
// A name `svc@d` with d in the set is the same record as `svc`.
type domains []string

// local strips an own domain from name. A name in another domain is refused:
// forwarding to other domains' registries is not done here.
func (d domains) local(field, name string) (string, error) {
	base, dom, ok := strings.Cut(name, "@")
	if !ok {
		return name, nil
	}
	if slices.Contains(d, dom) {
		return base, nil
	}
	served := "no domain"
	if len(d) > 0 {
		served = strings.Join(d, ", ")
	}
	return "", status.Errorf(codes.Unimplemented,
		"%s %q: domain %q is not served by this registry (authoritative for %s); interdomain look-ups are not supported yet",
		field, name, dom, served)
}

// localService rewrites a NetworkService's name into this registry's namespace.
func (d domains) localService(ns *regapi.NetworkService) error {
	if ns == nil {
		return nil
	}
	name, err := d.local("name", ns.GetName())
	if err != nil {
		return err
	}
	ns.Name = name
	return nil
}

// localEndpoint rewrites an endpoint's own name, its service names and the
// keys of its per-service labels.
func (d domains) localEndpoint(nse *regapi.NetworkServiceEndpoint) error {
	if nse == nil {
		return nil
	}
	name, err := d.local("name", nse.GetName())
	if err != nil {
		return err
	}
	nse.Name = name
	for i, svc := range nse.GetNetworkServiceNames() {
		if nse.NetworkServiceNames[i], err = d.local(fmt.Sprintf("network_service_names[%d]", i), svc); err != nil {
			return err
		}
	}
	if len(nse.GetNetworkServiceLabels()) == 0 {
		return nil
	}
	labels := make(map[string]*regapi.NetworkServiceLabels, len(nse.NetworkServiceLabels))
	for svc, l := range nse.NetworkServiceLabels {
		key, err := d.local("network_service_labels key", svc)
		if err != nil {
			return err
		}
		labels[key] = l
	}
	nse.NetworkServiceLabels = labels
	return nil
}
