// Package param holds what the mechanism packages share: the sentinel errors
// every mechanism error wraps (each mechanism package re-exports them, so
// errors.Is works with whichever package the caller has at hand), the checks of
// a mechanism's type and class, and parsers for the value shapes that recur
// across mechanisms (IP addresses, ports, MTU, names). Every error names the
// mechanism and the wire key of the parameter at fault.
package param

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
)

// Sentinel errors wrapped by every mechanism package.
var (
	// ErrWrongType: the mechanism is nil or of another type.
	ErrWrongType = errors.New("wrong mechanism type")
	// ErrWrongClass: the mechanism's Cls is not the one its type requires.
	ErrWrongClass = errors.New("wrong mechanism class")
	// ErrMissing: a required parameter is absent or empty.
	ErrMissing = errors.New("missing parameter")
	// ErrInvalid: a parameter is present but malformed or out of range.
	ErrInvalid = errors.New("invalid parameter")
	// ErrMismatch: a reply changed a parameter the offer had fixed.
	ErrMismatch = errors.New("reply does not match the offer")
)

// Limits shared by mechanisms.
const (
	// MinMTU is the smallest MTU accepted (IPv4's minimum).
	MinMTU = 68
	// MaxMTU is the largest MTU accepted (Linux's ETH_MAX_MTU).
	MaxMTU = 65535
	// maxQuoted bounds how much of a bad value an error message repeats.
	maxQuoted = 64
)

// Error is a missing or invalid parameter. It wraps ErrMissing or ErrInvalid.
type Error struct {
	Mech   string // "kernel", "vxlan", ...
	Key    string // the parameter's wire key
	Value  string // what it held; empty for ErrMissing
	Reason string // which rule it breaks; empty for ErrMissing
	Err    error  // ErrMissing or ErrInvalid
}

func (e *Error) Error() string {
	if e.Err == ErrMissing {
		return fmt.Sprintf("%s: %v %q", e.Mech, e.Err, e.Key)
	}
	return fmt.Sprintf("%s: %v %s=%s: %s", e.Mech, e.Err, e.Key, Quote(e.Value), e.Reason)
}

// Unwrap returns ErrMissing or ErrInvalid.
func (e *Error) Unwrap() error { return e.Err }

// Missing reports that key is required but absent.
func Missing(mech, key string) error {
	return &Error{Mech: mech, Key: key, Err: ErrMissing}
}

// Invalid reports that key holds value, which breaks the rule in reason.
func Invalid(mech, key, value, reason string) error {
	return &Error{Mech: mech, Key: key, Value: value, Reason: reason, Err: ErrInvalid}
}

// Reason returns the rule a parameter error reports as broken ("required"
// for a missing one), or err's text for any other error.
func Reason(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	if e.Err == ErrMissing {
		return "required"
	}
	return e.Reason
}

// Quote quotes s for an error message, cutting it short if it is long.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "..."
}

// Check verifies that m is a mechanism of type typ and class cls and returns
// its parameters (never nil).
func Check(mech string, m *networkservice.Mechanism, typ, cls string) (map[string]string, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: %w: no mechanism", mech, ErrWrongType)
	}
	if m.GetType() != typ {
		return nil, fmt.Errorf("%s: %w %s, want %s", mech, ErrWrongType, Quote(m.GetType()), typ)
	}
	if m.GetCls() != cls {
		return nil, fmt.Errorf("%s: %w %s, want %s", mech, ErrWrongClass, Quote(m.GetCls()), cls)
	}
	if m.GetParameters() == nil {
		return map[string]string{}, nil
	}
	return m.GetParameters(), nil
}

// Addr parses the IP address under key; an absent or empty value gives the
// zero Addr. IPv4-mapped IPv6 addresses are unmapped to IPv4, so that the
// address family is what the tunnel will use; zones are refused.
func Addr(mech string, params map[string]string, key string) (netip.Addr, error) {
	s := params[key]
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, Invalid(mech, key, s, "not an IP address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, Invalid(mech, key, s, "an IPv6 zone is not allowed")
	}
	return a.Unmap(), nil
}

