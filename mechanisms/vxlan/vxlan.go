// Package vxlan is the VXLAN mechanism (class REMOTE): a VXLAN tunnel from
// SrcIP (the client-side forwarder) to DstIP (the server-side forwarder) on UDP
// port DstPort (4789 unless set) with network identifier VNI. Negotiation
// takes one round trip: the client-side forwarder allocates a VNI from its
// VNIAllocator and sends Offer(srcIP, vni); the server-side forwarder calls
// Accept, which keeps that VNI when it is free on its node too, or fails with
// ErrVNIInUse so that the client retries with another; the client checks the
// reply with Confirm. VNIs are unique per node (a Linux VXLAN device cannot
// share a VNI and port with another), so both ends must hold the VNI.
package vxlan

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/networkservicemesh/api/pkg/api/networkservice"
	"github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/cls"
	nsmvxlan "github.com/networkservicemesh/api/pkg/api/networkservice/mechanisms/vxlan"

	"github.com/vwire/vwire/mechanisms/internal/param"
)

// Sentinel errors. The first five are shared by all mechanism packages.
var (
	ErrWrongType        = param.ErrWrongType
	ErrWrongClass       = param.ErrWrongClass
	ErrMissingParameter = param.ErrMissing
	ErrInvalidParameter = param.ErrInvalid
	ErrMismatch         = param.ErrMismatch
	// ErrVNIInUse: the VNI is taken on the node that was asked to hold it;
	// the client should offer another.
	ErrVNIInUse = errors.New("vni in use")
	// ErrNoFreeVNI: every VNI of the allocator's range is taken.
	ErrNoFreeVNI = errors.New("no free vni")
)

const (
	// Type is the mechanism type, vxlan.MECHANISM.
	Type = nsmvxlan.MECHANISM
	// Class is the class a VXLAN mechanism must have.
	Class = cls.REMOTE
	// DefaultPort is the IANA VXLAN port, used when DstPort is 0 or absent.
	DefaultPort = 4789
	// MinVNI and MaxVNI bound a VNI (24 bits; 0 is refused).
	MinVNI = 1
	MaxVNI = 1<<24 - 1

	mech = "vxlan"

	// SrcNoOffload and DstNoOffload are vwire's parameters (not NSM's):
	// "true" when that end takes only complete packets (see
	// Params.SrcNoOffload).
	SrcNoOffload = "src_no_offload"
	DstNoOffload = "dst_no_offload"
)

// Params are the VXLAN mechanism's parameters.
type Params struct {
	// SrcIP is the client-side tunnel endpoint (parameter "src_ip").
	SrcIP netip.Addr
	// DstIP is the server-side tunnel endpoint (parameter "dst_ip").
	DstIP netip.Addr
	// DstPort is the UDP port; 0 means DefaultPort (parameter "dst_port").
	DstPort uint16
	// VNI is the VXLAN network identifier, MinVNI..MaxVNI (parameter "vni").
	VNI uint32
	// MTU is the tunnel interface MTU; 0 leaves it to the dataplane.
	MTU uint32
	// SrcNoOffload (parameter "src_no_offload"): the client-side end takes
	// only complete packets, so the other end must send none that lean on
	// offloads: outer and inner checksums filled in, no segmentation
	// offload. A VPP node sets it: VPP's af_packet reads a partial
	// checksum's offsets as its outer headers' and keeps them after
	// decapsulation, so the inner frame leaves VPP with offsets the kernel
	// refuses (a Linux peer across a veth, whose packets keep CHECKSUM_PARTIAL,
	// carried nothing). DstNoOffload is the same for the server-side end.
	SrcNoOffload bool
	DstNoOffload bool
}

// PeerNoOffload reports whether the other end of the tunnel takes only
// complete packets, seen from the end that sent the Request onward
// (sentOnward) or received it.
func (p Params) PeerNoOffload(sentOnward bool) bool {
	if sentOnward {
		return p.DstNoOffload
	}
	return p.SrcNoOffload
}

// Port returns DstPort, or DefaultPort when it is 0.
func (p Params) Port() uint16 {
	if p.DstPort == 0 {
		return DefaultPort
	}
	return p.DstPort
}

// New renders p as a REMOTE VXLAN mechanism. Unset fields are left out,
// except the port, which is always written (DefaultPort for 0).
func New(p Params) *networkservice.Mechanism {
	params := map[string]string{}
	param.Set(params, nsmvxlan.SrcIP, param.FormatAddr(p.SrcIP))
	param.Set(params, nsmvxlan.DstIP, param.FormatAddr(p.DstIP))
	param.Set(params, nsmvxlan.DstPort, param.FormatUint(p.Port()))
	param.Set(params, nsmvxlan.VNI, param.FormatUint(p.VNI))
	param.Set(params, nsmvxlan.MTU, param.FormatUint(p.MTU))
	param.Set(params, SrcNoOffload, formatBool(p.SrcNoOffload))
	param.Set(params, DstNoOffload, formatBool(p.DstNoOffload))
	return &networkservice.Mechanism{Cls: Class, Type: Type, Parameters: params}
}

// FromMechanism parses complete parameters, ready to build: SrcIP, DstIP
// and VNI are required. DstPort is never 0 in the result.
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

