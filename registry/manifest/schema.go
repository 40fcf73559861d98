package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/networkservicemesh/api/pkg/api/registry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vwire/vwire/registry/validate"
)

// The schema, walked by hand over the generic value a document decodes to
// (map[string]any, []any, string, json.Number, bool, nil) so that every
// error carries the path of the field. Absent and null are the same for every
// optional field; a null or empty map or list is an empty one.

var (
	topFields      = []string{"apiVersion", "kind", "metadata", "spec"}
	metadataFields = []string{"name", "namespace", "labels", "annotations"}
	serviceFields  = []string{"payload", "matches"}
	matchFields    = []string{"source_selector", "routes", "fallthrough", "metadata"}
	routeFields    = []string{"destination_selector", "weight"}
	matchMetaField = []string{"labels"}
	endpointFields = []string{"network_service_names", "network_service_labels", "url", "expiration_time"}
	nsLabelsFields = []string{"labels"}
)

func decodeObject(v any) (Object, *validate.FieldError) {
	top, err := object("", v, topFields)
	if err != nil {
		return Object{}, err
	}
	if top == nil {
		return Object{}, &validate.FieldError{Msg: "document must be a map, got null"}
	}
	apiVersion, err := requiredString("apiVersion", top["apiVersion"])
	if err != nil {
		return Object{}, err
	}
	if apiVersion != APIVersion {
		return Object{}, fieldErrorf("apiVersion", "must be %q, got %q", APIVersion, apiVersion)
	}
	kind, err := requiredString("kind", top["kind"])
	if err != nil {
		return Object{}, err
	}
	if kind != KindService && kind != KindEndpoint {
		return Object{}, fieldErrorf("kind", "must be %s or %s, got %q", KindService, KindEndpoint, kind)
	}
	name, err := metadata(top["metadata"])
	if err != nil {
		return Object{}, err
	}
	if kind == KindService {
		ns, err := serviceSpec(top["spec"])
		if err != nil {
			return Object{}, err
		}
		ns.Name = name
		validate.Normalize(ns)
		if err := validate.NetworkService(ns); err != nil {
			return Object{}, objectPath(err)
		}
		return Object{Kind: kind, Service: ns}, nil
	}
	nse, err := endpointSpec(top["spec"])
	if err != nil {
		return Object{}, err
	}
	nse.Name = name
	if err := validate.Endpoint(nse); err != nil {
		return Object{}, objectPath(err)
	}
	return Object{Kind: kind, Endpoint: nse}, nil
}

// objectPath places a registry/validate error in the manifest: the object's
// name is metadata.name, everything else lives under spec.
func objectPath(err error) *validate.FieldError {
	var fe *validate.FieldError
	if !errors.As(err, &fe) {
		return &validate.FieldError{Path: "spec", Msg: err.Error()}
	}
	if fe.Path == "name" {
		return &validate.FieldError{Path: "metadata.name", Msg: fe.Msg}
	}
	return &validate.FieldError{Path: join("spec", fe.Path), Msg: fe.Msg}
}

// metadata checks the metadata map and returns the object's name. namespace,
// labels and annotations are accepted (as kubectl-style manifests carry them)
// and ignored.
func metadata(v any) (string, *validate.FieldError) {
	m, err := object("metadata", v, metadataFields)
	if err != nil {
		return "", err
	}
	if m == nil {
		return "", &validate.FieldError{Path: "metadata.name", Msg: "required"}
	}
	name, err := requiredString("metadata.name", m["name"])
	if err != nil {
		return "", err
	}
	if _, err := optionalString("metadata.namespace", m["namespace"]); err != nil {
		return "", err
	}
	if _, err := stringMap("metadata.labels", m["labels"], "label"); err != nil {
		return "", err
	}
	if _, err := stringMap("metadata.annotations", m["annotations"], "annotation"); err != nil {
		return "", err
	}
	return name, nil
}

func serviceSpec(v any) (*registry.NetworkService, *validate.FieldError) {
	spec, err := object("spec", v, serviceFields)
	if err != nil {
		return nil, err
	}
	ns := &registry.NetworkService{}
	if ns.Payload, err = optionalString("spec.payload", spec["payload"]); err != nil {
		return nil, err
	}
	matches, err := list("spec.matches", spec["matches"])
	if err != nil {
		return nil, err
	}
	for i, mv := range matches {
		m, err := match(index("spec.matches", i), mv)
		if err != nil {
			return nil, err
		}
		ns.Matches = append(ns.Matches, m)
	}
	return ns, nil
}

func match(path string, v any) (*registry.Match, *validate.FieldError) {
	mm, err := object(path, v, matchFields)
	if err != nil {
		return nil, err
	}
	if mm == nil {
		return nil, &validate.FieldError{Path: path, Msg: "must be a map, got null"}
	}
	m := &registry.Match{}
	if m.SourceSelector, err = stringMap(join(path, "source_selector"), mm["source_selector"], "selector"); err != nil {
		return nil, err
	}
	routes, err := list(join(path, "routes"), mm["routes"])
	if err != nil {
		return nil, err
	}
	for j, rv := range routes {
		r, err := route(index(join(path, "routes"), j), rv)
		if err != nil {
			return nil, err
		}
		m.Routes = append(m.Routes, r)
	}
	if m.Fallthrough, err = optionalBool(join(path, "fallthrough"), mm["fallthrough"]); err != nil {
		return nil, err
	}
	meta, err := object(join(path, "metadata"), mm["metadata"], matchMetaField)
	if err != nil {
		return nil, err
	}
	labels, err := stringMap(join(path, "metadata.labels"), meta["labels"], "label")
	if err != nil {
		return nil, err
	}
	if len(labels) > 0 {
		m.Metadata = &registry.Metadata{Labels: labels}
	}
	return m, nil
}

