// Package kernel is the KERNEL mechanism (class LOCAL): a Linux network
// interface named Name, placed in the network namespace that NetNSURL names
// (file:///proc/<pid>/ns/net or inode://<dev>/<ino>), with an optional MTU.
// The side that owns the namespace offers it: a client's preference carries
// its NetNSURL and maybe a Name; a forwarder's offer to a local endpoint may be
// empty, the endpoint filling in its namespace. Before building, the forwarder
// fills a missing Name with DefaultName(connection id), so FromMechanism
// (complete parameters) requires both Name and NetNSURL. Parameters this
// package does not know (PCI address, VLAN, ...) are ignored and not carried
// over by New(FromMechanism(m)).
package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/common"
	nsmkernel "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/kernel"

	"github.com/vwire/vwire/mechanisms/inodeurl"
	"github.com/vwire/vwire/mechanisms/internal/param"
)

// Sentinel errors (shared by all mechanism packages).
var (
	ErrWrongType        = param.ErrWrongType
	ErrWrongClass       = param.ErrWrongClass
	ErrMissingParameter = param.ErrMissing
	ErrInvalidParameter = param.ErrInvalid
)

const (
	// Type is the mechanism type, nsmkernel.MECHANISM.
	Type = nsmkernel.MECHANISM
	// Class is the class a KERNEL mechanism must have.
	Class = cls.LOCAL
	// MaxNameLength is the longest Linux interface name, in bytes.
	MaxNameLength = nsmkernel.LinuxIfMaxLength

	mech = "kernel"
)

// Params are the KERNEL mechanism's parameters.
type Params struct {
	// Name is the interface name inside the namespace (parameter "name").
	Name string
	// NetNSURL names the network namespace (parameter "inodeURL").
	NetNSURL string
	// MTU is the interface MTU; 0 leaves it to the dataplane (parameter "MTU").
	MTU uint32
}

// New renders p as a LOCAL KERNEL mechanism. Empty fields are left out.
func New(p Params) *networkservice.Mechanism {
	params := map[string]string{}
	param.Set(params, nsmkernel.InterfaceNameKey, p.Name)
	param.Set(params, nsmkernel.NetNSURL, p.NetNSURL)
	param.Set(params, common.MTU, param.FormatUint(p.MTU))
	return &networkservice.Mechanism{Cls: Class, Type: Type, Parameters: params}
}

// FromMechanism parses complete parameters, ready to build: Name and NetNSURL
// are required.
func FromMechanism(m *networkservice.Mechanism) (Params, error) {
	p, err := parse(m)
	if err != nil {
		return Params{}, err
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// FromOffer parses parameters offered as a preference: every field may be
// missing, but those present must be well formed.
func FromOffer(m *networkservice.Mechanism) (Params, error) {
	p, err := parse(m)
	if err != nil {
		return Params{}, err
	}
	if err := p.ValidateOffer(); err != nil {
		return Params{}, err
	}
	return p, nil
}

func parse(m *networkservice.Mechanism) (Params, error) {
	params, err := param.Check(mech, m, Type, Class)
	if err != nil {
		return Params{}, err
	}
	mtu, err := param.MTU(mech, params, common.MTU)
	if err != nil {
		return Params{}, err
	}
	return Params{
		Name:     params[nsmkernel.InterfaceNameKey],
		NetNSURL: params[nsmkernel.NetNSURL],
		MTU:      mtu,
	}, nil
}

// Validate checks that p is complete and well formed.
func (p Params) Validate() error { return p.check(true) }

// ValidateOffer checks that the fields of p that are set are well formed.
func (p Params) ValidateOffer() error { return p.check(false) }

func (p Params) check(complete bool) error {
	// Malformed values first, so an offer and a complete mechanism get the
	// same error for them; missing values after.
	if err := CheckName(p.Name, false); err != nil {
		return err
	}
	if p.NetNSURL != "" {
		if _, err := p.NetNS(); err != nil {
			return err
		}
	}
	if err := param.CheckMTU(mech, common.MTU, p.MTU); err != nil {
		return err
	}
	if complete {
		if p.Name == "" {
			return param.Missing(mech, nsmkernel.InterfaceNameKey)
		}
		if p.NetNSURL == "" {
			return param.Missing(mech, nsmkernel.NetNSURL)
		}
	}
	return nil
}

// NetNS parses p.NetNSURL.
func (p Params) NetNS() (inodeurl.URL, error) {
	u, err := inodeurl.Parse(p.NetNSURL)
	if err != nil {
		return inodeurl.URL{}, param.Invalid(mech, nsmkernel.NetNSURL, p.NetNSURL, inodeurl.Reason(err))
	}
	return u, nil
}

// CheckName checks an interface name as Linux does (at most 15 bytes, not
// "." or "..", no '/', ':' or white space), refusing control characters and
// invalid UTF-8 as well. An empty name passes unless required.
func CheckName(name string, required bool) error {
	if err := param.CheckFileName(mech, nsmkernel.InterfaceNameKey, name, MaxNameLength, required); err != nil {
		return err
	}
	if strings.IndexByte(name, ':') >= 0 {
		return param.Invalid(mech, nsmkernel.InterfaceNameKey, name, "':' is not allowed (Linux keeps it for aliases)")
	}
	return nil
}

// DefaultName is the interface name used when the client gives none: "nsm"
// and the first 8 hex digits of the SHA-256 of connID. It is stable across
// restarts and versions, so a restarted forwarder finds the interfaces it
// made; two connections share a name with probability 2^-32.
func DefaultName(connID string) string {
	sum := sha256.Sum256([]byte(connID))
	return "nsm" + hex.EncodeToString(sum[:4])
}