// FromOffer parses an offer: SrcIP and VNI are required, DstIP may be
// missing. DstPort is never 0 in the result.
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
	var p Params
	if p.SrcIP, err = param.Addr(mech, params, nsmvxlan.SrcIP); err != nil {
		return Params{}, err
	}
	if p.DstIP, err = param.Addr(mech, params, nsmvxlan.DstIP); err != nil {
		return Params{}, err
	}
	port, err := param.Uint(mech, params, nsmvxlan.DstPort, 16)
	if err != nil {
		return Params{}, err
	}
	p.DstPort = Params{DstPort: uint16(port)}.Port()
	vni, err := param.Uint(mech, params, nsmvxlan.VNI, 32)
	if err != nil {
		return Params{}, err
	}
	p.VNI = uint32(vni)
	if p.MTU, err = param.MTU(mech, params, nsmvxlan.MTU); err != nil {
		return Params{}, err
	}
	if p.SrcNoOffload, err = parseBool(params, SrcNoOffload); err != nil {
		return Params{}, err
	}
	if p.DstNoOffload, err = parseBool(params, DstNoOffload); err != nil {
		return Params{}, err
	}
	return p, nil
}

// formatBool renders a flag: "true", or "" (absent) for false.
func formatBool(v bool) string {
	if v {
		return "true"
	}
	return ""
}

// parseBool reads a flag: absent, "" or "false" is false, "true" true.
func parseBool(params map[string]string, key string) (bool, error) {
	switch v := params[key]; v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, param.Invalid(mech, key, v, `must be "true" or "false"`)
	}
}

// Validate checks that p is complete and well formed.
func (p Params) Validate() error { return p.check(true) }

// ValidateOffer checks what an offer must hold (SrcIP, VNI) and that the
// other fields, when set, are well formed.
func (p Params) ValidateOffer() error { return p.check(false) }

func (p Params) check(complete bool) error {
	// Malformed values first, so an offer and a complete mechanism get the
	// same error for them; missing values after.
	if err := param.CheckAddr(mech, nsmvxlan.SrcIP, p.SrcIP, false); err != nil {
		return err
	}
	if err := param.CheckAddr(mech, nsmvxlan.DstIP, p.DstIP, false); err != nil {
		return err
	}
	if err := param.SameFamily(mech, nsmvxlan.SrcIP, nsmvxlan.DstIP, p.SrcIP, p.DstIP); err != nil {
		return err
	}
	if p.VNI != 0 {
		if err := CheckVNI(p.VNI); err != nil {
			return err
		}
	}
	if err := param.CheckMTU(mech, nsmvxlan.MTU, p.MTU); err != nil {
		return err
	}
	switch {
	case !p.SrcIP.IsValid():
		return param.Missing(mech, nsmvxlan.SrcIP)
	case complete && !p.DstIP.IsValid():
		return param.Missing(mech, nsmvxlan.DstIP)
	case p.VNI == 0:
		return param.Missing(mech, nsmvxlan.VNI)
	}
	return nil
}

// CheckVNI checks that vni is in MinVNI..MaxVNI.
func CheckVNI(vni uint32) error {
	if vni == 0 {
		return param.Missing(mech, nsmvxlan.VNI)
	}
	if vni > MaxVNI {
		return param.Invalid(mech, nsmvxlan.VNI, strconv.FormatUint(uint64(vni), 10), fmt.Sprintf("must be in %d..%d", MinVNI, MaxVNI))
	}
	return nil
}

// Offer returns what the client-side forwarder offers: its tunnel address
// and a VNI it holds (from its VNIAllocator). Set MTU or DstPort on the result
// to ask for them, then render it with New.
func Offer(srcIP netip.Addr, vni uint32) Params {
	return Params{SrcIP: srcIP.Unmap(), DstPort: DefaultPort, VNI: vni}
}

// Accept completes an offer on the server-side forwarder with its tunnel
// address dstIP, keeping the offered VNI, port and MTU. isFree is asked, last
// and at most once, whether this node can use the VNI; false gives an error
// wrapping ErrVNIInUse. To be free of races isFree should reserve the VNI
// when it answers true, as VNIAllocator.TryReserve does; since it is called
// only after every other check passed, such a reservation is never left
// behind by a failed Accept. A refresh or heal offers the VNI the connection
// already holds, so isFree must answer true for a VNI held by the same
// connection. A nil isFree accepts any VNI.
func Accept(offer Params, dstIP netip.Addr, isFree func(vni uint32) bool) (Params, error) {
	if err := offer.ValidateOffer(); err != nil {
		return Params{}, err
	}
	p := offer
	p.DstIP = dstIP.Unmap()
	p.DstPort = offer.Port()
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	if isFree != nil && !isFree(p.VNI) {
		return Params{}, fmt.Errorf("%s: vni %d: %w on %s", mech, p.VNI, ErrVNIInUse, p.DstIP)
	}
	return p, nil
}

// Confirm checks the server's reply to offer on the client-side forwarder:
// complete, and with the offered SrcIP, VNI and port (and DstIP, if the offer
// named one). It returns the parameters to build the tunnel with.
func Confirm(offer Params, reply *networkservice.Mechanism) (Params, error) {
	p, err := FromMechanism(reply)
	if err != nil {
		return Params{}, err
	}
	switch {
	case p.SrcIP != offer.SrcIP:
		return Params{}, param.Mismatch(mech, nsmvxlan.SrcIP, param.FormatAddr(offer.SrcIP), param.FormatAddr(p.SrcIP))
	case offer.DstIP.IsValid() && p.DstIP != offer.DstIP:
		return Params{}, param.Mismatch(mech, nsmvxlan.DstIP, param.FormatAddr(offer.DstIP), param.FormatAddr(p.DstIP))
	case p.VNI != offer.VNI:
		return Params{}, param.Mismatch(mech, nsmvxlan.VNI, param.FormatUint(offer.VNI), param.FormatUint(p.VNI))
	case p.DstPort != offer.Port():
		return Params{}, param.Mismatch(mech, nsmvxlan.DstPort, param.FormatUint(offer.Port()), param.FormatUint(p.DstPort))
	}
	return p, nil
}
