// Package validate checks NetworkService and NetworkServiceEndpoint objects
// before anything stores or acts on them. The registry server, `vwire apply` and
// the manager share it, so an object is accepted or refused the same way
// everywhere. Every check returns a *FieldError naming the offending field by
// its YAML spelling relative to the object (`name`, `matches[1].routes[0]...`);
// callers that know the enclosing document add their own prefix.
package validate

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/template"

	"github.com/networkservicemesh/api/pkg/api/networkservice/payload"
	"github.com/networkservicemesh/api/pkg/api/registry"
)

// Length limits.
const (
	// MaxNameLength bounds a whole service or endpoint name, domain included.
	MaxNameLength = 253
	// MaxLabelLength bounds a label value and the name part of a label key.
	MaxLabelLength = 63
	// MaxLabelPrefixLength bounds the DNS prefix of a label key.
	MaxLabelPrefixLength = 253
	// maxDomainLabelLength bounds one dot-separated label of a DNS name.
	maxDomainLabelLength = 63
)

// FieldError is a validation failure of one field. Path spells the field as
// YAML does, relative to the object that was checked.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func fieldErr(path string, err error) *FieldError {
	return &FieldError{Path: path, Msg: err.Error()}
}

// Normalize fills the defaults of a NetworkService in place: an empty payload
// means IP. Call it before storing what a client sent (NetworkService accepts
// the payload either way).
func Normalize(ns *registry.NetworkService) {
	if ns != nil && ns.GetPayload() == "" {
		ns.Payload = payload.IP
	}
}

// NetworkService checks a NetworkService: its name, its payload ("" stands for
// IP), and the labels, selectors and templates of its matches.
func NetworkService(ns *registry.NetworkService) error {
	if ns == nil {
		return &FieldError{Msg: "network service is missing"}
	}
	if err := Name(ns.GetName()); err != nil {
		return fieldErr("name", err)
	}
	switch ns.GetPayload() {
	case "", payload.IP, payload.Ethernet:
	default:
		return &FieldError{Path: "payload", Msg: fmt.Sprintf("must be %s or %s, got %q", payload.IP, payload.Ethernet, ns.GetPayload())}
	}
	for i, m := range ns.GetMatches() {
		mpath := fmt.Sprintf("matches[%d]", i)
		if m == nil {
			return &FieldError{Path: mpath, Msg: "match is missing"}
		}
		if err := Labels(mpath+".source_selector", m.GetSourceSelector()); err != nil {
			return err
		}
		for j, r := range m.GetRoutes() {
			rpath := fmt.Sprintf("%s.routes[%d]", mpath, j)
			if r == nil {
				return &FieldError{Path: rpath, Msg: "route is missing"}
			}
			if err := destinationSelector(rpath+".destination_selector", r.GetDestinationSelector()); err != nil {
				return err
			}
		}
		if err := Labels(mpath+".metadata.labels", m.GetMetadata().GetLabels()); err != nil {
			return err
		}
	}
	return nil
}

// Endpoint checks a NetworkServiceEndpoint: its name, its URL, the names of
// the services it provides and the labels it advertises for each.
func Endpoint(nse *registry.NetworkServiceEndpoint) error {
	if nse == nil {
		return &FieldError{Msg: "network service endpoint is missing"}
	}
	if err := Name(nse.GetName()); err != nil {
		return fieldErr("name", err)
	}
	if err := endpointURL(nse.GetUrl()); err != nil {
		return fieldErr("url", err)
	}
	for i, name := range nse.GetNetworkServiceNames() {
		if err := Name(name); err != nil {
			return fieldErr(fmt.Sprintf("network_service_names[%d]", i), err)
		}
	}
	for _, svc := range sortedKeys(nse.GetNetworkServiceLabels()) {
		path := "network_service_labels" + key(svc)
		if err := Name(svc); err != nil {
			return fieldErr(path, err)
		}
		if err := Labels(path+".labels", nse.GetNetworkServiceLabels()[svc].GetLabels()); err != nil {
			return err
		}
	}
	return nil
}

// Name checks the name of a network service or an endpoint: `svc` or
// `svc@domain`, where svc is made of [A-Za-z0-9._-] and domain is a DNS name;
// at most MaxNameLength bytes in all.
func Name(name string) error {
	if name == "" {
		return errors.New("required")
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%q is %d characters long, at most %d allowed", name, len(name), MaxNameLength)
	}
	svc, domain, hasDomain := strings.Cut(name, "@")
	if svc == "" {
		return fmt.Errorf("%q has nothing before the @", name)
	}
	for _, c := range []byte(svc) {
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%q: the service part may only contain letters, digits, '.', '_' and '-'", name)
		}
	}
	if hasDomain {
		if err := dnsName(domain, true); err != nil {
			return fmt.Errorf("%q: domain %w", name, err)
		}
	}
	return nil
}

