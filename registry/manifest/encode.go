package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/networkservicemesh/api/pkg/api/registry"
	"go.yaml.in/yaml/v2"
)

// The manifest as written: struct order is output order, empty fields are
// left out, and the spellings are the ones Decode reads.
type (
	docOut struct {
		APIVersion string      `json:"apiVersion" yaml:"apiVersion"`
		Kind       string      `json:"kind" yaml:"kind"`
		Metadata   metadataOut `json:"metadata" yaml:"metadata"`
		Spec       any         `json:"spec,omitempty" yaml:"spec,omitempty"`
	}
	metadataOut struct {
		Name string `json:"name" yaml:"name"`
	}
	serviceOut struct {
		Payload string     `json:"payload" yaml:"payload"`
		Matches []matchOut `json:"matches,omitempty" yaml:"matches,omitempty"`
	}
	matchOut struct {
		SourceSelector map[string]string `json:"source_selector,omitempty" yaml:"source_selector,omitempty"`
		Routes         []routeOut        `json:"routes,omitempty" yaml:"routes,omitempty"`
		Fallthrough    bool              `json:"fallthrough,omitempty" yaml:"fallthrough,omitempty"`
		Metadata       *labelsOut        `json:"metadata,omitempty" yaml:"metadata,omitempty"`
	}
	routeOut struct {
		DestinationSelector map[string]string `json:"destination_selector,omitempty" yaml:"destination_selector,omitempty"`
		Weight              uint32            `json:"weight,omitempty" yaml:"weight,omitempty"`
	}
	labelsOut struct {
		Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	}
	endpointOut struct {
		NetworkServiceNames  []string             `json:"network_service_names,omitempty" yaml:"network_service_names,omitempty"`
		NetworkServiceLabels map[string]labelsOut `json:"network_service_labels,omitempty" yaml:"network_service_labels,omitempty"`
		URL                  string               `json:"url,omitempty" yaml:"url,omitempty"`
		ExpirationTime       string               `json:"expiration_time,omitempty" yaml:"expiration_time,omitempty"`
	}
)

// Encode writes objects as manifests that Decode reads back to equal objects.
// format "yaml" gives documents separated by `---` lines; "json" gives one
// object, or an array when there are several (or none). Only the fields of the
// manifest schema are written: path_ids and initial_registration_time are not
// part of it. A NetworkService always shows its payload (IP when empty).
func Encode(objs []Object, format string) ([]byte, error) {
	docs := make([]docOut, 0, len(objs))
	for i, obj := range objs {
		d, err := encodeObject(obj)
		if err != nil {
			return nil, fmt.Errorf("manifest: encode object %d: %w", i+1, err)
		}
		docs = append(docs, d)
	}
	switch format {
	case "yaml":
		var b bytes.Buffer
		for i, d := range docs {
			if i > 0 {
				b.WriteString("---\n")
			}
			out, err := yaml.Marshal(d)
			if err != nil {
				return nil, fmt.Errorf("manifest: encode object %d: %w", i+1, err)
			}
			b.Write(out)
		}
		return b.Bytes(), nil
	case "json":
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		var v any = docs
		if len(docs) == 1 {
			v = docs[0]
		}
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("manifest: encode: %w", err)
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("manifest: unknown format %q (want yaml or json)", format)
}

func encodeObject(obj Object) (docOut, error) {
	switch {
	case obj.Service != nil && obj.Endpoint != nil:
		return docOut{}, errors.New("both Service and Endpoint are set")
	case obj.Service != nil:
		if obj.Kind != "" && obj.Kind != KindService {
			return docOut{}, fmt.Errorf("kind %q does not match the Service set", obj.Kind)
		}
		return docOut{
			APIVersion: APIVersion,
			Kind:       KindService,
			Metadata:   metadataOut{Name: obj.Service.GetName()},
			Spec:       encodeService(obj.Service),
		}, nil
	case obj.Endpoint != nil:
		if obj.Kind != "" && obj.Kind != KindEndpoint {
			return docOut{}, fmt.Errorf("kind %q does not match the Endpoint set", obj.Kind)
		}
		spec, err := encodeEndpoint(obj.Endpoint)
		if err != nil {
			return docOut{}, err
		}
		return docOut{
			APIVersion: APIVersion,
			Kind:       KindEndpoint,
			Metadata:   metadataOut{Name: obj.Endpoint.GetName()},
			Spec:       spec,
		}, nil
	}
	return docOut{}, errors.New("neither Service nor Endpoint is set")
}

func encodeService(ns *registry.NetworkService) serviceOut {
	out := serviceOut{Payload: ns.GetPayload()}
	if out.Payload == "" {
		out.Payload = payload.IP
	}
	for _, m := range ns.GetMatches() {
		mo := matchOut{
			SourceSelector: nonEmpty(m.GetSourceSelector()),
			Fallthrough:    m.GetFallthrough(),
		}
		if l := nonEmpty(m.GetMetadata().GetLabels()); l != nil {
			mo.Metadata = &labelsOut{Labels: l}
		}
		for _, r := range m.GetRoutes() {
			mo.Routes = append(mo.Routes, routeOut{
				DestinationSelector: nonEmpty(r.GetDestinationSelector()),
				Weight:              r.GetWeight(),
			})
		}
		out.Matches = append(out.Matches, mo)
	}
	return out
}

func encodeEndpoint(nse *registry.NetworkServiceEndpoint) (endpointOut, error) {
	out := endpointOut{
		NetworkServiceNames: nse.GetNetworkServiceNames(),
		URL:                 nse.GetUrl(),
	}
	for svc, l := range nse.GetNetworkServiceLabels() {
		if out.NetworkServiceLabels == nil {
			out.NetworkServiceLabels = map[string]labelsOut{}
		}
		out.NetworkServiceLabels[svc] = labelsOut{Labels: nonEmpty(l.GetLabels())}
	}
	if ts := nse.GetExpirationTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return endpointOut{}, fmt.Errorf("expiration_time: %w", err)
		}
		out.ExpirationTime = ts.AsTime().UTC().Format(time.RFC3339Nano)
	}
	return out, nil
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
