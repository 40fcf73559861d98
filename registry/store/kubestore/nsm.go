package kubestore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vwire/vwire/registry/manifest"
	"github.com/vwire/vwire/registry/store"
)

// Group and version of Network Service Mesh's custom resources.
const (
	Group   = "networkservicemesh.io"
	Version = "v1"
)

// NetworkServiceMesh returns where the registry's kinds live: NetworkServices
// and NetworkServiceEndpoints of networkservicemesh.io/v1, with specs in the
// form `vwire apply` reads (registry/manifest), so that objects applied with
// kubectl are registered and registered ones read back with kubectl.
func NetworkServiceMesh() map[store.Kind]Resource {
	return map[store.Kind]Resource{
		store.KindService: {
			GVR:   schema.GroupVersionResource{Group: Group, Version: Version, Resource: "networkservices"},
			Kind:  manifest.KindService,
			Codec: nsmCodec{kind: manifest.KindService},
		},
		store.KindEndpoint: {
			GVR:   schema.GroupVersionResource{Group: Group, Version: Version, Resource: "networkserviceendpoints"},
			Kind:  manifest.KindEndpoint,
			Codec: nsmCodec{kind: manifest.KindEndpoint},
		},
	}
}

// nsmCodec turns the registry's records (protobuf NetworkService or
// NetworkServiceEndpoint) into manifest specs and back.
type nsmCodec struct{ kind string }

func (c nsmCodec) Spec(name string, value []byte) (map[string]any, error) {
	obj := manifest.Object{Kind: c.kind}
	var m proto.Message
	if c.kind == manifest.KindService {
		obj.Service = &registry.NetworkService{}
		m = obj.Service
	} else {
		obj.Endpoint = &registry.NetworkServiceEndpoint{}
		m = obj.Endpoint
	}
	if err := proto.Unmarshal(value, m); err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.kind, name, err)
	}
	data, err := manifest.Encode([]manifest.Object{obj}, "json")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Spec map[string]any `json:"spec"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.kind, name, err)
	}
	return doc.Spec, nil
}

func (c nsmCodec) Value(name string, spec map[string]any) ([]byte, []string, error) {
	doc := map[string]any{
		"apiVersion": manifest.APIVersion,
		"kind":       c.kind,
		"metadata":   map[string]any{"name": name},
	}
	if spec != nil {
		doc["spec"] = spec
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	objs, err := manifest.Decode(c.kind+" "+name, data)
	if err != nil {
		return nil, nil, err
	}
	if len(objs) != 1 {
		return nil, nil, fmt.Errorf("%s %s: %d objects decoded", c.kind, name, len(objs))
	}
	if obj := objs[0]; obj.Service != nil {
		value, err := proto.Marshal(obj.Service)
		return value, nil, err
	} else {
		value, err := proto.Marshal(obj.Endpoint)
		return value, obj.Endpoint.NetworkServiceNames, err
	}
}

// Expires reads an endpoint's expiration_time; services do not expire.
func (c nsmCodec) Expires(value []byte) (time.Time, bool) {
	if c.kind != manifest.KindEndpoint {
		return time.Time{}, false
	}
	var nse registry.NetworkServiceEndpoint
	if err := proto.Unmarshal(value, &nse); err != nil || nse.GetExpirationTime() == nil {
		return time.Time{}, false
	}
	return nse.GetExpirationTime().AsTime(), true
}