// Labels checks every key and value of a label map or selector. path names the
// map; errors name the entry as path["key"]. Entries are checked in key order
// so the error reported is always the same one.
func Labels(path string, m map[string]string) error {
	for _, k := range sortedKeys(m) {
		if err := LabelKey(k); err != nil {
			return fieldErr(path+key(k), err)
		}
		if err := LabelValue(m[k]); err != nil {
			return fieldErr(path+key(k), err)
		}
	}
	return nil
}

// LabelKey checks a label key the way Kubernetes checks a qualified name: an
// optional DNS subdomain prefix (lower case, at most 253 characters) and '/',
// then a name of 1 to 63 characters of [A-Za-z0-9_.-] beginning and ending
// with a letter or digit.
func LabelKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if hasPrefix {
		if prefix == "" {
			return fmt.Errorf("label key %q: prefix before '/' is empty", k)
		}
		if len(prefix) > MaxLabelPrefixLength {
			return fmt.Errorf("label key %q: prefix is longer than %d characters", k, MaxLabelPrefixLength)
		}
		if err := dnsName(prefix, false); err != nil {
			return fmt.Errorf("label key %q: prefix %w", k, err)
		}
	} else {
		name = prefix
	}
	if name == "" {
		return fmt.Errorf("label key %q: name is empty", k)
	}
	if err := labelName(name); err != nil {
		return fmt.Errorf("label key %q: name %w", k, err)
	}
	return nil
}

// LabelValue checks a label value: empty, or 1 to 63 characters of
// [A-Za-z0-9_.-] beginning and ending with a letter or digit.
func LabelValue(v string) error {
	if v == "" {
		return nil
	}
	if err := labelName(v); err != nil {
		return fmt.Errorf("label value %q %w", v, err)
	}
	return nil
}

// destinationSelector checks a route's selector: its values may be templates
// over the client's labels (`{{ .nodeName }}`) that are expanded at selection
// time, so a value containing "{{" must parse as a Go text/template instead of
// being a label value.
func destinationSelector(path string, m map[string]string) error {
	for _, k := range sortedKeys(m) {
		if err := LabelKey(k); err != nil {
			return fieldErr(path+key(k), err)
		}
		v := m[k]
		if strings.Contains(v, "{{") {
			if _, err := template.New(k).Parse(v); err != nil {
				return fieldErr(path+key(k), err)
			}
			continue
		}
		if err := LabelValue(v); err != nil {
			return fieldErr(path+key(k), err)
		}
	}
	return nil
}

// endpointURL checks the URL an endpoint is reached at: it needs a scheme and a
// host or a path (tcp://10.0.0.1:5001, unix:///run/nse.sock, inode://4/1234).
func endpointURL(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", s, unwrapURLError(err))
	}
	if u.Scheme == "" {
		return fmt.Errorf("%q has no scheme (tcp://, unix://, inode://, ...)", s)
	}
	if u.Opaque != "" || (u.Host == "" && u.Path == "") {
		return fmt.Errorf("%q has no host or path after the scheme (write it like tcp://host:port or unix:///path)", s)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// labelName checks the shared shape of a label value and of a label key's name.
func labelName(s string) error {
	if len(s) > MaxLabelLength {
		return fmt.Errorf("is %d characters long, at most %d allowed", len(s), MaxLabelLength)
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return errors.New("may only contain letters, digits, '.', '_' and '-'")
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return errors.New("must begin and end with a letter or digit")
	}
	return nil
}

// dnsName checks a dot-separated DNS name whose labels are 1 to 63 characters
// of letters, digits and '-', neither beginning nor ending with '-'. Upper
// case is refused unless anyCase.
func dnsName(s string, anyCase bool) error {
	if s == "" {
		return errors.New("is empty")
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return fmt.Errorf("%q has an empty label", s)
		}
		if len(part) > maxDomainLabelLength {
			return fmt.Errorf("%q has a label longer than %d characters", s, maxDomainLabelLength)
		}
		for _, c := range []byte(part) {
			upper := c >= 'A' && c <= 'Z'
			if !(isAlnum(c) || c == '-') || (upper && !anyCase) {
				if anyCase {
					return fmt.Errorf("%q may only contain letters, digits, '-' and '.'", s)
				}
				return fmt.Errorf("%q may only contain lower case letters, digits, '-' and '.'", s)
			}
		}
		if part[0] == '-' || part[len(part)-1] == '-' {
			return fmt.Errorf("%q has a label beginning or ending with '-'", s)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// key spells a map entry in a path: ["key"].
func key(k string) string {
	return fmt.Sprintf("[%q]", k)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
