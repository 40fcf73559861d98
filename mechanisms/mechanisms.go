// Package mechanisms checks any Network Service Mesh mechanism that vwire
// knows, dispatching on its type to the package of that mechanism: kernel and
// memif (class LOCAL), vxlan, wireguard and ipsec (class REMOTE). Validate
// checks a mechanism that is complete and ready to build; ValidateOffer checks
// a mechanism offered as a preference, which may lack what the other side
// fills in. Like the mechanism packages, it imports no dataplane, so the
// manager, the forwarders and the workloads share it.
package mechanisms

import (
	"errors"
	"fmt"
	"strings"

	"github.com/networkservicemesh/api/pkg/api/networkservice"

	"github.com/vwire/vwire/mechanisms/internal/param"
	"github.com/vwire/vwire/mechanisms/ipsec"
	"github.com/vwire/vwire/mechanisms/kernel"
	"github.com/vwire/vwire/mechanisms/memif"
	"github.com/vwire/vwire/mechanisms/vxlan"
	"github.com/vwire/vwire/mechanisms/wireguard"
)

// Sentinel errors. All but ErrUnknownMechanism are the ones every mechanism
// package re-exports, so errors.Is works across packages.
var (
	// ErrUnknownMechanism: the mechanism's type is not one vwire knows.
	ErrUnknownMechanism = errors.New("unknown mechanism")
	// ErrWrongType: the mechanism is nil or not of the expected type.
	ErrWrongType = param.ErrWrongType
	// ErrWrongClass: the mechanism's Cls is not the one its type requires.
	ErrWrongClass = param.ErrWrongClass
	// ErrMissingParameter: a required parameter is absent or empty.
	ErrMissingParameter = param.ErrMissing
	// ErrInvalidParameter: a parameter is malformed or out of range.
	ErrInvalidParameter = param.ErrInvalid
	// ErrMismatch: a reply changed a parameter the offer had fixed.
	ErrMismatch = param.ErrMismatch
)

// ParameterError is the error every mechanism package returns for a missing
// or invalid parameter (find it with errors.As): it names the mechanism, the
// parameter's wire key, its value and the rule it breaks, for an API edge that
// wants to report the field. It wraps ErrMissingParameter or
// ErrInvalidParameter.
type ParameterError = param.Error

type entry struct {
	remote        bool
	validate      func(*networkservice.Mechanism) error
	validateOffer func(*networkservice.Mechanism) error
}

func check[P any](parse func(*networkservice.Mechanism) (P, error)) func(*networkservice.Mechanism) error {
	return func(m *networkservice.Mechanism) error {
		_, err := parse(m)
		return err
	}
}

// entryOf returns the entry of a known type.
func entryOf(typ string) (entry, bool) {
	switch typ {
	case kernel.Type:
		return entry{false, check(kernel.FromMechanism), check(kernel.FromOffer)}, true
	case memif.Type:
		return entry{false, check(memif.FromMechanism), check(memif.FromOffer)}, true
	case vxlan.Type:
		return entry{true, check(vxlan.FromMechanism), check(vxlan.FromOffer)}, true
	case wireguard.Type:
		return entry{true, check(wireguard.FromMechanism), check(wireguard.FromOffer)}, true
	case ipsec.Type:
		return entry{true, check(ipsec.FromMechanism), check(ipsec.FromOffer)}, true
	}
	return entry{}, false
}

// Types returns the known mechanism types, LOCAL ones first, in a fixed order.
func Types() []string {
	return []string{kernel.Type, memif.Type, vxlan.Type, wireguard.Type, ipsec.Type}
}

// Known reports whether typ is a mechanism type vwire knows. Types are
// matched exactly ("KERNEL", not "kernel").
func Known(typ string) bool {
	_, ok := entryOf(typ)
	return ok
}

// IsRemote reports whether typ is a known REMOTE mechanism (one that crosses
// nodes: VXLAN, WIREGUARD, IPSEC).
func IsRemote(typ string) bool {
	e, _ := entryOf(typ)
	return e.remote
}

// Validate checks a complete mechanism, ready to build: a known type, the
// class that type requires, and every parameter the dataplane needs.
func Validate(m *networkservice.Mechanism) error {
	e, err := lookup(m)
	if err != nil {
		return err
	}
	return e.validate(m)
}

// ValidateOffer checks a mechanism offered as a preference: a known type, its
// class, what the offering side must give, and that every parameter present
// is well formed.
func ValidateOffer(m *networkservice.Mechanism) error {
	e, err := lookup(m)
	if err != nil {
		return err
	}
	return e.validateOffer(m)
}

func lookup(m *networkservice.Mechanism) (entry, error) {
	if m == nil {
		return entry{}, fmt.Errorf("mechanisms: %w: no mechanism", ErrWrongType)
	}
	e, ok := entryOf(m.GetType())
	if !ok {
		return entry{}, fmt.Errorf("mechanisms: %w %s (known: %s)", ErrUnknownMechanism, param.Quote(m.GetType()), strings.Join(Types(), ", "))
	}
	return e, nil
}
