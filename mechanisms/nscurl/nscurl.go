// Package nscurl parses the URLs with which a client asks for a Network
// Service, as NSM clients spell them: kernel://<service>[@<domain>][/<ifname>]
// [?<label>=<value>&...] for a kernel interface named ifname, or
// memif://<service>[@<domain>][/<socketfile>][?labels] for a memif whose
// socket file is socketfile. A missing interface name leaves the choice to
// the forwarder. Each part may be percent-encoded; the service name follows
// the registry's rules (registry/validate.Name) and labels follow its label
// rules, so a URL accepted here names a service the registry could hold. A
// label key given twice keeps its last value. Request.String renders the
// canonical form (lower-case scheme, labels sorted by key), which Parse reads
// back to an equal Request.
package nscurl

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/mechanisms/internal/param"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/registry/validate"
)

// Sentinel errors.
var (
	// ErrUnknownScheme: the URL's scheme is not kernel or memif.
	ErrUnknownScheme = errors.New("unknown scheme")
	// ErrInvalid: the URL or one of its parts is malformed.
	ErrInvalid = errors.New("invalid network service URL")
)

// Schemes, each naming a mechanism.
const (
	KernelScheme = "kernel"
	MemifScheme  = "memif"
)

// Request is what a client URL asks for.
type Request struct {
	// NetworkService is the service's name, "name" or "name@domain".
	NetworkService string
	// Mechanism is the mechanism type: kernel.Type or memif.Type.
	Mechanism string
	// InterfaceName is the kernel interface name or the memif socket file;
	// empty to let the forwarder choose.
	InterfaceName string
	// Labels are the client's labels, matched by the service's selectors.
	// Nil when the URL has none.
	Labels map[string]string
}

// Parse parses a client URL.
func Parse(s string) (Request, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Request{}, invalid(s, "want kernel://<service>[@<domain>][/<ifname>][?<label>=<value>&...]")
	}
	var r Request
	switch strings.ToLower(scheme) {
	case KernelScheme:
		r.Mechanism = kernel.Type
	case MemifScheme:
		r.Mechanism = memif.Type
	default:
		return Request{}, fmt.Errorf("nscurl: %s: %w %s (want %s or %s)", param.Quote(s), ErrUnknownScheme, param.Quote(scheme), KernelScheme, MemifScheme)
	}
	if strings.Contains(rest, "#") {
		return Request{}, invalid(s, "a fragment (#...) is not allowed")
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	authority, ifname, _ := strings.Cut(rest, "/")
	if strings.Contains(ifname, "/") {
		return Request{}, invalid(s, "the interface name may not contain '/'")
	}
	var err error
	if r.NetworkService, err = parseService(authority); err != nil {
		return Request{}, invalid(s, err.Error())
	}
	if r.InterfaceName, err = url.PathUnescape(ifname); err != nil {
		return Request{}, invalid(s, "interface name: bad percent-encoding")
	}
	if hasQuery {
		if r.Labels, err = parseLabels(query); err != nil {
			return Request{}, invalid(s, err.Error())
		}
	}
	if err := r.Validate(); err != nil {
		return Request{}, fmt.Errorf("nscurl: %s: %w", param.Quote(s), err)
	}
	return r, nil
}

func invalid(s, reason string) error {
	return fmt.Errorf("nscurl: %s: %w: %s", param.Quote(s), ErrInvalid, reason)
}

// parseService decodes name[@domain], each part percent-decoded on its own.
func parseService(authority string) (string, error) {
	name, domain, hasDomain := strings.Cut(authority, "@")
	name, err := url.PathUnescape(name)
	if err != nil {
		return "", errors.New("service name: bad percent-encoding")
	}
	if !hasDomain {
		return name, nil
	}
	domain, err = url.PathUnescape(domain)
	if err != nil {
		return "", errors.New("domain: bad percent-encoding")
	}
	if strings.Contains(name, "@") || strings.Contains(domain, "@") {
		return "", errors.New("at most one '@', between service and domain")
	}
	return name + "@" + domain, nil
}

// parseLabels decodes k=v&k=v; a key without '=' has an empty value, empty
// pairs are skipped and a repeated key keeps its last value.
func parseLabels(query string) (map[string]string, error) {
	var labels map[string]string
	for pair := range strings.SplitSeq(query, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("label key %s: bad percent-encoding", param.Quote(k))
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("label %s: value %s: bad percent-encoding", param.Quote(key), param.Quote(v))
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[key] = value
	}
	return labels, nil
}

// Validate checks r: a service name the registry accepts, a known mechanism,
// an interface name valid for it (at most 15 bytes for kernel) and valid
// labels.
func (r Request) Validate() error {
	if err := validate.Name(r.NetworkService); err != nil {
		return fmt.Errorf("%w: service name: %w", ErrInvalid, err)
	}
	switch r.Mechanism {
	case kernel.Type:
		if err := kernel.CheckName(r.InterfaceName, false); err != nil {
			return fmt.Errorf("%w: interface name %s: %s", ErrInvalid, param.Quote(r.InterfaceName), param.Reason(err))
		}
	case memif.Type:
		if err := (memif.Params{SocketFile: r.InterfaceName}).ValidateOffer(); err != nil {
			return fmt.Errorf("%w: socket file %s: %s", ErrInvalid, param.Quote(r.InterfaceName), param.Reason(err))
		}
	default:
		return fmt.Errorf("%w: mechanism %s (want %s or %s)", ErrUnknownScheme, param.Quote(r.Mechanism), kernel.Type, memif.Type)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if err := validate.LabelKey(k); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if err := validate.LabelValue(r.Labels[k]); err != nil {
			return fmt.Errorf("%w: label %q: %w", ErrInvalid, k, err)
		}
	}
	return nil
}

// String renders r as a URL: lower-case scheme, parts percent-encoded where
// needed, labels sorted by key.
func (r Request) String() string {
	var b strings.Builder
	b.WriteString(strings.ToLower(r.Mechanism))
	b.WriteString("://")
	name, domain, hasDomain := strings.Cut(r.NetworkService, "@")
	b.WriteString(url.PathEscape(name))
	if hasDomain {
		b.WriteString("@")
		b.WriteString(url.PathEscape(domain))
	}
	if r.InterfaceName != "" {
		b.WriteString("/")
		b.WriteString(url.PathEscape(r.InterfaceName))
	}
	for i, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteString("=")
		b.WriteString(url.QueryEscape(r.Labels[k]))
	}
	return b.String()
}

// MechanismPreference returns the mechanism a client offers for r, its
// network namespace given as netnsURL (file:///proc/<pid>/ns/net or
// inode://<dev>/<ino>): KERNEL with the interface name, or MEMIF with the
// socket file, each empty if r leaves it to the forwarder.
func (r Request) MechanismPreference(netnsURL string) *networkservice.Mechanism {
	if r.Mechanism == memif.Type {
		return memif.New(memif.Params{SocketFile: r.InterfaceName, NetNSURL: netnsURL})
	}
	return kernel.New(kernel.Params{Name: r.InterfaceName, NetNSURL: netnsURL})
}