// CheckAddr checks an address a tunnel endpoint can have: set (unless
// !required), a unicast address (not unspecified, not multicast), no zone,
// not IPv4-mapped.
func CheckAddr(mech, key string, a netip.Addr, required bool) error {
	switch {
	case !a.IsValid():
		if required {
			return Missing(mech, key)
		}
		return nil
	case a.Zone() != "":
		return Invalid(mech, key, a.String(), "an IPv6 zone is not allowed")
	case a.Is4In6():
		return Invalid(mech, key, a.String(), "write an IPv4-mapped address as IPv4")
	case a.IsUnspecified():
		return Invalid(mech, key, a.String(), "the unspecified address is not allowed")
	case a.IsMulticast():
		return Invalid(mech, key, a.String(), "a multicast address is not allowed")
	}
	return nil
}

// SameFamily checks that src and dst, when both set, are both IPv4 or both IPv6.
func SameFamily(mech, srcKey, dstKey string, src, dst netip.Addr) error {
	if src.IsValid() && dst.IsValid() && src.Is4() != dst.Is4() {
		return Invalid(mech, dstKey, dst.String(), fmt.Sprintf("not the same address family as %s=%s", srcKey, src))
	}
	return nil
}

// Uint parses the decimal number under key that must fit in bits bits; an
// absent or empty value gives 0.
func Uint(mech string, params map[string]string, key string, bits int) (uint64, error) {
	s := params[key]
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, Invalid(mech, key, s, fmt.Sprintf("not a decimal number below 2^%d", bits))
	}
	return v, nil
}

// MTU parses the MTU under key (0 when absent).
func MTU(mech string, params map[string]string, key string) (uint32, error) {
	v, err := Uint(mech, params, key, 32)
	return uint32(v), err
}

// CheckMTU checks an MTU: 0 (unset) or MinMTU..MaxMTU.
func CheckMTU(mech, key string, mtu uint32) error {
	if mtu != 0 && (mtu < MinMTU || mtu > MaxMTU) {
		return Invalid(mech, key, strconv.FormatUint(uint64(mtu), 10), fmt.Sprintf("must be 0 (unset) or %d..%d", MinMTU, MaxMTU))
	}
	return nil
}

// CheckFileName checks a name that becomes one path element (an interface
// name, a socket file name): at most maxLen bytes, valid UTF-8 (protobuf
// strings must be), not "." or "..", and free of '/', NUL, white space and
// other control characters. An empty name passes unless required.
func CheckFileName(mech, key, name string, maxLen int, required bool) error {
	switch {
	case name == "":
		if required {
			return Missing(mech, key)
		}
		return nil
	case len(name) > maxLen:
		return Invalid(mech, key, name, fmt.Sprintf("%d bytes long, at most %d allowed", len(name), maxLen))
	case !utf8.ValidString(name):
		return Invalid(mech, key, name, "not valid UTF-8")
	case name == "." || name == "..":
		return Invalid(mech, key, name, `"." and ".." are not allowed`)
	}
	for _, r := range name {
		if r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return Invalid(mech, key, name, "'/', white space and control characters are not allowed")
		}
	}
	return nil
}

// Mismatch reports that a reply changed key from the offered value want to got.
func Mismatch(mech, key, want, got string) error {
	return fmt.Errorf("%s: %w: %s=%s, offered %s", mech, ErrMismatch, key, Quote(got), Quote(want))
}

// Set stores v under key in params, or removes key when v is empty.
func Set(params map[string]string, key, v string) {
	if v == "" {
		delete(params, key)
		return
	}
	params[key] = v
}

// FormatUint renders a number parameter; 0 renders as "" (absent).
func FormatUint[T ~uint16 | ~uint32](v T) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(v), 10)
}

// FormatAddr renders an address parameter; the zero Addr renders as "".
func FormatAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