func route(path string, v any) (*registry.Destination, *validate.FieldError) {
	rm, err := object(path, v, routeFields)
	if err != nil {
		return nil, err
	}
	if rm == nil {
		return nil, &validate.FieldError{Path: path, Msg: "must be a map, got null"}
	}
	r := &registry.Destination{}
	if r.DestinationSelector, err = stringMap(join(path, "destination_selector"), rm["destination_selector"], "selector"); err != nil {
		return nil, err
	}
	if r.Weight, err = weight(join(path, "weight"), rm["weight"]); err != nil {
		return nil, err
	}
	return r, nil
}

func endpointSpec(v any) (*registry.NetworkServiceEndpoint, *validate.FieldError) {
	spec, err := object("spec", v, endpointFields)
	if err != nil {
		return nil, err
	}
	nse := &registry.NetworkServiceEndpoint{}
	names, err := list("spec.network_service_names", spec["network_service_names"])
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		s, err := requiredString(index("spec.network_service_names", i), n)
		if err != nil {
			return nil, err
		}
		nse.NetworkServiceNames = append(nse.NetworkServiceNames, s)
	}
	labels, err := object("spec.network_service_labels", spec["network_service_labels"], nil)
	if err != nil {
		return nil, err
	}
	for _, svc := range slices.Sorted(maps.Keys(labels)) {
		path := entry("spec.network_service_labels", svc)
		lm, err := object(path, labels[svc], nsLabelsFields)
		if err != nil {
			return nil, err
		}
		l, err := stringMap(join(path, "labels"), lm["labels"], "label")
		if err != nil {
			return nil, err
		}
		if nse.NetworkServiceLabels == nil {
			nse.NetworkServiceLabels = map[string]*registry.NetworkServiceLabels{}
		}
		nse.NetworkServiceLabels[svc] = &registry.NetworkServiceLabels{Labels: l}
	}
	if nse.Url, err = optionalString("spec.url", spec["url"]); err != nil {
		return nil, err
	}
	exp, err := optionalString("spec.expiration_time", spec["expiration_time"])
	if err != nil {
		return nil, err
	}
	if exp != "" {
		t, perr := time.Parse(time.RFC3339Nano, exp)
		if perr != nil {
			return nil, fieldErrorf("spec.expiration_time", "must be an RFC 3339 time like 2025-01-02T15:04:05Z, got %q", exp)
		}
		ts := timestamppb.New(t)
		if verr := ts.CheckValid(); verr != nil {
			return nil, fieldErrorf("spec.expiration_time", "%q is out of range", exp)
		}
		nse.ExpirationTime = ts
	}
	return nse, nil
}

// object returns v as a map, nil for null. With fields non-nil, a key not
// among them is an error (the first one in key order).
func object(path string, v any, fields []string) (map[string]any, *validate.FieldError) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		if path == "" {
			return nil, fieldErrorf("", "document must be a map, got %s", describe(v))
		}
		return nil, fieldErrorf(path, "must be a map, got %s", describe(v))
	}
	if fields != nil {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(fields, k) {
				return nil, fieldErrorf(entry(path, k), "unknown field (known fields here: %s)", strings.Join(fields, ", "))
			}
		}
	}
	return m, nil
}

func list(path string, v any) ([]any, *validate.FieldError) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fieldErrorf(path, "must be a list, got %s", describe(v))
	}
	return l, nil
}

func requiredString(path string, v any) (string, *validate.FieldError) {
	if v == nil {
		return "", &validate.FieldError{Path: path, Msg: "required"}
	}
	return optionalString(path, v)
}

func optionalString(path string, v any) (string, *validate.FieldError) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fieldErrorf(path, "must be a string, got %s", describe(v))
}

func optionalBool(path string, v any) (bool, *validate.FieldError) {
	switch v := v.(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	}
	return false, fieldErrorf(path, "must be true or false, got %s", describe(v))
}

func weight(path string, v any) (uint32, *validate.FieldError) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		w, err := strconv.ParseUint(v.String(), 10, 32)
		if err != nil {
			return 0, fieldErrorf(path, "must be an integer from 0 to %d, got %s", uint32(math.MaxUint32), v)
		}
		return uint32(w), nil
	}
	return 0, fieldErrorf(path, "must be an integer from 0 to %d, got %s", uint32(math.MaxUint32), describe(v))
}

// stringMap reads a selector or label map. Values YAML reads as booleans or
// numbers take their string form; null, maps and lists are errors. what names
// the values in errors ("selector", "label").
func stringMap(path string, v any, what string) (map[string]string, *validate.FieldError) {
	m, err := object(path, v, nil)
	if err != nil || len(m) == 0 {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch val := m[k].(type) {
		case string:
			out[k] = val
		case json.Number:
			out[k] = val.String()
		case bool:
			out[k] = strconv.FormatBool(val)
		case nil:
			return nil, fieldErrorf(entry(path, k), `%s value must be a string, got null (write "" for an empty value)`, what)
		default:
			return nil, fieldErrorf(entry(path, k), "%s value must be a string, got %s", what, describe(val))
		}
	}
	return out, nil
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("a %T", v)
}

func fieldErrorf(path, format string, args ...any) *validate.FieldError {
	return &validate.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// join appends a field to a path.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// entry appends a map key to a path: .key when the key is a plain word,
// ["key"] otherwise.
func entry(path, key string) string {
	if isWord(key) {
		return join(path, key)
	}
	return fmt.Sprintf("%s[%q]", path, key)
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
